/**
 * The artifacts table: which job owns which stored file, its type and size, and when it expires;
 * plus the signed download links that work without the API key.
 */
import type { Queryable } from '../db/pool.ts';
import type { TokenSigner } from '../tokens/signer.ts';

export interface Artifact {
  job_id: string;
  name: string;
  tenant_id: string;
  storage_key: string;
  content_type: string;
  size: number;
  created_at: Date;
  expires_at: Date;
}

const COLUMNS = 'job_id, name, tenant_id, storage_key, content_type, size, created_at, expires_at';

/** Records (or replaces, when a job's last step is redone) an artifact that was stored. */
export async function recordArtifact(
  db: Queryable,
  a: {
    jobId: string;
    tenantId: string;
    name: string;
    storageKey: string;
    contentType: string;
    size: number;
    retentionSeconds: number;
  },
): Promise<Artifact> {
  const { rows } = await db.query<Artifact>(
    `INSERT INTO artifacts (job_id, name, tenant_id, storage_key, content_type, size, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))
     ON CONFLICT (job_id, name) DO UPDATE
       SET storage_key = EXCLUDED.storage_key, content_type = EXCLUDED.content_type, size = EXCLUDED.size,
           created_at = now(), expires_at = EXCLUDED.expires_at
     RETURNING ${COLUMNS}`,
    [a.jobId, a.name, a.tenantId, a.storageKey, a.contentType, a.size, a.retentionSeconds],
  );
  const row = rows[0];
  if (row === undefined) throw new Error('artifact insert returned no row');
  return row;
}

/** The job's artifacts that have not expired, by name. */
export async function listArtifacts(db: Queryable, tenantId: string, jobId: string): Promise<Artifact[]> {
  const { rows } = await db.query<Artifact>(
    `SELECT ${COLUMNS} FROM artifacts WHERE job_id = $1 AND tenant_id = $2 AND expires_at > now() ORDER BY name`,
    [jobId, tenantId],
  );
  return rows;
}

export async function getArtifact(
  db: Queryable,
  tenantId: string,
  jobId: string,
  name: string,
): Promise<Artifact | undefined> {
  const { rows } = await db.query<Artifact>(
    `SELECT ${COLUMNS} FROM artifacts WHERE job_id = $1 AND tenant_id = $2 AND name = $3 AND expires_at > now()`,
    [jobId, tenantId, name],
  );
  return rows[0];
}

/** Takes up to `limit` expired artifacts off the table and returns them, so their files can be deleted. */
export async function takeExpiredArtifacts(db: Queryable, limit: number): Promise<Artifact[]> {
  const { rows } = await db.query<Artifact>(
    `DELETE FROM artifacts WHERE (job_id, name) IN (
       SELECT job_id, name FROM artifacts WHERE expires_at <= now() ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)
     RETURNING ${COLUMNS}`,
    [limit],
  );
  return rows;
}

/** Path of the download route that takes a signed token instead of the API key. */
export const SIGNED_DOWNLOAD_PATH = '/artifacts';

export type ArtifactLink = {
  name: string;
  content_type: string;
  size: number;
  expires_at: string;
  /** Signed download URL; works without the API key until `url_expires_at`. */
  url: string;
  url_expires_at: string;
};

/** A signed, short-lived download link for an artifact. */
export async function signedLink(
  signer: TokenSigner,
  publicUrl: string,
  a: Artifact,
  ttlSeconds: number,
): Promise<ArtifactLink> {
  const { token, expiresAt } = await signer.sign(
    'artifact',
    { sub: a.tenant_id, job: a.job_id, name: a.name },
    ttlSeconds,
  );
  return {
    name: a.name,
    content_type: a.content_type,
    size: a.size,
    expires_at: a.expires_at.toISOString(),
    url: `${publicUrl}${SIGNED_DOWNLOAD_PATH}/${token}/${encodeURIComponent(a.name)}`,
    url_expires_at: expiresAt.toISOString(),
  };
}
