/**
 * `replistream precheck`: what the reference's precheck does before a task starts — the source is
 * reachable and accepts a replica's commands, the destination is reachable, not older than the
 * source (restore mode), evicts nothing (warning), and, in intercept mode, its mapped databases
 * are empty (the first keys found are named).
 */
import { Redis } from 'ioredis';
import { ReplistreamError } from '../common/errors.js';
import { redactUrl } from '../common/log.js';
import { serverVersionFromInfo, type ServerVersion } from '../common/server-version.js';
import { precheckDestination } from '../destination/precheck.js';

export async function precheckCommand(c: Record<string, unknown>): Promise<number> {
  const source = String(c.source);
  const client = new Redis(source, { protocol: 2, lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false } as never);
  let sourceVersion: ServerVersion | null = null;
  const lines: string[] = [];
  try {
    await client.connect();
    const info = await client.info('server');
    sourceVersion = serverVersionFromInfo(info);
    const dbs = Object.keys(Object.fromEntries((await client.info('keyspace')).split('\n').filter((l) => l.startsWith('db')).map((l) => [l.split(':')[0].slice(2), 1]))).map(Number);
    lines.push(`source ${redactUrl(source)}: ${sourceVersion.label}, databases with keys: ${dbs.join(',') || 'none'}`);
    const backlog = Number(/repl_backlog_size:(\d+)/.exec(await client.info('replication'))?.[1] ?? 0);
    if (backlog && backlog < 64 * 1024 * 1024) lines.push(`warning: source repl-backlog-size is ${backlog} bytes; a larger backlog (e.g. 256mb) avoids full resyncs after a pause`);
  } catch (err) {
    throw new ReplistreamError('CONNECTION', `cannot reach the source ${redactUrl(source)}`, { cause: err, setting: 'source', retriable: true });
  } finally {
    client.disconnect();
  }
  const dbMap = (c.dbMap as Map<number, number> | undefined) ?? null;
  const dbs = dbMap ? [...new Set(dbMap.values())] : Array.from({ length: 16 }, (_, i) => i);
  const r = await precheckDestination(String(c.destination), dbs, c.conflictMode as 'intercept' | 'ignore', { sourceVersion: sourceVersion ?? undefined, writeMode: 'restore' });
  lines.push(`destination ${redactUrl(String(c.destination))}: ${r.topology} ${r.server.label}, maxmemory-policy ${r.maxmemoryPolicy ?? 'unknown'}`);
  for (const w of r.warnings) lines.push(`warning: ${w}`);
  lines.push('precheck passed');
  process.stdout.write(lines.join('\n') + '\n');
  return 0;
}
