/**
 * The page a service serves at `/` on its HTTP port: the task's state, full-sync progress, lag
 * over the last minutes as an inline SVG graph, offsets, errors and skipped-command counts.
 *
 * One self-contained document rendered on the server from the same body as /status: no script
 * bundle, no stylesheet or font from a CDN, so it works on a host without internet access and in
 * any browser. It reloads itself every few seconds (a meta refresh: nothing to build or break).
 */
import { formatBytes, formatDuration, type Progress } from './progress.js';
import type { TaskFailure, TaskTransition } from './task-state.js';

export interface StatusBody {
  role: string;
  name: string;
  state: string;
  stateLabel: string;
  since: number;
  failure: TaskFailure | null;
  history: TaskTransition[];
  progress: Progress | null;
  lagMs: number | null;
  /** [epoch ms, lag ms] samples, oldest first. */
  lagHistory: Array<[number, number]>;
  /** Offsets and positions to show, by name. */
  offsets: Record<string, unknown>;
  /** Skipped commands by name (the destination refused them and the task was told to go on). */
  skipped: Record<string, number>;
  error: string | null;
  /** Precheck items of this start, when it ran them. */
  precheck?: Array<{ item: string; result: string; detail: string }> | null;
  [more: string]: unknown;
}

/** An applier at the end of a cascade: the lag from the first source (applier/origin-lag.ts). */
function originLagLine(o: unknown): string {
  const origin = o as { sourceId?: string; ms?: number } | null | undefined;
  if (!origin || typeof origin.ms !== 'number') return '';
  return `<p>From the origin (source ${esc(origin.sourceId)}): <span id="origin-lag">${esc(formatMs(origin.ms))}</span></p>`;
}

const esc = (s: unknown): string =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);

const STATE_COLOURS: Record<string, string> = {
  'not-started': '#777',
  prechecking: '#2a6fb0',
  'precheck-failed': '#b02a2a',
  initializing: '#b07a2a',
  synchronizing: '#2a8a3e',
  paused: '#777',
  failed: '#b02a2a',
  completed: '#2a8a3e',
};

/** Lag samples as an SVG line graph: time on x over the window, lag on y from 0 to the maximum. */
export function lagGraph(samples: Array<[number, number]>, width = 600, height = 140): string {
  const pad = 30;
  if (samples.length < 2) {
    return `<svg id="lag-graph" xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" role="img" aria-label="lag graph"><text x="${pad}" y="${height / 2}" fill="#777">not enough lag samples yet</text></svg>`;
  }
  const t0 = samples[0][0];
  const t1 = samples[samples.length - 1][0];
  const maxLag = Math.max(1, ...samples.map((s) => s[1]));
  const x = (t: number) => pad + ((t - t0) / Math.max(1, t1 - t0)) * (width - pad - 10);
  const y = (v: number) => height - pad + 10 - (v / maxLag) * (height - pad - 10);
  const points = samples.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
  const minutes = ((t1 - t0) / 60_000).toFixed(1);
  return (
    `<svg id="lag-graph" xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" role="img" aria-label="lag over the last ${minutes} minutes">` +
    `<line x1="${pad}" y1="${y(0)}" x2="${width - 10}" y2="${y(0)}" stroke="#bbb"/>` +
    `<line x1="${pad}" y1="${y(maxLag)}" x2="${pad}" y2="${y(0)}" stroke="#bbb"/>` +
    `<text x="2" y="${y(maxLag) + 4}" font-size="10" fill="#555">${esc(formatMs(maxLag))}</text>` +
    `<text x="2" y="${y(0)}" font-size="10" fill="#555">0</text>` +
    `<text x="${pad}" y="${height - 4}" font-size="10" fill="#555">-${esc(minutes)} min</text>` +
    `<text x="${width - 40}" y="${height - 4}" font-size="10" fill="#555">now</text>` +
    `<polyline fill="none" stroke="#2a6fb0" stroke-width="2" points="${points}"/></svg>`
  );
}

function formatMs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function table(rows: Array<[string, unknown]>, id: string): string {
  if (rows.length === 0) return `<p id="${id}" class="muted">none</p>`;
  return `<table id="${id}">${rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(typeof v === 'object' && v !== null ? JSON.stringify(v) : v)}</td></tr>`).join('')}</table>`;
}

function progressSection(p: Progress | null): string {
  if (!p) return '<p id="progress" class="muted">no full sync in this run</p>';
  const pct = p.percent ?? 0;
  return (
    `<div id="progress" data-percent="${p.percent ?? ''}">` +
    `<div class="bar"><div class="fill" style="width:${pct}%"></div></div>` +
    `<p><span id="progress-percent">${p.percent === null ? '?' : p.percent.toFixed(1)}%</span> · ` +
    `<span id="progress-keys">${p.keysDone} of ${p.keysTotal ?? '?'} keys</span> · ` +
    `${esc(formatBytes(p.bytesDone))} of ${esc(formatBytes(p.bytesTotal))} · ` +
    `${p.keysPerSecond} keys/s, ${esc(formatBytes(p.bytesPerSecond))}/s · ` +
    `ETA ${p.done ? 'done' : esc(formatDuration(p.etaSeconds))}` +
    (p.basis === 'records' ? ' <span class="muted">(percent of the snapshot records in Kafka: no key total yet)</span>' : '') +
    `</p></div>`
  );
}

/** A capture whose source link is down: since when, how many attempts, the last error. */
function sourceLinkSection(link: unknown): string {
  const l = link as { state?: string; since?: number | null; retries?: number; lastError?: string | null } | null | undefined;
  if (!l || l.state !== 'disconnected') return '';
  const since = typeof l.since === 'number' ? new Date(l.since).toISOString() : '?';
  return `<div id="source-link" class="failure"><strong>Source link disconnected</strong> since ${esc(since)}, ${l.retries ?? 0} attempts${l.lastError ? `<br>${esc(l.lastError)}` : ''}</div>`;
}

/** Rate limits by setting name (null: none), and the time spent waiting for them. */
function limitsSection(limits: Record<string, number | null> | null | undefined): string {
  if (!limits) return '';
  const rows = Object.entries(limits)
    .filter(([n]) => n !== 'throttledMs')
    .map(([n, v]) => [n.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`), v === null ? 'none' : n.toLowerCase().includes('bytes') ? `${formatBytes(v)}/s` : `${v}/s`] as [string, unknown]);
  if (typeof limits.throttledMs === 'number') rows.push(['throttled so far', formatMs(limits.throttledMs)]);
  return `<h2>Rate limits</h2>${table(rows, 'limits')}<p class="muted">change with <code>replistream limits --http URL --NAME N</code> (0 removes a limit)</p>`;
}

const RESULT_COLOURS: Record<string, string> = { pass: '#2a8a3e', warn: '#b07a2a', fail: '#b02a2a', skip: '#777' };

function precheckSection(items: StatusBody['precheck']): string {
  if (!items || items.length === 0) return '';
  const rows = items
    .map((i) => `<tr class="precheck-${esc(i.result)}"><td style="color:${RESULT_COLOURS[i.result] ?? '#333'};font-weight:bold">${esc(i.result)}</td><th>${esc(i.item)}</th><td>${esc(i.detail)}</td></tr>`)
    .join('');
  return `<h2>Precheck</h2><table id="precheck">${rows}</table>`;
}

export function renderStatusPage(body: StatusBody, refreshSeconds = 5): string {
  const colour = STATE_COLOURS[body.state] ?? '#333';
  const failure = body.failure
    ? `<div id="failure" class="failure"><strong>${esc(body.failure.reason)}</strong>${body.failure.setting ? `<br>setting to change: <code>--${esc(body.failure.setting)}</code>` : ''}${body.failure.server ? `<br>server: <code>${esc(body.failure.server)}</code>` : ''}</div>`
    : '';
  const history = body.history.map((t) => [new Date(t.at).toISOString(), `${t.from} → ${t.to}${t.detail ? ` (${t.detail})` : ''}`] as [string, unknown]);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="${refreshSeconds}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>replistream ${esc(body.role)} ${esc(body.name)}: ${esc(body.stateLabel)}</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:60em}
h1{font-size:1.3em} h2{font-size:1.05em;margin-top:1.4em}
.state{display:inline-block;padding:.2em .7em;border-radius:.3em;color:#fff;background:${colour}}
.bar{width:100%;max-width:600px;height:1.2em;background:#eee;border-radius:.3em;overflow:hidden}
.fill{height:100%;background:#2a8a3e}
table{border-collapse:collapse} th,td{text-align:left;padding:.15em .8em .15em 0;font-weight:normal;vertical-align:top}
th{color:#555} .muted{color:#777} .failure{background:#fbeaea;border-left:4px solid #b02a2a;padding:.5em 1em;margin:1em 0}
code{font-size:.95em}
</style></head>
<body>
<h1>replistream ${esc(body.role)} <code>${esc(body.name)}</code></h1>
<p>State: <span id="state" class="state" data-state="${esc(body.state)}">${esc(body.stateLabel)}</span>
<span class="muted">since ${esc(new Date(body.since).toISOString())}</span></p>
${failure}
${sourceLinkSection(body.sourceLink)}
${precheckSection(body.precheck)}
<h2>Full sync</h2>
${progressSection(body.progress)}
${limitsSection(body.limits as Record<string, number | null> | null | undefined)}
<h2>Lag</h2>
<p>Now: <span id="lag">${body.lagMs === null ? 'unknown' : esc(formatMs(body.lagMs))}</span></p>
${originLagLine(body.originLag)}
${lagGraph(body.lagHistory)}
<h2>Offsets</h2>
${table(Object.entries(body.offsets), 'offsets')}
<h2>Errors</h2>
<p id="error">${body.error ? esc(body.error) : '<span class="muted">none</span>'}</p>
<h2>Skipped commands</h2>
${table(Object.entries(body.skipped), 'skipped')}
<h2>State changes</h2>
${table(history, 'history')}
<p class="muted">JSON: <a href="status">/status</a> · metrics: <a href="metrics">/metrics</a> · reloads every ${refreshSeconds} s</p>
</body></html>
`;
}
