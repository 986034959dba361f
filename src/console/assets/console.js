// longhaul console: confirmations for actions, and live progress bars from the job event streams.
// Served by longhaul itself under a strict Content-Security-Policy (no inline script).
'use strict';

const csrf = document.querySelector('meta[name="csrf-token"]')?.getAttribute('content') ?? '';
const TERMINAL = new Set(['COMPLETED', 'FAILED', 'CANCELLED']);

for (const form of document.querySelectorAll('form[data-confirm]')) {
  form.addEventListener('submit', (event) => {
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  });
}

function setProgress(jobId, percent, processed, total) {
  for (const bar of document.querySelectorAll(`progress[data-job="${jobId}"]`)) {
    if (percent !== null && percent !== undefined) {
      bar.value = percent;
      bar.setAttribute('aria-valuenow', String(percent));
    }
  }
  for (const pct of document.querySelectorAll(`[data-pct="${jobId}"]`)) {
    if (percent !== null && percent !== undefined) pct.textContent = `${percent}%`;
  }
  if (!Number.isFinite(processed)) return;
  for (const count of document.querySelectorAll(`[data-count="${jobId}"]`)) {
    count.textContent =
      total === null
        ? processed.toLocaleString('en')
        : `${processed.toLocaleString('en')} of ${total.toLocaleString('en')}`;
  }
}

function setStatus(jobId, status) {
  for (const el of document.querySelectorAll(`[data-status="${jobId}"]`)) {
    el.textContent = status;
    el.className = `status s-${status}`;
  }
}

/** Rate and ETA from the progress messages seen on this page. */
function tracker(jobId) {
  let first;
  return (processed, total) => {
    const now = performance.now();
    if (first === undefined) {
      first = { at: now, processed };
      return;
    }
    const secs = (now - first.at) / 1000;
    if (secs <= 0) return;
    const perSecond = (processed - first.processed) / secs;
    for (const el of document.querySelectorAll(`[data-rate="${jobId}"]`))
      el.textContent = `${perSecond.toFixed(1)} / s`;
    if (total !== null && perSecond > 0)
      for (const el of document.querySelectorAll(`[data-eta="${jobId}"]`))
        el.textContent = `${Math.round((total - processed) / perSecond)} s`;
  };
}

async function follow(jobId, attempt = 0) {
  let path;
  try {
    const res = await fetch(`/console/jobs/${jobId}/stream-token`, {
      method: 'POST',
      headers: { 'X-CSRF-Token': csrf },
      credentials: 'same-origin',
    });
    if (!res.ok) return;
    path = (await res.json()).events_path;
  } catch {
    return;
  }
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(`${scheme}//${location.host}${path}`);
  const track = tracker(jobId);
  let finished = false;
  ws.addEventListener('message', (event) => {
    const m = JSON.parse(event.data);
    if (m.type === 'snapshot') {
      setProgress(jobId, m.job.progress.percent, m.job.progress.processed, m.job.progress.total);
      setStatus(jobId, m.job.status);
      finished = TERMINAL.has(m.job.status);
    } else if (m.type === 'progress') {
      setProgress(jobId, m.percent, m.processed, m.total);
      track(m.processed, m.total);
    } else if (m.type === 'status') {
      setStatus(jobId, m.status);
      if (m.status === 'COMPLETED') setProgress(jobId, 100, Number.NaN, null);
      finished = TERMINAL.has(m.status);
    }
  });
  ws.addEventListener('close', () => {
    // Reconnect (with a new token and a fresh snapshot) unless the job is over.
    if (!finished && attempt < 20) setTimeout(() => follow(jobId, attempt + 1), Math.min(10000, 500 * 2 ** attempt));
  });
}

for (const bar of document.querySelectorAll('progress[data-live="1"]')) follow(bar.dataset.job);
