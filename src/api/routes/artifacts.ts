/**
 * Job artifacts: GET /v1/jobs/{id}/artifacts lists them with fresh signed links, GET
 * /v1/jobs/{id}/artifacts/{name} downloads one with the API key, and GET /artifacts/{token}/{name}
 * downloads one with a signed link instead (outside /v1, so the API-key middleware does not apply: the
 * token is the credential, and it names the tenant, job and artifact it opens).
 */
import { Readable } from 'node:stream';
import { createRoute, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { getJob } from '../../jobs/repository.ts';
import {
  getArtifact,
  listArtifacts,
  signedLink,
  SIGNED_DOWNLOAD_PATH,
  type Artifact,
} from '../../storage/artifacts.ts';
import { createStorage } from '../../storage/local.ts';
import type { Storage } from '../../storage/storage.ts';
import type { App, AppDeps, AppEnv } from '../context.ts';
import { ApiError } from '../errors.ts';
import { listQuery } from '../schemas.ts';
import { errorResponses, jsonContent } from '../openapi-helpers.ts';
import { TokenError } from '../../tokens/signer.ts';
import { parseJobId } from './jobs.ts';

const ArtifactSchema = z
  .object({
    name: z.string().openapi({ example: 'report.pdf' }),
    content_type: z.string().openapi({ example: 'application/pdf' }),
    size: z.number().int().openapi({ description: 'Bytes' }),
    expires_at: z
      .string()
      .datetime()
      .openapi({ description: 'When the artifact is deleted (LONGHAUL_ARTIFACT_RETENTION_SECONDS after it was made)' }),
    url: z.string().openapi({
      description: 'Signed download URL that works without the API key (hand it to a browser) until `url_expires_at`',
    }),
    url_expires_at: z.string().datetime(),
  })
  .openapi('Artifact');

const ArtifactListSchema = z.object({ data: z.array(ArtifactSchema) }).openapi('ArtifactList');

const ArtifactParams = z.object({
  id: z.string().openapi({ param: { name: 'id', in: 'path' }, example: '0190d0a6-1c5e-7c4b-9a4f-1b2c3d4e5f60' }),
  name: z
    .string()
    .max(128)
    .openapi({ param: { name: 'name', in: 'path' }, example: 'report.pdf' }),
});

const SignedParams = z.object({
  token: z
    .string()
    .max(4096)
    .openapi({ param: { name: 'token', in: 'path' }, description: 'The signed token from an artifact `url`' }),
  name: z
    .string()
    .max(128)
    .openapi({ param: { name: 'name', in: 'path' }, example: 'report.pdf' }),
});

const fileResponse = {
  description: 'The file',
  headers: z.object({
    'Content-Disposition': z.string().openapi({ description: '`attachment` with the artifact name' }),
  }),
  content: {
    'application/pdf': { schema: z.string().openapi({ format: 'binary', description: 'A PDF artifact (report.pdf)' }) },
    'text/csv': {
      schema: z.string().openapi({ format: 'binary', description: 'A CSV artifact (report.csv), UTF-8, RFC 4180' }),
    },
  },
};

const listRoute = createRoute({
  method: 'get',
  path: '/v1/jobs/{id}/artifacts',
  operationId: 'listArtifacts',
  tags: ['artifacts'],
  summary: "List a job's artifacts",
  description:
    'Each artifact with a fresh signed download URL (valid for LONGHAUL_ARTIFACT_URL_TTL_SECONDS). Expired artifacts are not listed.',
  security: [{ apiKey: [] }],
  request: { params: z.object({ id: ArtifactParams.shape.id }), query: listQuery({}) },
  responses: {
    200: { description: 'The artifacts', ...jsonContent(ArtifactListSchema) },
    ...errorResponses(400, 401, 404, 503),
  },
});

const downloadRoute = createRoute({
  method: 'get',
  path: '/v1/jobs/{id}/artifacts/{name}',
  operationId: 'getArtifact',
  tags: ['artifacts'],
  summary: 'Download an artifact',
  security: [{ apiKey: [] }],
  request: { params: ArtifactParams },
  responses: { 200: fileResponse, ...errorResponses(401, 404) },
});

const signedRoute = createRoute({
  method: 'get',
  path: `${SIGNED_DOWNLOAD_PATH}/{token}/{name}`,
  operationId: 'downloadArtifact',
  tags: ['artifacts'],
  summary: 'Download an artifact with a signed URL',
  description:
    'No API key: the token in the path is the credential. It opens one artifact of one job and expires (401 once expired; ask GET /v1/jobs/{id}/artifacts for a fresh one).',
  request: { params: SignedParams },
  responses: { 200: fileResponse, ...errorResponses(401, 404, 503) },
});

/** Header value naming the download; the name is already restricted to [A-Za-z0-9._-]. */
function disposition(name: string): string {
  return `attachment; filename="${name}"`;
}

async function send(c: Context<AppEnv>, storage: Storage, a: Artifact): Promise<Response> {
  const file = await storage.get(a.storage_key);
  if (file === undefined) throw new ApiError('not-found', `artifact ${a.name} is no longer stored`);
  return c.body(Readable.toWeb(file.stream) as ReadableStream, 200, {
    'Content-Type': a.content_type,
    'Content-Length': String(file.size),
    'Content-Disposition': disposition(a.name),
    'Cache-Control': 'private, no-store',
  });
}

export function registerArtifactRoutes(app: App, deps: AppDeps): void {
  const { pool, config } = deps;
  const storage = deps.storage ?? createStorage(config);

  app.openapi(listRoute, async (c) => {
    const id = parseJobId(c.req.valid('param').id);
    const tenant = c.get('tenant');
    if ((await getJob(pool, tenant.id, id)) === undefined) throw new ApiError('not-found', `no job with id ${id}`);
    if (deps.signer === undefined)
      throw new ApiError('service-unavailable', 'download links are not available on this process');
    const signer = deps.signer;
    const rows = await listArtifacts(pool, tenant.id, id);
    const data = await Promise.all(
      rows.map((a) => signedLink(signer, config.publicUrl, a, config.artifactUrlTtlSeconds)),
    );
    return c.json({ data }, 200);
  });

  app.openapi(downloadRoute, async (c) => {
    const { id: raw, name } = c.req.valid('param');
    const id = parseJobId(raw);
    const a = await getArtifact(pool, c.get('tenant').id, id, name);
    if (a === undefined)
      throw new ApiError('not-found', `job ${id} has no artifact ${JSON.stringify(name.slice(0, 128))}`);
    return send(c, storage, a);
  });

  app.openapi(signedRoute, async (c) => {
    const { token, name } = c.req.valid('param');
    if (deps.signer === undefined)
      throw new ApiError('service-unavailable', 'download links are not available on this process');
    let claims;
    try {
      claims = await deps.signer.verify('artifact', token);
    } catch (err) {
      if (err instanceof TokenError)
        throw new ApiError('unauthorized', `the download link is not valid: ${err.message}`);
      throw err;
    }
    const job = typeof claims.job === 'string' ? claims.job : '';
    if (claims.name !== name) throw new ApiError('unauthorized', 'the download link is for another artifact');
    const a = await getArtifact(pool, claims.sub, parseJobId(job), name);
    if (a === undefined) throw new ApiError('not-found', `artifact ${name} does not exist or has expired`);
    return send(c, storage, a);
  });
}
