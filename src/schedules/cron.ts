/**
 * A schedule's occurrences: a cron expression read in an IANA time zone by cron-parser, which walks
 * wall-clock time in that zone (Luxon underneath). Across a daylight-saving change, a time that does not
 * exist (02:30 on a spring-forward night) fires at the first instant after the gap (03:30), and a time
 * that happens twice (01:30 on a fall-back night) fires once, at its first instance; expressions that
 * step through every hour or minute fire at each real instant that matches.
 */
import { CronExpressionParser } from 'cron-parser';

/** Why a cron expression or time zone is refused, by field; undefined when both are valid. */
export function cronProblem(
  cron: string,
  timezone: string,
): { field: 'cron' | 'timezone'; message: string } | undefined {
  if (!validTimeZone(timezone))
    return { field: 'timezone', message: `"${timezone}" is not an IANA time zone (e.g. "Europe/Berlin" or "UTC")` };
  const fields = cron.trim().split(/\s+/);
  if (!cron.trim().startsWith('@') && fields.length !== 5 && fields.length !== 6)
    return {
      field: 'cron',
      message: 'needs 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first',
    };
  try {
    CronExpressionParser.parse(cron, { tz: timezone, currentDate: new Date() }).next();
  } catch (err) {
    return { field: 'cron', message: `does not parse: ${(err as Error).message}` };
  }
  return undefined;
}

function validTimeZone(tz: string): boolean {
  if (tz.length === 0 || tz.length > 64) return false;
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

/** `H` in an expression (cron-parser's jitter) is seeded by the schedule, so every process reads the same times. */
function parse(cron: string, timezone: string, seed: string, from: Date) {
  return CronExpressionParser.parse(cron, { tz: timezone, currentDate: from, hashSeed: seed });
}

/** The first occurrence strictly after `after`. */
export function nextOccurrence(cron: string, timezone: string, seed: string, after: Date): Date {
  return parse(cron, timezone, seed, after).next().toDate();
}

/** The last occurrence at or before `at`, or undefined when there is none. */
export function latestOccurrence(cron: string, timezone: string, seed: string, at: Date): Date | undefined {
  try {
    return parse(cron, timezone, seed, new Date(at.getTime() + 1))
      .prev()
      .toDate();
  } catch {
    return undefined;
  }
}
