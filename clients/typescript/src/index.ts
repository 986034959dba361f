/** @longhaul/client: a typed client for longhaul. See README.md. */
export {
  Longhaul,
  type CallOptions,
  type CreateJob,
  type DeadLetter,
  type DeadLetters,
  type Deliveries,
  type Delivery,
  type Job,
  type Jobs,
  type ListDeadLettersQuery,
  type ListDeliveriesQuery,
  type ListJobsQuery,
  type LonghaulOptions,
  type ReplayDeadLetters,
  type ReplayResult,
  type RetryJob,
  type SubmitOptions,
  type UntypedJob,
  type WaitOptions,
  type WatchOptions,
} from './client.ts';
export { LonghaulError, WebhookVerificationError, type Problem } from './errors.ts';
export type { components, paths, webhooks } from './openapi.ts';
export { DEFAULT_RETRY, type RetryOptions } from './retry.ts';
export { endsStream, isTerminal, type JobStatus, type StreamMessage } from './stream.ts';
export { WebhookVerifier, type HeadersLike, type WebhookEvent, type WebhookVerifierOptions } from './webhooks.ts';
