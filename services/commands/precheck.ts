/**
 * `replistream precheck`: the reference's precheck before a task starts, every item checked and
 * reported as pass / warn / fail with what to fix (a table, or `--json`) rather than stopping at
 * the first failure: the operator fixes everything in one round. Items: source and destination
 * reachable and authenticated; source version supported and replication allowed for its user;
 * every master of a cluster source answering with the same credentials; repl-backlog-size;
 * destination version vs the write mode; maxmemory-policy noeviction; destination memory for the
 * source's data; the db map valid for the destination (a cluster has db 0 only); the destination
 * empty in intercept mode, naming keys. The first failure is also the command's error (one line on
 * stderr, its exit code), as for every command.
 */
import { currentSourceUrl } from '../common/sentinel.js';
import type { Redis } from 'ioredis';
import { mastersFromSlots } from '../capture/cluster.js';
import { describeError, ReplistreamError } from '../common/errors.js';
import { formatBytes } from '../common/progress.js';
import { serverVersionFromInfo, versionParts, type ServerVersion } from '../common/server-version.js';
import { classifyConnectFailure, mapConnectError, openRedis, parseRedisUrl, type RedisEndpoint } from '../destination/connection.js';
import { checkDestinationItems, PrecheckItems, usedMemory } from '../destination/precheck-items.js';

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

const MIN_BACKLOG = 64 * 1024 * 1024;

/** Databases holding keys, from INFO keyspace. */
function keyspaceDbs(text: string): number[] {
  return [...text.matchAll(/^db(\d+):keys=(\d+)/gm)].filter((m) => Number(m[2]) > 0).map((m) => Number(m[1]));
}

export async function precheckCommand(c: Record<string, unknown>): Promise<number> {
  const items = new PrecheckItems();
  const writeMode = (c.writeMode as 'restore' | 'commands' | undefined) ?? 'restore';
  const conflictMode = (c.conflictMode as 'intercept' | 'ignore' | undefined) ?? 'intercept';
  const dbMap = (c.dbMap as Map<number, number> | undefined) ?? null;

  // ----- source
  const ep = parseRedisUrl(await currentSourceUrl(String(c.source)), 'source'); // a Sentinel-managed source: its master now
  let client: Redis | null = null;
  let sourceVersion: ServerVersion | null = null;
  let sourceDbs: number[] = [0];
  let sourceMasters: Redis[] = [];
  const extra: Redis[] = [];
  await items.check('source reachable and authenticated', async () => {
    client = await openRedis(ep, 'replistream-precheck', 'source');
    sourceVersion = serverVersionFromInfo(await client.info('server'));
    return { detail: `${ep.display}: ${sourceVersion.label}` };
  });
  try {
    if (client === null || sourceVersion === null) {
      for (const i of ['source version', 'source user may replicate', 'source repl-backlog-size']) items.skip(i, 'the source cannot be reached');
    } else {
      const src: Redis = client;
      const version: ServerVersion = sourceVersion;
      await items.check('source version', async () => {
        const [major, minor] = versionParts(version.version);
        if (major < 2 || (major === 2 && minor < 8)) {
          throw new ReplistreamError('PRECHECK', `source ${ep.display} runs ${version.label}: replication by PSYNC needs Redis 2.8 or later; upgrade the source`, { setting: 'source' });
        }
        return { detail: `${version.label} (RDB version ${version.rdbVersion ?? 'unknown'})` };
      });
      await items.check('source user may replicate', async () => {
        const warning = await checkReplicationRights(src, ep);
        return warning ? { result: 'warn', detail: warning } : { detail: 'REPLCONF and PSYNC allowed' };
      });
      await items.check('source repl-backlog-size', async () => {
        const backlog = Number(/repl_backlog_size:(\d+)/.exec(await src.info('replication'))?.[1] ?? 0);
        if (backlog && backlog < MIN_BACKLOG) {
          return { result: 'warn', detail: `${formatBytes(backlog)}: a capture stopped for longer than the backlog covers needs a new full sync; raise it (e.g. CONFIG SET repl-backlog-size 256mb)` };
        }
        return { detail: formatBytes(backlog) };
      });
      const isCluster = /redis_mode:cluster/.test(await src.info('server').catch(() => ''));
      sourceMasters = [src];
      if (isCluster) {
        await items.check('every source master answers with the same credentials', async () => {
          const masters = mastersFromSlots((await src.call('CLUSTER', 'SLOTS')) as unknown[]);
          const failed: string[] = [];
          sourceMasters = [];
          for (const m of masters) {
            const mep: RedisEndpoint = { ...ep, host: m.host, port: m.port, display: `${m.host}:${m.port}` };
            try {
              const mc = await openRedis(mep, 'replistream-precheck', 'source');
              extra.push(mc);
              sourceMasters.push(mc);
            } catch (err) {
              failed.push(describeError(err));
            }
          }
          if (failed.length) throw new ReplistreamError('PRECHECK', `${failed.length} of ${masters.length} source masters refuse: ${failed.join('; ')}; every master must answer and share the credentials`, { setting: 'source' });
          return { detail: `${masters.length} masters` };
        });
      }
      sourceDbs = isCluster ? [0] : keyspaceDbs(await src.info('keyspace').catch(() => ''));
      if (sourceDbs.length === 0) sourceDbs = [0];
    }

    // ----- destination
    await checkDestinationItems(items, {
      destination: String(c.destination),
      conflictMode,
      dbMap,
      sourceDbs,
      writeMode,
      sourceVersion,
      sourceUsedMemory: sourceMasters.length ? await usedMemory(sourceMasters).catch(() => null) : null,
    });
  } finally {
    (client as Redis | null)?.disconnect();
    for (const x of extra) x.disconnect();
  }

  if (c.json) process.stdout.write(JSON.stringify({ passed: items.failed === 0, items: items.list }, null, 2) + '\n');
  else process.stdout.write(items.table());
  // the first failure is the command's error: one line on stderr, and its exit code
  if (items.firstError) throw items.firstError;
  return 0;
}
