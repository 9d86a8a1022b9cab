/**
 * `replistream precheck`: what the reference's precheck does before a task starts — the source is
 * reachable and accepts a replica's commands, the destination is reachable, not older than the
 * source (restore mode), evicts nothing (warning), and, in intercept mode, its mapped databases
 * are empty (the first keys found are named).
 */
import type { Redis } from 'ioredis';
import { ReplistreamError } from '../common/errors.js';
import { redactUrl } from '../common/log.js';
import { serverVersionFromInfo, type ServerVersion } from '../common/server-version.js';
import { classifyConnectFailure, mapConnectError, openRedis, parseRedisUrl, type RedisEndpoint } from '../destination/connection.js';
import { precheckDestination } from '../destination/precheck.js';

/**
 * Whether the source user may replicate, without starting a replication (a PSYNC would make the
 * source fork a snapshot). `REPLCONF capa eof` is harmless on a normal connection and is refused
 * with NOPERM when the user lacks +replconf; `ACL DRYRUN` (Redis 7) answers for +psync when the
 * user may run it. Returns a warning when +psync could not be confirmed; throws when a right is
 * missing.
 */
async function checkReplicationRights(client: Redis, ep: RedisEndpoint): Promise<string | null> {
  const refused = (err: unknown) => classifyConnectFailure(err).kind === 'missing rights';
  const missing = (what: string, err: unknown) =>
    new ReplistreamError('AUTH', `${mapConnectError(err, ep, 'source').message}; the source user needs ${what} to replicate (e.g. ACL SETUSER <user> +psync +replconf +ping)`, {
      setting: 'source',
      cause: err,
    });
  try {
    await client.call('REPLCONF', 'capa', 'eof');
  } catch (err) {
    if (refused(err)) throw missing('+replconf', err);
  }
  let user: string;
  try {
    user = String(await client.call('ACL', 'WHOAMI'));
  } catch (err) {
    if (refused(err)) return `cannot confirm that the source user may run PSYNC (ACL WHOAMI refused); capture will fail at once if it may not`;
    return null; // a server before ACLs (Redis < 6): no per-command rights
  }
  try {
    const answer = String(await client.call('ACL', 'DRYRUN', user, 'PSYNC', '?', '-1'));
    if (answer !== 'OK') throw missing('+psync', new Error(`NOPERM ${answer}`));
    return null;
  } catch (err) {
    if (err instanceof ReplistreamError) throw err;
    return `cannot confirm that source user ${JSON.stringify(user)} may run PSYNC (ACL DRYRUN: ${(err as Error).message}); capture will fail at once if it may not`;
  }
}

export async function precheckCommand(c: Record<string, unknown>): Promise<number> {
  const source = String(c.source);
  const ep = parseRedisUrl(source, 'source');
  // openRedis names the server and the cause (unreachable, authentication failed) itself
  const client = await openRedis(ep, 'replistream-precheck', 'source');
  let sourceVersion: ServerVersion | null = null;
  const lines: string[] = [];
  try {
    const info = await client.info('server');
    sourceVersion = serverVersionFromInfo(info);
    const dbs = Object.keys(Object.fromEntries((await client.info('keyspace')).split('\n').filter((l) => l.startsWith('db')).map((l) => [l.split(':')[0].slice(2), 1]))).map(Number);
    lines.push(`source ${redactUrl(source)}: ${sourceVersion.label}, databases with keys: ${dbs.join(',') || 'none'}`);
    const backlog = Number(/repl_backlog_size:(\d+)/.exec(await client.info('replication'))?.[1] ?? 0);
    if (backlog && backlog < 64 * 1024 * 1024) lines.push(`warning: source repl-backlog-size is ${backlog} bytes; a larger backlog (e.g. 256mb) avoids full resyncs after a pause`);
    const rights = await checkReplicationRights(client, ep);
    if (rights) lines.push(`warning: ${rights}`);
  } catch (err) {
    if (err instanceof ReplistreamError) throw err;
    throw mapConnectError(err, ep, 'source');
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
