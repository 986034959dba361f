/**
 * deploy/kubernetes, validated offline: every document of the base and of each overlay (built here the
 * way Kustomize builds it: resources, strategic-merge patches by kind and name, namespace, image tags,
 * labels) parses with `yaml` and validates against the Kubernetes and KEDA schemas (kubernetes-models,
 * @kubernetes-models/keda). Then what operators rely on: probes, resources, Secrets only by reference,
 * selectors that match, a worker grace period longer than the shutdown timeout, and a KEDA query that
 * runs on longhaul's schema.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ScaledObject, TriggerAuthentication } from '@kubernetes-models/keda/keda.sh/v1alpha1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { Job } from 'kubernetes-models/batch/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ConfigMap, PersistentVolumeClaim, Service, ServiceAccount } from 'kubernetes-models/v1';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { loadConfig } from '../src/config.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';

const DIR = path.join(import.meta.dirname, '..', 'deploy', 'kubernetes');

type Doc = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: object } } & {
  [key: string]: unknown;
};

const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/ServiceAccount': ServiceAccount,
  'v1/ConfigMap': ConfigMap,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'batch/v1/Job': Job,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'keda.sh/v1alpha1/ScaledObject': ScaledObject,
  'keda.sh/v1alpha1/TriggerAuthentication': TriggerAuthentication,
};

/** Every document of a YAML file; a syntax error fails. */
function readDocs(file: string): Doc[] {
  return parseAllDocuments(readFileSync(file, 'utf8')).map((d) => {
    if (d.errors.length > 0) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`);
    return d.toJS() as Doc;
  });
}

interface Kustomization {
  namespace?: string;
  resources: string[];
  patches?: Array<{ path: string }>;
  images?: Array<{ name: string; newTag: string }>;
  labels?: Array<{ pairs: Record<string, string> }>;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Strategic merge as Kustomize does it for these kinds: maps merge, lists of named items merge by name, the rest is replaced. */
function merge(base: unknown, patch: unknown): unknown {
  if (isObject(base) && isObject(patch)) {
    const out: Record<string, unknown> = { ...base };
    for (const [k, v] of Object.entries(patch)) out[k] = k in base ? merge(base[k], v) : v;
    return out;
  }
  if (Array.isArray(base) && Array.isArray(patch) && patch.every((p) => isObject(p) && typeof p.name === 'string')) {
    const out = [...(base as unknown[])];
    for (const p of patch as Array<Record<string, unknown>>) {
      const i = out.findIndex((b) => isObject(b) && b.name === p.name);
      if (i >= 0) out[i] = merge(out[i], p);
      else out.push(p);
    }
    return out;
  }
  return patch;
}

const keyOf = (d: Doc) => `${d.apiVersion}/${d.kind}/${d.metadata.name}`;

function containersOf(d: Doc): Array<Record<string, unknown> & { name: string; image: string }> {
  const spec = d.spec as { template?: { spec?: { containers?: unknown[] } } } | undefined;
  return (spec?.template?.spec?.containers ?? []) as Array<Record<string, unknown> & { name: string; image: string }>;
}

/** `kustomize build` of one directory, for what these files use. */
function build(dir: string): Doc[] {
  const k = readDocs(path.join(dir, 'kustomization.yaml'))[0] as unknown as Kustomization;
  let docs: Doc[] = [];
  for (const r of k.resources) {
    const p = path.join(dir, r);
    docs.push(...(r.endsWith('.yaml') ? readDocs(p) : build(p)));
  }
  for (const { path: file } of k.patches ?? []) {
    for (const patch of readDocs(path.join(dir, file))) {
      const i = docs.findIndex((d) => keyOf(d) === keyOf(patch));
      if (i < 0) throw new Error(`${dir}/${file}: patch target ${keyOf(patch)} is not a resource`);
      docs[i] = merge(docs[i], patch) as Doc;
    }
  }
  docs = docs.map((d) => {
    const labels = Object.assign({}, d.metadata.labels, ...(k.labels ?? []).map((l) => l.pairs)) as object;
    return {
      ...d,
      metadata: { ...d.metadata, labels, ...(k.namespace === undefined ? {} : { namespace: k.namespace }) },
    };
  });
  for (const image of k.images ?? [])
    for (const d of docs)
      for (const c of containersOf(d))
        if (c.image.split(':')[0] === image.name) c.image = `${image.name}:${image.newTag}`;
  return docs;
}

const overlays = readdirSync(path.join(DIR, 'overlays'));
const builds: Array<[string, Doc[]]> = [
  ['base', build(path.join(DIR, 'base'))],
  ...overlays.map((o): [string, Doc[]] => [`overlays/${o}`, build(path.join(DIR, 'overlays', o))]),
];

function find(docs: Doc[], kind: string, name: string): Doc {
  const d = docs.find((x) => x.kind === kind && x.metadata.name === name);
  if (d === undefined) throw new Error(`no ${kind} ${name}`);
  return d;
}

let db: TestDatabase | undefined;
afterAll(async () => {
  await db?.drop();
});

describe.each(builds)('deploy/kubernetes/%s', (_name, docs) => {
  it('has only documents that validate against their schema', () => {
    const problems: string[] = [];
    for (const d of docs) {
      const Model = MODELS[`${d.apiVersion}/${d.kind}`];
      if (Model === undefined) {
        problems.push(`${keyOf(d)}: no model for this kind`);
        continue;
      }
      try {
        new Model(d as never).validate();
      } catch (err) {
        problems.push(`${keyOf(d)}: ${(err as Error).message}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('holds the API, the worker, the migration job, disruption budgets, a network policy and the scaler', () => {
    const kinds = docs.map((d) => `${d.kind}/${d.metadata.name}`).sort();
    expect(kinds).toEqual(
      expect.arrayContaining([
        'Deployment/longhaul-api',
        'Service/longhaul-api',
        'Deployment/longhaul-worker',
        'Job/longhaul-migrate',
        'PodDisruptionBudget/longhaul-api',
        'PodDisruptionBudget/longhaul-worker',
        'NetworkPolicy/longhaul',
        'ScaledObject/longhaul-worker',
      ]),
    );
    // Secrets only by reference: no Secret is shipped, and every secret value comes from secretKeyRef.
    expect(docs.filter((d) => d.kind === 'Secret')).toEqual([]);
    const api = find(docs, 'Deployment', 'longhaul-api');
    const env = containersOf(api)[0]?.env as Array<{ name: string; valueFrom?: { secretKeyRef?: object } }>;
    for (const name of ['DATABASE_URL', 'LONGHAUL_SIGNING_SECRET', 'LONGHAUL_METRICS_TOKEN'])
      expect(env.find((e) => e.name === name)?.valueFrom?.secretKeyRef, name).toBeDefined();
  });

  it('gives each long-running container probes on ports it declares, and resource requests', () => {
    for (const name of ['longhaul-api', 'longhaul-worker']) {
      for (const c of containersOf(find(docs, 'Deployment', name))) {
        const ports = (c.ports as Array<{ name: string }>).map((p) => p.name);
        for (const probe of ['livenessProbe', 'readinessProbe']) {
          const port = (c[probe] as { httpGet?: { port: string } } | undefined)?.httpGet?.port;
          expect(port, `${name} ${probe}`).toBeDefined();
          expect(ports, `${name} ${probe}`).toContain(port);
        }
        const requests = (c.resources as { requests?: { cpu?: string; memory?: string } }).requests;
        expect(requests?.cpu && requests.memory, name).toBeTruthy();
      }
    }
  });

  it('lets a worker shut down within its grace period, with the configured and the default timeout', () => {
    const worker = find(docs, 'Deployment', 'longhaul-worker');
    const grace = (worker.spec as { template: { spec: { terminationGracePeriodSeconds: number } } }).template.spec
      .terminationGracePeriodSeconds;
    const data = (find(docs, 'ConfigMap', 'longhaul').data ?? {}) as Record<string, string>;
    const configured = loadConfig(data).shutdownTimeoutSeconds;
    const byDefault = loadConfig({}).shutdownTimeoutSeconds;
    // Stopping also waits for pg-boss and closes connections: keep a margin over the drain itself.
    expect(grace).toBeGreaterThanOrEqual(Math.max(configured, byDefault) + 10);
  });

  it('points selectors and the scaler at what exists', () => {
    const podLabels = (name: string) =>
      (find(docs, 'Deployment', name).spec as { template: { metadata: { labels: Record<string, string> } } }).template
        .metadata.labels;
    const service = find(docs, 'Service', 'longhaul-api').spec as { selector: Record<string, string> };
    expect(podLabels('longhaul-api')).toMatchObject(service.selector);
    for (const [pdb, deployment] of [
      ['longhaul-api', 'longhaul-api'],
      ['longhaul-worker', 'longhaul-worker'],
    ] as const) {
      const spec = find(docs, 'PodDisruptionBudget', pdb).spec as { selector: { matchLabels: Record<string, string> } };
      expect(podLabels(deployment)).toMatchObject(spec.selector.matchLabels);
    }
    const scaled = find(docs, 'ScaledObject', 'longhaul-worker').spec as {
      scaleTargetRef: { name: string };
      minReplicaCount: number;
      triggers: Array<{ authenticationRef: { name: string } }>;
    };
    expect(find(docs, 'Deployment', scaled.scaleTargetRef.name)).toBeDefined();
    // Workers also send webhooks and run the monitors: never scaled to zero.
    expect(scaled.minReplicaCount).toBeGreaterThanOrEqual(1);
    for (const t of scaled.triggers)
      expect(find(docs, 'TriggerAuthentication', t.authenticationRef.name)).toBeDefined();
  });
});

describe('the KEDA query', () => {
  it("runs on longhaul's schema and counts the jobs waiting or running", async () => {
    const scaled = find(builds[0]?.[1] ?? [], 'ScaledObject', 'longhaul-worker').spec as {
      triggers: Array<{ type: string; metadata: { query: string } }>;
    };
    const query = scaled.triggers.find((t) => t.type === 'postgresql')?.metadata.query ?? '';
    db = await createTestDatabase();
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ count: unknown }>(query);
      expect(rows.map((r) => Number(r.count))).toEqual([0]);
    } finally {
      await client.end();
    }
  });
});
