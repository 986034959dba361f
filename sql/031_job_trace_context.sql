-- The trace context (W3C traceparent, tracestate) of the request that created a job, so that the worker's
-- and the dispatcher's spans continue its trace. Null when tracing was off or the request not sampled.
ALTER TABLE jobs ADD COLUMN trace_context jsonb;
