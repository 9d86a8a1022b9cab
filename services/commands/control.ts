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
