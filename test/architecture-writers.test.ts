/**
 * Each table has one writer: the module that docs/architecture.md's table of tables names as its owner
 * holds every INSERT, UPDATE, DELETE, MERGE, COPY … FROM and TRUNCATE on it (data-modifying CTEs and
 * upserts included), and everyone else calls that module's functions. A write elsewhere in src/ fails
 * here with the file, the statement and the owner to call instead. A table that a trigger of sql/ keeps
 * (running_jobs, on jobs) is written by whoever writes the table the trigger is on.
 */
import { describe, expect, it } from 'vitest';
import {
  ARCHITECTURE_DOC,
  documentedTables,
  moduleExists,
  sources,
  tables,
  triggerWritten,
  writesIn,
} from './support/sql-access.ts';

describe('the writers of each table', () => {
  it('names exactly one owning module, an existing file, for each table in sql/', () => {
    const documented = new Map(documentedTables().map((row) => [row.table, row.owners]));
    const problems: string[] = [];
    for (const table of tables().keys()) {
      const owners = documented.get(table);
      if (owners === undefined) problems.push(`${ARCHITECTURE_DOC} has no row for ${table}`);
      else if (owners.length !== 1)
        problems.push(`${ARCHITECTURE_DOC} must name one owner of ${table}, not ${owners.join(', ') || 'none'}`);
      else if (!moduleExists(owners[0] as string))
        problems.push(`${ARCHITECTURE_DOC} names ${owners[0]} as the owner of ${table}: src/ has no such file`);
    }
    expect(problems).toEqual([]);
  });

  it('finds writes to a table only in its owning module', () => {
    const created = tables();
    // A row that names other than one owner is reported by the test above.
    const owner = new Map(
      documentedTables().flatMap((row) => (row.owners.length === 1 ? [[row.table, row.owners[0]]] : [])),
    );
    const problems: string[] = [];
    for (const file of sources()) {
      for (const write of file.writes) {
        if (write.table.startsWith('${'))
          problems.push(`src/${file.name}: "${write.statement}" names its table at run time; name it in the SQL text`);
        else if (created.has(write.table) && owner.has(write.table) && owner.get(write.table) !== file.name)
          problems.push(
            `src/${file.name}: "${write.statement}" writes ${write.table}, which ${owner.get(write.table)} owns: call a function of that module instead (${ARCHITECTURE_DOC}#tables)`,
          );
      }
    }
    expect(problems).toEqual([]);
  });

  it('counts a table that a trigger writes as written by the writers of the table it is on', () => {
    // sql/100: running_jobs is kept by a trigger on jobs, so its one writer is jobs's.
    expect(Object.fromEntries(triggerWritten())).toEqual({ running_jobs: 'jobs' });
  });

  it('recognises every form of write, and not a row lock or prose', () => {
    const tablesOf = (sql: string) => writesIn(sql).map((w) => w.table);
    expect(
      tablesOf('INSERT INTO jobs (id) VALUES ($1) ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status'),
    ).toEqual(['jobs']);
    expect(tablesOf('WITH old AS (UPDATE ONLY public.alerts SET x = 1) DELETE FROM "workers" w USING t')).toEqual([
      'alerts',
      'workers',
    ]);
    expect(tablesOf('TRUNCATE TABLE ONLY jobs, job_events RESTART IDENTITY')).toEqual(['jobs', 'job_events']);
    expect(tablesOf('MERGE INTO schedules s USING x ON true WHEN MATCHED THEN DELETE')).toEqual(['schedules']);
    expect(tablesOf('COPY artifacts (id, path) FROM STDIN')).toEqual(['artifacts']);
    expect(tablesOf('UPDATE ${table} SET x = 1')).toEqual(['${table}']);
    // Another system's schema (pg-boss's) holds its own tables, not ours, even when named at run time.
    expect(tablesOf('UPDATE pgboss.${table} j SET state = 1; INSERT INTO "pgboss".job (id) VALUES (1)')).toEqual([]);
    expect(
      tablesOf('SELECT * FROM jobs j WHERE j.id = $1 FOR UPDATE OF j SKIP LOCKED; SELECT 1 FOR NO KEY UPDATE NOWAIT'),
    ).toEqual([]);
  });
});
