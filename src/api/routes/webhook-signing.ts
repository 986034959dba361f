/**
 * How a tenant's webhooks are signed: the signature scheme, rotation of v1 secrets and v1a Ed25519 keys
 * (with a grace period), and the public JWKS that verifies v1a signatures.
 */
import { createRoute, z } from '@hono/zod-openapi';
import {
  chooseSignatureScheme,
  publicJwks,
  rotateSigningKey,
  signingSettings,
  type SigningSettings,
} from '../../webhooks/keys.ts';
import { rotateSecret } from '../../tenants/repository.ts';
import type { App, AppDeps } from '../context.ts';
import { requireJsonBody } from '../middleware.ts';
import { errorResponses, jsonContent } from '../openapi-helpers.ts';
import { isoOrNull } from '../route-helpers.ts';

/** Longest grace period a rotation may ask for (a week): older secrets must not linger indefinitely. */
const MAX_GRACE_SECONDS = 7 * 24 * 3600;

const SecretSchema = z
  .object({
    id: z.string().uuid(),
    prefix: z.string(),
    created_at: z.string().datetime(),
    expires_at: z.string().datetime().nullable(),
  })
  .openapi('WebhookSecret');
export const NewSecretSchema = SecretSchema.extend({
  secret: z.string().openapi({ description: 'The new `whsec_` secret, shown only here' }),
}).openapi('NewWebhookSecret');

const JwkSchema = z
  .object({
    kty: z.literal('OKP'),
    crv: z.literal('Ed25519'),
    x: z.string().openapi({ description: 'The public key, base64url (RFC 8037)' }),
    kid: z.string().openapi({ description: 'The key id: its JWK thumbprint (RFC 7638)' }),
    alg: z.literal('EdDSA'),
    use: z.literal('sig'),
  })
  .openapi('Jwk', { description: 'An Ed25519 public key (kty OKP, crv Ed25519) with its kid' });
const SigningKeySchema = z
  .object({
    kid: z.string(),
    public_key: z.string().openapi({ description: '`whpk_` + base64 of the raw public key (Standard Webhooks form)' }),
    public_jwk: JwkSchema,
    created_at: z.string().datetime(),
    expires_at: z.string().datetime().nullable(),
  })
  .openapi('WebhookSigningKey');

const SettingsSchema = z
  .object({
    signature_scheme: z
      .enum(['v1', 'v1a'])
      .openapi({ description: 'v1: HMAC-SHA256 with the whsec_ secrets. v1a: Ed25519 with the keys below.' }),
    jwks_url: z.string(),
    secrets: z.array(SecretSchema),
    signing_keys: z.array(SigningKeySchema),
  })
  .openapi('WebhookSettings');

const PutSettingsSchema = z
  .object({ signature_scheme: z.enum(['v1', 'v1a']) })
  .strict()
  .openapi('PutWebhookSettings');

export const GraceQuery = z.object({
  grace_seconds: z.coerce
    .number()
    .int()
    .min(0)
    .max(MAX_GRACE_SECONDS)
    .optional()
    .openapi({
      param: { name: 'grace_seconds', in: 'query' },
      description:
        'How long the previous secrets/keys keep signing (default LONGHAUL_WEBHOOK_SECRET_GRACE_SECONDS, 24 h; 0 revokes them now)',
    }),
});
const security = [{ apiKey: [] }];

const settingsRoute = createRoute({
  method: 'get',
  path: '/v1/webhook-settings',
  operationId: 'getWebhookSettings',
  tags: ['webhooks'],
  summary: 'Signature scheme, active secrets and signing keys',
  security,
  responses: { 200: { description: 'Settings', ...jsonContent(SettingsSchema) }, ...errorResponses(401) },
});

const putSettingsRoute = createRoute({
  method: 'put',
  path: '/v1/webhook-settings',
  operationId: 'updateWebhookSettings',
  tags: ['webhooks'],
  summary: 'Choose the signature scheme (v1 HMAC or v1a Ed25519)',
  description:
    'Choosing v1a creates an Ed25519 key if the tenant has none; its public key is published in /.well-known/jwks.json.',
  security,
  request: { body: { content: { 'application/json': { schema: PutSettingsSchema } }, required: true } },
  responses: {
    200: { description: 'Settings', ...jsonContent(SettingsSchema) },
    ...errorResponses(400, 401, 413, 415, 422),
  },
});

const rotateSecretRoute = createRoute({
  method: 'post',
  path: '/v1/webhook-secrets',
  operationId: 'rotateWebhookSecret',
  tags: ['webhooks'],
  summary: 'Add a new v1 secret (rotation)',
  description:
    'The previous secrets keep signing for the grace period, so every delivery meanwhile carries one v1 signature per active secret.',
  security,
  request: { query: GraceQuery },
  responses: {
    201: { description: 'The new secret, shown once', ...jsonContent(NewSecretSchema) },
    ...errorResponses(400, 401, 413, 415, 422),
  },
});

const rotateKeyRoute = createRoute({
  method: 'post',
  path: '/v1/webhook-signing-keys',
  operationId: 'rotateWebhookSigningKey',
  tags: ['webhooks'],
  summary: 'Add a new v1a Ed25519 signing key (rotation)',
  security,
  request: { query: GraceQuery },
  responses: {
    201: { description: 'The new key (public part)', ...jsonContent(SigningKeySchema) },
    ...errorResponses(400, 401, 413, 415, 422),
  },
});

const jwksRoute = createRoute({
  method: 'get',
  path: '/.well-known/jwks.json',
  operationId: 'getJwks',
  tags: ['webhooks'],
  summary: 'Public keys that verify v1a webhook signatures',
  responses: {
    200: {
      description: 'A JWKS of Ed25519 keys, each with its kid',
      ...jsonContent(z.object({ keys: z.array(JwkSchema) }).openapi('Jwks')),
    },
  },
});

export function registerWebhookSigningRoutes(app: App, deps: AppDeps): void {
  const { pool, config } = deps;
  const grace = (q: { grace_seconds?: number | undefined }) => q.grace_seconds ?? config.webhooks.secretGraceSeconds;
  const toSettings = (s: SigningSettings) => ({
    signature_scheme: s.scheme,
    jwks_url: `${config.publicUrl}/.well-known/jwks.json`,
    secrets: s.secrets.map((secret) => ({
      id: secret.id,
      prefix: secret.prefix,
      created_at: secret.created_at.toISOString(),
      expires_at: isoOrNull(secret.expires_at),
    })),
    signing_keys: s.signingKeys.map((k) => ({
      ...k,
      created_at: k.created_at.toISOString(),
      expires_at: isoOrNull(k.expires_at),
    })),
  });
  app.on('PUT', '/v1/webhook-settings', requireJsonBody());

  app.openapi(settingsRoute, async (c) => c.json(toSettings(await signingSettings(pool, c.get('tenant').id)), 200));

  app.openapi(putSettingsRoute, async (c) => {
    const { signature_scheme } = c.req.valid('json');
    return c.json(toSettings(await chooseSignatureScheme(pool, c.get('tenant').id, signature_scheme)), 200);
  });

  app.openapi(rotateSecretRoute, async (c) => {
    const s = await rotateSecret(pool, c.get('tenant').id, grace(c.req.valid('query')));
    c.get('log').info({ secret_id: s.id }, 'webhook secret rotated');
    return c.json(
      { id: s.id, prefix: s.prefix, secret: s.secret, created_at: s.created_at.toISOString(), expires_at: null },
      201,
    );
  });

  app.openapi(rotateKeyRoute, async (c) => {
    const k = await rotateSigningKey(pool, c.get('tenant').id, grace(c.req.valid('query')));
    c.get('log').info({ kid: k.kid }, 'webhook signing key rotated');
    return c.json({ ...k, created_at: k.created_at.toISOString(), expires_at: null }, 201);
  });

  app.openapi(jwksRoute, async (c) => {
    c.header('Cache-Control', 'public, max-age=300');
    return c.json(await publicJwks(pool), 200);
  });
}
