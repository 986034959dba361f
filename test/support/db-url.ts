/** Names shared by the global setup and the per-file databases. */
export { databaseUrl as withDatabase } from './scratch.ts';

export const TEMPLATE_DB = 'longhaul_template';
