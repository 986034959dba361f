/**
 * The OpenAPI 3.1 document, generated from the route definitions and schemas, so it cannot drift
 * from the code. `npm run openapi` writes it to openapi.yaml; a test fails when the file is stale.
 */
import { stringify } from 'yaml';
import { z } from 'zod';
import type { AnyJobType } from '../../packages/sdk/src/index.ts';
import type { App } from './context.ts';

export const OPENAPI_INFO = {
  title: 'longhaul',
  version: '1.0.0',
  description:
    'Long-running jobs: submit a job, get its id at once, then poll it, stream its progress, or receive a signed webhook when it ends. ' +
    'Errors are RFC 9457 problem details (`application/problem+json`) whose `type` is stable per kind of error.',
  license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
};

/** Registers the security schemes the routes refer to; called once when the app is built. */
export function registerSecuritySchemes(app: App): void {
  app.openAPIRegistry.registerComponent('securitySchemes', 'apiKey', {
    type: 'http',
    scheme: 'bearer',
    description: "A tenant's API key: `Authorization: Bearer lh_…`",
  });
  app.openAPIRegistry.registerComponent('securitySchemes', 'adminToken', {
    type: 'http',
    scheme: 'bearer',
    description: 'The operator token set in LONGHAUL_ADMIN_TOKEN.',
  });
}

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => (typeof v === 'object' && v !== null ? (v as Obj) : {});

const REQUEST_ID_HEADER = { 'X-Request-Id': { $ref: '#/components/headers/X-Request-Id' } };

/**
 * What every operation has in common, documented once and referenced from each: the request id header
 * on every response (see requestContext), and the 500 problem any request may meet (see app.onError).
 */
function addCommonResponses(doc: Obj): void {
  const components = obj(doc.components);
  components.headers = {
    ...obj(components.headers),
    'X-Request-Id': {
      description:
        "The request's id (the caller's `X-Request-Id` when it is sane); it is on every log line of the request.",
      required: true,
      schema: { type: 'string' },
    },
  };
  components.responses = {
    ...obj(components.responses),
    InternalError: {
      description: 'An internal error; quote the request id when reporting it',
      headers: REQUEST_ID_HEADER,
      content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
    },
  };
  for (const item of Object.values(obj(doc.paths))) {
    for (const op of Object.values(obj(item))) {
      const responses = obj(obj(op).responses);
      for (const response of Object.values(responses)) {
        const r = obj(response);
        r.headers = { ...REQUEST_ID_HEADER, ...obj(r.headers) };
      }
      responses['500'] ??= { $ref: '#/components/responses/InternalError' };
    }
  }
}

/**
 * `CreateJob` as a union discriminated by `type`, one member per job type with its input's JSON Schema
 * (from its zod schema), so generated clients type each type's input. The route itself validates with
 * the job type's zod schema; this only describes it.
 */
function jobInputUnion(doc: Obj, types: AnyJobType[]): void {
  const schemas = obj(obj(doc.components).schemas);
  const base = obj(schemas.CreateJob);
  const baseProps = obj(base.properties);
  const members: Record<string, string> = {};
  for (const t of [...types].sort((a, b) => a.name.localeCompare(b.name))) {
    const name = `CreateJob_${t.name}`;
    const { $schema: _drop, ...input } = z.toJSONSchema(t.input, { io: 'input', unrepresentable: 'any' }) as Obj;
    schemas[name] = {
      type: 'object',
      description: `A \`${t.name}\` job.`,
      properties: {
        ...baseProps,
        type: { type: 'string', const: t.name },
        input: { ...input, description: `The input of a \`${t.name}\` job.` },
      },
      required: ['type', 'input'],
      additionalProperties: false,
    };
    members[t.name] = `#/components/schemas/${name}`;
  }
  schemas.CreateJob = {
    description: 'A job to submit: its `type` selects the schema of its `input`.',
    oneOf: Object.values(members).map(($ref) => ({ $ref })),
    discriminator: { propertyName: 'type', mapping: members },
  };
}

/**
 * A query parameter arrives as text or not at all: zod's coercing numbers are documented as nullable,
 * which generators then offer to send as `null`, and the API refuses. Query parameters are not null.
 */
function queryParamsNotNull(doc: Obj): void {
  for (const item of Object.values(obj(doc.paths)))
    for (const op of Object.values(obj(item)))
      for (const param of (obj(op).parameters as Obj[] | undefined) ?? []) {
        const schema = obj(param.schema);
        if (Array.isArray(schema.type)) {
          const types = (schema.type as string[]).filter((t) => t !== 'null');
          schema.type = types.length === 1 ? types[0] : types;
        }
      }
}

/**
 * What generators and linters cannot guess: an operation without credentials is public on purpose
 * (`security: []`; a webhook is authenticated by its signature headers, not a scheme), and each webhook
 * the service sends has an operationId of its own.
 */
function explicitOperations(doc: Obj): void {
  for (const item of Object.values(obj(doc.paths)))
    for (const op of Object.values(obj(item))) {
      const o = obj(op);
      o.security ??= [];
    }
  for (const [name, item] of Object.entries(obj(doc.webhooks)))
    for (const op of Object.values(obj(item))) {
      const o = obj(op);
      o.security ??= [];
      o.operationId ??=
        'receive' +
        name
          .split(/[^A-Za-z0-9]+/)
          .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
          .join('');
    }
}

export function openApiDocument(app: App, types: AnyJobType[]): Record<string, unknown> {
  const doc = app.getOpenAPI31Document({
    openapi: '3.1.0',
    info: OPENAPI_INFO,
    servers: [{ url: 'http://localhost:3000', description: 'A local longhaul (npm start)' }],
    tags: [
      { name: 'jobs', description: 'Submit, read, list and cancel jobs' },
      { name: 'schedules', description: 'Recurring schedules: a job at every occurrence of a cron expression' },
      {
        name: 'webhooks',
        description: 'Signed job events: deliveries, dead-letter replay, endpoints, secrets and keys',
      },
      { name: 'artifacts', description: 'Files a job produced, and their signed download URLs' },
      { name: 'dead letters', description: 'Jobs that failed for good, and replaying them' },
      { name: 'admin', description: 'Operator endpoints (LONGHAUL_ADMIN_TOKEN)' },
      { name: 'operations', description: 'Health, readiness, metrics' },
    ],
  });
  const out = JSON.parse(JSON.stringify(doc)) as Obj;
  addCommonResponses(out);
  jobInputUnion(out, types);
  queryParamsNotNull(out);
  explicitOperations(out);
  return out;
}

export function openApiYaml(app: App, types: AnyJobType[]): string {
  return stringify(openApiDocument(app, types), { lineWidth: 0, aliasDuplicateObjects: false });
}
