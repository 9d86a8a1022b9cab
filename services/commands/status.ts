/** `replistream status --http URL [--json]`: a running task's state, progress and lag. */
import { ReplistreamError } from '../common/errors.js';

export async function statusCommand(c: Record<string, unknown>): Promise<number> {
  const base = String(c.http).replace(/\/$/, '');
  let body: Record<string, unknown>;
  try {
    const res = await fetch(`${base}/status`, { signal: AbortSignal.timeout(5000) });
    body = (await res.json()) as Record<string, unknown>;
  } catch (err) {
    throw new ReplistreamError('CONNECTION', `cannot read ${base}/status`, { cause: err, retriable: true, setting: 'http' });
  }
  if (c.json) process.stdout.write(JSON.stringify(body, null, 2) + '\n');
  else process.stdout.write(formatStatus(body));
  return body.state === 'failed' ? 1 : 0;
}

export function formatStatus(body: Record<string, unknown>, prefix = ''): string {
  let out = '';
  for (const [k, v] of Object.entries(body)) {
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) out += `${prefix}${k}:\n${formatStatus(v as Record<string, unknown>, prefix + '  ')}`;
    else out += `${prefix}${k.padEnd(24 - prefix.length)} ${Array.isArray(v) ? JSON.stringify(v) : String(v)}\n`;
  }
  return out;
}
