/** Structured JSON logs (pino). Secrets are redacted by path so they never reach a log line. */
import { pino, type Logger } from 'pino';

export type { Logger };

/** Paths whose values are secrets wherever they appear in a logged object. */
const REDACT = [
  'authorization',
  'req.headers.authorization',
  'headers.authorization',
  'api_key',
  '*.api_key',
  'webhook_secret',
  '*.webhook_secret',
  'secret',
  '*.secret',
  'token',
  '*.token',
  'password',
  '*.password',
  'databaseUrl',
  'connectionString',
];

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'longhaul', pid: process.pid },
      redact: { paths: REDACT, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}
