/** Names shared by the global setup and the per-file databases. */
export const TEMPLATE_DB = 'longhaul_template';

export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}
