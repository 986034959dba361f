/**
 * deploy/prometheus/alerts.yaml and deploy/grafana/longhaul.json: every PromQL expression parses
 * (Prometheus's own grammar, @prometheus-io/lezer-promql) and names only metrics that a live longhaul
 * (API and worker roles) exports at /metrics, so a renamed metric cannot leave a rule or panel blind.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parser } from '@prometheus-io/lezer-promql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { startTestService, type TestService } from './support/service.ts';

const ROOT = path.join(import.meta.dirname, '..');

interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels?: { severity?: string };
  annotations?: { summary?: string; description?: string };
}

function alertRules(): Rule[] {
  const doc = parseYaml(readFileSync(path.join(ROOT, 'deploy/prometheus/alerts.yaml'), 'utf8')) as {
    groups: Array<{ name: string; rules: Rule[] }>;
  };
  return doc.groups.flatMap((g) => g.rules);
}

interface Panel {
  title: string;
  type: string;
  targets?: Array<{ expr: string }>;
  panels?: Panel[];
}

/** Every panel's expressions, with Grafana's interval variables replaced as Grafana does before sending them. */
function dashboardExpressions(): Array<{ where: string; expr: string }> {
  const dash = JSON.parse(readFileSync(path.join(ROOT, 'deploy/grafana/longhaul.json'), 'utf8')) as {
    panels: Panel[];
  };
  const out: Array<{ where: string; expr: string }> = [];
  const walk = (panels: Panel[]) => {
    for (const p of panels) {
      for (const t of p.targets ?? [])
        out.push({ where: `panel "${p.title}"`, expr: t.expr.replaceAll(/\$__(rate_interval|interval|range)/g, '5m') });
      walk(p.panels ?? []);
    }
  };
  walk(dash.panels);
  return out;
}

/** The syntax errors of `expr` (empty when it parses) and the metric names its selectors use. */
function analyse(expr: string): { errors: string[]; metrics: string[] } {
  const errors: string[] = [];
  const metrics: string[] = [];
  parser.parse(expr).iterate({
    enter(node) {
      if (node.type.isError) errors.push(`at ${node.from}: "${expr.slice(node.from, node.to + 10)}"`);
      if (node.name === 'Identifier' && node.node.parent?.name === 'VectorSelector')
        metrics.push(expr.slice(node.from, node.to));
    },
  });
  return { errors, metrics };
}

let t: TestService;
let exported: Set<string>;

beforeAll(async () => {
  t = await startTestService({ roles: ['api', 'worker'] });
  const text = await (await fetch(`${t.url}/metrics`)).text();
  exported = new Set<string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const [, name = '', type] = m;
    exported.add(name);
    if (type === 'histogram' || type === 'summary')
      for (const suffix of ['_bucket', '_sum', '_count']) exported.add(name + suffix);
  }
});

afterAll(async () => {
  await t.stop();
});

describe('the analysis', () => {
  it('finds syntax errors and the metrics of selectors, not of label names or functions', () => {
    expect(analyse('sum by (le) (rate(a_bucket{route="x"}[5m])) / max(b) or absent(c)')).toEqual({
      errors: [],
      metrics: ['a_bucket', 'b', 'c'],
    });
    expect(analyse('sum(rate(a[5m]) /').errors).not.toEqual([]);
  });
});

describe('deploy/prometheus/alerts.yaml', () => {
  it('covers dead letters, pending age, stalled jobs, breakers, failing webhooks and missing workers', () => {
    const rules = alertRules();
    const names = rules.map((r) => r.alert);
    for (const want of [
      'LonghaulDeadLetterJobsGrowing',
      'LonghaulDeadLetterDeliveriesGrowing',
      'LonghaulPendingTooOld',
      'LonghaulJobsStalled',
      'LonghaulWebhookBreakerOpen',
      'LonghaulWebhooksFailing',
      'LonghaulNoWorkerOnline',
    ])
      expect(names).toContain(want);
    for (const r of rules) {
      expect(r.labels?.severity, r.alert).toMatch(/^(warning|critical)$/);
      expect(r.annotations?.summary, r.alert).toBeTruthy();
    }
  });

  it('has only expressions that parse and name metrics /metrics exports', () => {
    const problems = alertRules().flatMap((r) => {
      const { errors, metrics } = analyse(r.expr);
      return [
        ...errors.map((e) => `${r.alert}: syntax error ${e}`),
        ...metrics.filter((m) => !exported.has(m)).map((m) => `${r.alert}: ${m} is not exported`),
        ...(metrics.length === 0 ? [`${r.alert}: names no metric`] : []),
      ];
    });
    expect(problems).toEqual([]);
  });
});

describe('deploy/grafana/longhaul.json', () => {
  it('has only expressions that parse and name metrics /metrics exports', () => {
    const exprs = dashboardExpressions();
    expect(exprs.length).toBeGreaterThan(10);
    const problems = exprs.flatMap(({ where, expr }) => {
      const { errors, metrics } = analyse(expr);
      return [
        ...errors.map((e) => `${where}: syntax error ${e}`),
        ...metrics.filter((m) => !exported.has(m)).map((m) => `${where}: ${m} is not exported`),
      ];
    });
    expect(problems).toEqual([]);
  });
});
