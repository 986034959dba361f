/** The report's input: its schema, and the checks against the source's real columns. */
import { z } from 'zod';
import type { FieldIssue } from '../../../packages/sdk/src/index.ts';
import type { Column, Source } from './catalogue.ts';

/** Most columns in `group_by`: more makes tables too wide to print. */
const MAX_GROUP_BY = 3;
/** Most metric columns: each adds a column to every table of the PDF. */
export const MAX_METRICS = 6;
/** Most values one filter may list. */
const MAX_FILTER_VALUES = 100;

const scalar = z.union([z.string().max(200), z.number().finite(), z.boolean()]);
const instant = z.union([z.iso.datetime({ offset: true }), z.iso.date()]);

export const reportInput = z
  .object({
    /** A table or view in the allow-list: `name` or `schema.name`. */
    source: z.string().min(1).max(127),
    title: z.string().min(1).max(120).optional(),
    filters: z
      .object({
        /** Rows whose time column is at or after this instant (ISO 8601 date or date-time). */
        from: instant.optional(),
        /** Rows whose time column is before this instant. */
        to: instant.optional(),
      })
      .catchall(z.union([scalar, z.array(scalar).min(1).max(MAX_FILTER_VALUES)]))
      .optional(),
    group_by: z.array(z.string().min(1).max(63)).min(1).max(MAX_GROUP_BY),
    /** Numeric columns to count, sum, average, min and max. (Default: every integer and numeric column but the key) */
    metrics: z.array(z.string().min(1).max(63)).min(1).max(MAX_METRICS).optional(),
    formats: z
      .array(z.enum(['pdf', 'csv']))
      .min(1)
      .max(2),
  })
  .strict();

export type ReportInput = z.infer<typeof reportInput>;

/** A filter value after checking: what is compared with a column, as text Postgres casts to the column's type. */
export interface ResolvedFilter {
  column: Column;
  values: string[];
}

/** The input resolved against the source: only checked columns from here on. */
export interface ResolvedReport {
  source: Source;
  groupBy: Column[];
  metrics: Column[];
  filters: ResolvedFilter[];
  from: string | undefined;
  to: string | undefined;
}

const NUMERIC = /^-?\d+(\.\d+)?$/;

function checkValue(column: Column, v: string | number | boolean): string | undefined {
  switch (column.kind) {
    case 'integer':
      return (typeof v === 'number' && Number.isInteger(v)) || (typeof v === 'string' && /^-?\d+$/.test(v))
        ? undefined
        : 'must be an integer';
    case 'decimal':
    case 'float':
      return typeof v === 'number' || (typeof v === 'string' && NUMERIC.test(v)) ? undefined : 'must be a number';
    case 'boolean':
      return typeof v === 'boolean' ? undefined : 'must be true or false';
    case 'time':
    case 'date':
      return typeof v === 'string' && instant.safeParse(v).success
        ? undefined
        : 'must be an ISO 8601 date or date-time';
    default:
      return typeof v === 'string' ? undefined : 'must be a string';
  }
}

/** Resolves the input against the source's columns; returns the field problems, or the resolved report. */
export function resolveReport(input: ReportInput, source: Source): { issues: FieldIssue[]; report?: ResolvedReport } {
  const issues: FieldIssue[] = [];
  const byName = new Map(source.columns.map((c) => [c.name, c]));
  const known = `columns of ${source.name}: ${source.columns.map((c) => c.name).join(', ')}`;

  const groupBy: Column[] = [];
  input.group_by.forEach((name, i) => {
    const c = byName.get(name);
    if (c === undefined) issues.push({ field: `group_by.${i}`, message: `unknown column "${name}"; ${known}` });
    else if (groupBy.includes(c)) issues.push({ field: `group_by.${i}`, message: `"${name}" is listed twice` });
    else groupBy.push(c);
  });

  const metrics: Column[] = [];
  const metricNames =
    input.metrics ??
    source.columns
      .filter((c) => (c.kind === 'integer' || c.kind === 'decimal') && c !== source.key)
      .slice(0, MAX_METRICS)
      .map((c) => c.name);
  metricNames.forEach((name, i) => {
    const c = byName.get(name);
    if (c === undefined) issues.push({ field: `metrics.${i}`, message: `unknown column "${name}"; ${known}` });
    else if (c.kind !== 'integer' && c.kind !== 'decimal')
      issues.push({
        field: `metrics.${i}`,
        message: `"${name}" is ${c.type}; metrics must be integer or numeric columns`,
      });
    else if (metrics.includes(c)) issues.push({ field: `metrics.${i}`, message: `"${name}" is listed twice` });
    else metrics.push(c);
  });
  if (input.metrics === undefined && metrics.length === 0)
    issues.push({
      field: 'metrics',
      message: `${source.name} has no integer or numeric column to use as a metric; name one`,
    });

  const filters: ResolvedFilter[] = [];
  const { from, to, ...rest } = input.filters ?? {};
  if ((from !== undefined || to !== undefined) && source.time === undefined) {
    issues.push({
      field: from === undefined ? 'filters.to' : 'filters.from',
      message: `${source.name} has no timestamp or date column to filter on`,
    });
  }
  if (from !== undefined && to !== undefined && Date.parse(from) > Date.parse(to)) {
    issues.push({ field: 'filters.to', message: `the range is empty: "to" (${to}) is before "from" (${from})` });
  }
  for (const [name, raw] of Object.entries(rest)) {
    const c = byName.get(name);
    if (c === undefined) {
      issues.push({ field: `filters.${name}`, message: `unknown column "${name}"; ${known}` });
      continue;
    }
    const values = Array.isArray(raw) ? raw : [raw];
    const bad = values.map((v) => checkValue(c, v)).find((m) => m !== undefined);
    if (bad !== undefined) issues.push({ field: `filters.${name}`, message: `${name} is ${c.type}: the value ${bad}` });
    else filters.push({ column: c, values: values.map((v) => String(v)) });
  }
  if (issues.length > 0) return { issues };
  return { issues, report: { source, groupBy, metrics, filters, from, to } };
}
