/**
 * `longhaul jobs watch`: follows a job's events (the client package's `watch`) and shows them: one live
 * progress bar (cli-progress) with percent, rate and ETA on a terminal, plain lines otherwise, one JSON
 * message per line with `--json`. Resolves with the job's final status.
 */
import { SingleBar } from 'cli-progress';
import type { JobStatus, Longhaul, StreamMessage } from '../../clients/typescript/src/index.ts';

export interface Output {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/** Items per second over the last RATE_WINDOW_MS of progress. */
const RATE_WINDOW_MS = 10_000;

class Rate {
  readonly #samples: Array<{ at: number; processed: number }> = [];

  add(processed: number, at: number = Date.now()): void {
    this.#samples.push({ at, processed });
    while (this.#samples.length > 2 && at - (this.#samples[0]?.at ?? at) > RATE_WINDOW_MS) this.#samples.shift();
  }

  perSecond(): number | undefined {
    const first = this.#samples[0];
    const last = this.#samples.at(-1);
    if (first === undefined || last === undefined || last.at === first.at) return undefined;
    return ((last.processed - first.processed) * 1000) / (last.at - first.at);
  }
}

function seconds(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const t = Math.round(s);
  return t >= 3600
    ? `${Math.floor(t / 3600)}h${String(Math.floor((t % 3600) / 60)).padStart(2, '0')}m`
    : t >= 60
      ? `${Math.floor(t / 60)}m${String(t % 60).padStart(2, '0')}s`
      : `${t}s`;
}

interface Progress {
  status: JobStatus;
  processed: number;
  total: number | null;
  percent: number | null;
}

function progressOf(m: StreamMessage, prev: Progress): Progress {
  switch (m.type) {
    case 'snapshot':
      return { status: m.job.status, ...m.job.progress };
    case 'progress':
      return { ...prev, processed: m.processed, total: m.total, percent: m.percent };
    case 'status':
      return { ...prev, status: m.status };
  }
}

function line(p: Progress): string {
  const of = p.total === null ? `${p.processed}` : `${p.processed}/${p.total}`;
  return `${p.status} ${of}${p.percent === null ? '' : ` ${Math.floor(p.percent)}%`}`;
}

/** The bar's tokens: percent, rate and ETA as text, known or not. */
function tokens(p: Progress, rate: number | undefined) {
  const left = p.total === null ? undefined : p.total - p.processed;
  return {
    state: p.status,
    pct: p.percent === null ? '  ?%' : `${String(Math.floor(p.percent)).padStart(3)}%`,
    count: p.total === null ? `${p.processed}` : `${p.processed}/${p.total}`,
    speed: rate === undefined ? '?/s' : `${rate >= 10 ? Math.round(rate) : rate.toFixed(1)}/s`,
    left: left === undefined || rate === undefined || rate <= 0 ? '?' : seconds(left / rate),
  };
}

export async function watchJob(
  lh: Longhaul,
  id: string,
  out: Output,
  opts: { json: boolean; signal?: AbortSignal },
): Promise<JobStatus> {
  let p: Progress = { status: 'PENDING', processed: 0, total: null, percent: null };
  const rate = new Rate();
  const tty = !opts.json && out.isTTY === true;
  const bar = tty
    ? new SingleBar({
        stream: out as NodeJS.WritableStream,
        format: '{state} |{bar}| {pct} {count} {speed} ETA {left}',
        barsize: Math.max(10, Math.min(40, (out.columns ?? 80) - 50)),
        barCompleteChar: '#',
        barIncompleteChar: '-',
        hideCursor: true,
        // Every event is drawn (they arrive at the job's pace, not faster than a terminal can show).
        fps: 20,
      })
    : undefined;
  let started = false;
  try {
    for await (const m of lh.jobs.watch(id, opts.signal === undefined ? {} : { signal: opts.signal })) {
      p = progressOf(m, p);
      rate.add(p.processed);
      if (opts.json) out.write(JSON.stringify(m) + '\n');
      else if (bar === undefined) out.write(line(p) + '\n');
      else {
        // The bar runs on a percent scale: totals may be unknown, or change when the job learns them.
        const value = p.percent ?? 0;
        if (!started) bar.start(100, value, tokens(p, rate.perSecond()));
        else bar.update(value, tokens(p, rate.perSecond()));
        started = true;
      }
    }
  } finally {
    if (started) bar?.stop();
  }
  return p.status;
}
