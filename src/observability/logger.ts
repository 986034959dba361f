/**
 * Structured JSON logs (pino). Secrets are redacted by field path, and every line is passed through
 * redactSecrets for the credentials that travel in URLs, so neither reaches a log line.
 */
import { pino, type Logger } from 'pino';
import { redactSecrets } from './redact.ts';
import { logIds } from './tracing.ts';

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
      // Paths cannot reach a credential inside a string (a token in a request path or a URL's query).
      hooks: { streamWrite: redactSecrets },
      timestamp: pino.stdTimeFunctions.isoTime,
      // A line logged inside a span carries its trace_id and span_id.
      mixin: logIds,
    },
    destination,
  );
}
