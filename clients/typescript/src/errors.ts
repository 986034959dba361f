/** What the client throws when longhaul answers with a problem (RFC 9457), or with no usable answer. */
import type { components } from './openapi.ts';

export type Problem = components['schemas']['Problem'];

/** An error answer from longhaul: `status`, the problem's stable `type`, and the request id to quote. */
export class LonghaulError extends Error {
  override name = 'LonghaulError';
  readonly status: number;
  /** The problem's `type` URI (stable per kind of error), or `about:blank` when the body was not a problem. */
  readonly type: string;
  readonly problem: Problem | undefined;
  readonly requestId: string | undefined;

  constructor(status: number, problem: Problem | undefined, requestId: string | undefined) {
    super(problem === undefined ? `HTTP ${status}` : `${problem.title}: ${problem.detail}`);
    this.status = status;
    this.problem = problem;
    this.type = problem?.type ?? 'about:blank';
    this.requestId = problem?.request_id ?? requestId;
  }

  /** The error for a non-2xx response whose body `error` has been read (by openapi-fetch) or not. */
  static of(response: Response, error: unknown): LonghaulError {
    const problem = isProblem(error) ? error : undefined;
    return new LonghaulError(response.status, problem, response.headers.get('x-request-id') ?? undefined);
  }

  /** Reads the body of a non-2xx response and returns its error. */
  static async from(response: Response): Promise<LonghaulError> {
    const text = await response.text().catch(() => '');
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    return LonghaulError.of(response, body);
  }
}

function isProblem(v: unknown): v is Problem {
  const o = v as Partial<Problem> | null;
  return typeof o === 'object' && o !== null && typeof o.type === 'string' && typeof o.status === 'number';
}

/** Thrown by `verify` when a webhook's signature, timestamp or headers do not check out. */
export class WebhookVerificationError extends Error {
  override name = 'WebhookVerificationError';
}
