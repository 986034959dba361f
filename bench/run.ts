/**
 * `npm run bench [filter]`: starts a Postgres (embedded unless DATABASE_URL is set), runs each
 * benchmark module against fresh databases, and prints one table: each figure beside its baseline
 * measured in the same run, the ratio, and the target.
 */
import { createTemplateDatabase, scratchServer } from '../test/support/scratch.ts';
import { consoleBench } from './console.ts';
import { cloneTemplate, TEMPLATE, type BenchModule, type BenchRow } from './harness.ts';
import { fairnessBench } from './fairness.ts';
import { jobsApiBench } from './jobs-api.ts';
import { peersBench } from './peers.ts';
import { realtimeBench } from './realtime.ts';
import { reportBench } from './report.ts';
import { schedulingBench } from './scheduling.ts';
import { workerBench } from './worker.ts';
import { observabilityBench } from './observability.ts';
import { webhooksBench } from './webhooks.ts';

/** Every benchmark, in the order the issues were written. */
const MODULES: Array<[string, BenchModule]> = [
  ['jobs-api', jobsApiBench],
  ['worker', workerBench],
  ['report', reportBench],
  ['webhooks', webhooksBench],
  ['realtime', realtimeBench],
  ['peers', peersBench],
  ['console', consoleBench],
  ['fairness', fairnessBench],
  ['scheduling', schedulingBench],
  ['observability', observabilityBench],
];

function fmt(n: number | undefined): string {
  if (n === undefined || Number.isNaN(n)) return '';
  if (Math.abs(n) >= 100) return Math.round(n).toLocaleString('en-US');
  if (Math.abs(n) >= 1) return n.toFixed(2);
  return n.toPrecision(3);
}

function table(rows: Array<BenchRow & { module: string }>): string {
  const head = ['benchmark', 'value', 'unit', 'baseline', 'baseline value', 'ratio', 'target', 'met'];
  const body = rows.map((r) => {
    const ratio = r.ratio ?? (r.baseline === undefined ? undefined : r.value / r.baseline);
    return [
      r.name,
      fmt(r.value),
      r.unit,
      r.baselineName ?? '',
      fmt(r.baseline),
      fmt(ratio),
      r.target ?? '',
      r.met === undefined ? '' : r.met ? 'yes' : 'NO',
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? '').length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)].join('\n');
}

async function main(): Promise<void> {
  const filter = process.argv[2];
  const server = await scratchServer(process.env.DATABASE_URL, 56000 + (process.pid % 3000), 'longhaul-bench-');
  try {
    await createTemplateDatabase(server.url, TEMPLATE);
    const rows: Array<BenchRow & { module: string }> = [];
    const url = server.url;
    for (const [key, mod] of MODULES) {
      if (filter !== undefined && !key.includes(filter)) continue;
      process.stderr.write(`bench: ${mod.title}…\n`);
      const got = await mod.run({
        serverUrl: url,
        createDatabase: () => cloneTemplate(url),
        log: (m) => process.stderr.write(`  ${m}\n`),
      });
      rows.push(...got.map((r) => ({ ...r, module: key })));
    }
    process.stdout.write(`\n${table(rows)}\n`);
  } finally {
    await server.stop();
  }
}

await main();
