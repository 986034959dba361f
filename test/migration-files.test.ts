import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { assertUniqueNumbers, SQL_DIR } from '../src/db/migrate.ts';

describe('migration files', () => {
  it('each number in sql/ names one file', () => {
    expect(() =>
      assertUniqueNumbers(
        readdirSync(SQL_DIR)
          .filter((f) => f.endsWith('.sql'))
          .sort(),
      ),
    ).not.toThrow();
  });

  it('refuses two files that share a number', () => {
    expect(() => assertUniqueNumbers(['015_a.sql', '016_b.sql', '016_c.sql'])).toThrow(
      'migrations 016_b.sql and 016_c.sql share the number 016; renumber one',
    );
  });
});
