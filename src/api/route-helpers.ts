/** Small steps that route files share: reading a path id, writing a timestamp that may be absent. */
import { ApiError } from './errors.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A path id that is not a UUID cannot name a `resource`: 404 like any unknown one. Lower case otherwise. */
export function parseUuidParam(id: string, resource: string): string {
  if (!UUID.test(id)) throw new ApiError('not-found', `no ${resource} with id ${JSON.stringify(id.slice(0, 64))}`);
  return id.toLowerCase();
}

export const isoOrNull = (d: Date | null): string | null => (d === null ? null : d.toISOString());
