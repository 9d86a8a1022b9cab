/**
 * `replistream status --http URL [--http URL…] [--json]`: the state, full-sync progress and lag of
 * running services — a capture and its appliers given together show as one task, whose state is
 * the most urgent of theirs. On a terminal the full sync is drawn as a progress bar. Exits 1 when
 * a service cannot be read (unreachable, or a port that is not a replistream service) or the task
 * failed.
 */
import { ReplistreamError } from '../common/errors.js';
import { formatLimits } from './control.js';
import { progressBar, type Progress } from '../common/progress.js';
import { combinedTaskState, TASK_STATE_LABELS, TASK_STATES, type TaskState } from '../common/task-state.js';

async function readStatus(url: string): Promise<Record<string, unknown>> {
  const base = url.replace(/\/$/, '');
  let res: Response;
  try {
    res = await fetch(`${base}/status`, { signal: AbortSignal.timeout(5000) });
  } catch (err) {
    throw new ReplistreamError('CONNECTION', `cannot read ${base}/status: is the service running with --http-port, and reachable from here?`, { cause: err, retriable: true, setting: 'http' });
  }
  if (!res.ok) {
    throw new ReplistreamError('CONNECTION', `${base}/status answered HTTP ${res.status}: ${base} is not the HTTP port of a replistream capture or applier`, { setting: 'http' });
  }
  try {
    return (await res.json()) as Record<string, unknown>;
  } catch (err) {
    throw new ReplistreamError('CONNECTION', `${base}/status is not JSON: ${base} is not the HTTP port of a replistream capture or applier`, { cause: err, setting: 'http' });
  }
}

const taskStateOf = (b: Record<string, unknown>): TaskState => ((TASK_STATES as readonly string[]).includes(String(b.state)) ? (b.state as TaskState) : 'not-started');

export async function statusCommand(c: Record<string, unknown>): Promise<number> {
  const urls = (Array.isArray(c.http) ? c.http : [c.http]).map(String);
  const bodies = await Promise.all(urls.map(readStatus));
  const task = combinedTaskState(bodies.map(taskStateOf));
  if (c.json) {
    const out = urls.length === 1 ? bodies[0] : { state: task, services: bodies.map((b, i) => ({ url: urls[i], ...b })) };
    process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  } else {
    process.stdout.write(formatTask(task, bodies, urls, Boolean(process.stdout.isTTY)));
  }
  return task === 'failed' || task === 'precheck-failed' ? 1 : 0;
}

const line = (k: string, v: unknown, indent = '  ') => `${indent}${k.padEnd(24 - indent.length)} ${String(v)}\n`;

/** The task and each service: state, progress (a bar on a terminal), lag, offsets, errors. */
export function formatTask(task: TaskState, bodies: Array<Record<string, unknown>>, urls: string[], terminal: boolean): string {
  let out = bodies.length > 1 ? line('task', TASK_STATE_LABELS[task], '') : '';
  // An applier knows no key total before its snapshot ends; the capture given beside it does.
  const captureKeys = (bodies.find((b) => b.role === 'capture')?.progress as Progress | null | undefined)?.keysTotal ?? null;
  bodies.forEach((b, i) => {
    out += `${String(b.role ?? 'service')} ${String(b.name ?? '')} (${urls[i]})\n`;
    out += line('state', b.state);
    if (b.since) out += line('since', new Date(Number(b.since)).toISOString());
    const failure = b.failure as { reason?: string; setting?: string; server?: string } | null;
    if (failure?.reason) out += line('reason', failure.reason + (failure.setting ? ` (setting: --${failure.setting})` : '') + (failure.server ? ` (server: ${failure.server})` : ''));
    let p = b.progress as Progress | null | undefined;
    if (p && b.role === 'applier' && p.keysTotal === null && captureKeys !== null) p = { ...p, keysTotal: captureKeys };
    if (p) out += line('full sync', terminal ? progressBar(p) : progressBar(p, 0));
    if (b.lagMs !== undefined) out += line('lag ms', b.lagMs ?? 'unknown');
    const origin = b.originLag as { sourceId: string; ms: number } | null | undefined;
    if (origin) out += line('lag from origin ms', `${origin.ms} (source ${origin.sourceId})`);
    const link = b.sourceLink as { state: string; since: number | null; retries: number; lastError: string | null } | undefined;
    if (link?.state === 'disconnected') {
      out += line('source link', `disconnected since ${link.since ? new Date(link.since).toISOString() : '?'}, ${link.retries} attempts${link.lastError ? `: ${link.lastError}` : ''}`);
    }
    // an applier retrying a destination that does not answer (connection down, timeouts)
    const writer = b.writer as { failingSince?: number | null; lastError?: string | null } | undefined;
    if (writer?.failingSince) {
      out += line('destination', `failing since ${new Date(writer.failingSince).toISOString()}, retrying${writer.lastError ? `: ${writer.lastError}` : ''}`);
    }
    if (b.limits) out += line('rate limits', formatLimits(b.limits as Record<string, unknown>));
    for (const [k, v] of Object.entries((b.offsets as Record<string, unknown>) ?? {})) out += line(k, v);
    const skipped = Object.entries((b.skipped as Record<string, number>) ?? {});
    if (skipped.length) out += line('skipped commands', skipped.map(([k, n]) => `${k}: ${n}`).join(', '));
    if (b.error && b.error !== failure?.reason) out += line('error', b.error);
  });
  return out;
}

export function formatStatus(body: Record<string, unknown>, prefix = ''): string {
  let out = '';
  for (const [k, v] of Object.entries(body)) {
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) out += `${prefix}${k}:\n${formatStatus(v as Record<string, unknown>, prefix + '  ')}`;
    else out += `${prefix}${k.padEnd(24 - prefix.length)} ${Array.isArray(v) ? JSON.stringify(v) : String(v)}\n`;
  }
  return out;
}
