/** Workers: every live worker process, from the heartbeat table the processes write themselves. */
import { html } from 'hono/html';
import { listWorkers } from '../../worker/presence.ts';
import type { ConsoleApp, ConsoleDeps } from '../context.ts';
import { page, when } from '../layout.ts';
import { scopeOf } from '../session.ts';

export function registerWorkerPages(app: ConsoleApp, deps: ConsoleDeps): void {
  const { pool, config } = deps;
  app.get('/console/workers', async (c) => {
    const session = c.get('session');
    // A tenant sees the shared processes but only its own jobs on them.
    const workers = await listWorkers(pool, config.worker.leaseSeconds, scopeOf(session));
    const body = html`<div class="scroll">
        <table>
          <thead>
            <tr>
              <th scope="col">Host</th>
              <th scope="col">PID</th>
              <th scope="col">Started</th>
              <th scope="col">Concurrency</th>
              <th scope="col">Job types</th>
              <th scope="col">Running now</th>
              <th scope="col">Last heartbeat</th>
            </tr>
          </thead>
          <tbody>
            ${workers.map(
              (w) =>
                html`<tr>
                  <td>${w.host}</td>
                  <td>${w.pid}</td>
                  <td>${when(w.started_at)}</td>
                  <td>${w.concurrency}</td>
                  <td>${w.job_types.join(', ')}</td>
                  <td>
                    ${
                      w.running.length === 0
                        ? '–'
                        : html`<ul class="plain">
                            ${w.running.map(
                              (j) =>
                                html`<li>
                                  <a href="/console/jobs/${j.id}"><code>${j.id.slice(0, 8)}</code></a> ${j.type}
                                </li>`,
                            )}
                          </ul>`
                    }
                  </td>
                  <td>${when(w.heartbeat_at)}</td>
                </tr>`,
            )}
          </tbody>
        </table>
      </div>
      ${workers.length === 0 ? html`<p>No worker process is running.</p>` : ''}
      <p class="hint">
        A process that stops heartbeating leaves this list within one lease (${config.worker.leaseSeconds} s).
      </p>`;
    return c.html(await page('Workers', session, '/console/workers', body));
  });
}
