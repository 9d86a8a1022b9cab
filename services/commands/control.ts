/**
 * `replistream pause|resume --http URL [--http URL]…`: asks running services to pause or resume
 * (POST /pause, /resume on their HTTP port) and prints the state each one is in afterwards. An
 * applier paused stops reading events and keeps its position; resumed, it continues from there.
 */
import { ReplistreamError } from '../common/errors.js';

export async function controlCommand(action: 'pause' | 'resume', c: Record<string, unknown>): Promise<number> {
  const urls = (Array.isArray(c.http) ? c.http : [c.http]).map((u) => String(u).replace(/\/$/, ''));
  let code = 0;
  for (const base of urls) {
    let res: Response;
    try {
      res = await fetch(`${base}/${action}`, { method: 'POST', signal: AbortSignal.timeout(10_000) });
    } catch (err) {
      throw new ReplistreamError('CONNECTION', `cannot reach ${base}/${action}: is the service running with --http-port, and reachable from here?`, { cause: err, retriable: true, setting: 'http' });
    }
    const body = (await res.json().catch(() => ({}))) as { state?: string; error?: string };
    if (res.status === 404 && !body.error) {
      throw new ReplistreamError('CONNECTION', `${base} answered HTTP 404 to ${action}: it is not the HTTP port of a replistream service`, { setting: 'http' });
    }
    if (!res.ok) {
      process.stderr.write(`replistream: ${base}: ${body.error ?? `HTTP ${res.status}`}\n`);
      code = 1;
      continue;
    }
    process.stdout.write(`${base}: ${body.state}\n`);
  }
  return code;
}

const LIMIT_SETTINGS = ['maxOpsPerSecond', 'maxBytesPerSecond', 'snapshotMaxBytesPerSecond'] as const;
const flagOf = (name: string) => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/**
 * `replistream limits --http URL… [--max-ops-per-second N] [--max-bytes-per-second N]
 * [--snapshot-max-bytes-per-second N]`: changes the rate limits of running services (POST
 * /limits), each service getting the limits it has (an applier's writes, capture's snapshot
 * reads), and prints every service's limits afterwards; without a limit given, only prints them.
 * 0 removes a limit.
 */
export async function limitsCommand(c: Record<string, unknown>): Promise<number> {
  const urls = (Array.isArray(c.http) ? c.http : [c.http]).map((u) => String(u).replace(/\/$/, ''));
  const wanted = Object.fromEntries(LIMIT_SETTINGS.filter((n) => c[n] !== undefined).map((n) => [n, c[n] as number]));
  const used = new Set<string>();
  let code = 0;
  for (const base of urls) {
    const current = await request(base, 'status');
    if (!current.ok) {
      process.stderr.write(`replistream: ${base}: ${current.body.error ?? `HTTP ${current.status}`}\n`);
      code = 1;
      continue;
    }
    const has = (current.body.limits as Record<string, unknown> | null | undefined) ?? null;
    const mine = Object.fromEntries(Object.entries(wanted).filter(([n]) => has !== null && n in has));
    let shown = has;
    if (Object.keys(mine).length > 0) {
      const res = await request(base, 'limits', mine);
      if (!res.ok) {
        process.stderr.write(`replistream: ${base}: ${res.body.error ?? `HTTP ${res.status}`}\n`);
        code = 1;
        continue;
      }
      for (const n of Object.keys(mine)) used.add(n);
      shown = (res.body.limits as Record<string, unknown> | null) ?? null;
    }
    process.stdout.write(`${base}: ${current.body.role ?? 'service'} ${formatLimits(shown)}\n`);
  }
  const unused = Object.keys(wanted).filter((n) => !used.has(n));
  if (unused.length > 0 && code === 0) {
    throw new ReplistreamError('CONFIG', `${unused.map(flagOf).join(', ')}: no service given with --http has this limit (max-ops-per-second and max-bytes-per-second are an applier's, snapshot-max-bytes-per-second is capture's)`, { setting: flagOf(unused[0]) });
  }
  return code;
}

/** `max-ops-per-second 5000, max-bytes-per-second none, throttled 1.2 s`. */
export function formatLimits(limits: Record<string, unknown> | null): string {
  if (!limits) return '(no rate limits)';
  const parts = Object.entries(limits)
    .filter(([n]) => n !== 'throttledMs')
    .map(([n, v]) => `${flagOf(n)} ${v === null ? 'none' : String(v)}`);
  if (typeof limits.throttledMs === 'number') parts.push(`throttled ${(limits.throttledMs / 1000).toFixed(1)} s`);
  return parts.join(', ');
}

async function request(base: string, path: 'status' | 'limits', body?: unknown): Promise<{ ok: boolean; status: number; body: Record<string, unknown> & { error?: string } }> {
  let res: Response;
  try {
    res = await fetch(`${base}/${path}`, body === undefined ? { signal: AbortSignal.timeout(10_000) } : { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    throw new ReplistreamError('CONNECTION', `cannot reach ${base}/${path}: is the service running with --http-port, and reachable from here?`, { cause: err, retriable: true, setting: 'http' });
  }
  const parsed = (await res.json().catch(() => null)) as (Record<string, unknown> & { error?: string }) | null;
  if (parsed === null || (res.status === 404 && !parsed.error)) {
    throw new ReplistreamError('CONNECTION', `${base} answered HTTP ${res.status} to /${path}: it is not the HTTP port of a replistream service`, { setting: 'http' });
  }
  return { ok: res.ok, status: res.status, body: parsed };
}
