/** Prometheus metrics of the worker's executions and steps, registered once per worker runtime. */
import client from 'prom-client';
import type { Registry } from '../observability/metrics.ts';

export interface WorkerMetrics {
  steps: client.Counter<'type' | 'outcome'>;
  checkpoint: client.Histogram<'type'>;
  checkpointWait: client.Counter<'type'>;
  executions: client.Counter<'outcome'>;
  leaseLost: client.Counter;
}

export function workerMetrics(r: Registry): WorkerMetrics {
  return {
    steps: new client.Counter({
      name: 'longhaul_job_steps_total',
      help: 'Job steps (start, chunks, finish) run',
      labelNames: ['type', 'outcome'],
      registers: [r],
    }),
    checkpoint: new client.Histogram({
      name: 'longhaul_checkpoint_seconds',
      help: 'Time to commit one checkpoint (the step transaction)',
      labelNames: ['type'],
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
      registers: [r],
    }),
    checkpointWait: new client.Counter({
      name: 'longhaul_checkpoint_wait_seconds_total',
      help: "Time jobs waited, their next chunk done, for the last chunk's checkpoint (durable writes and commit); what checkpoints add to a job's run time",
      labelNames: ['type'],
      registers: [r],
    }),
    executions: new client.Counter({
      name: 'longhaul_executions_total',
      help: 'Executions ended, by outcome',
      labelNames: ['outcome'],
      registers: [r],
    }),
    leaseLost: new client.Counter({
      name: 'longhaul_lease_lost_total',
      help: 'Executions that found their lease taken and abandoned the job',
      registers: [r],
    }),
  };
}
