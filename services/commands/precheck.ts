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
import type { Redis } from 'ioredis';
import { mastersFromSlots } from '../capture/cluster.js';
import { describeError, ReplistreamError } from '../common/errors.js';
import { formatBytes } from '../common/progress.js';
import { restoreIncompatibility, serverVersionFromInfo, versionParts, type ServerVersion } from '../common/server-version.js';
import { classifyConnectFailure, closeTopology, info, mapConnectError, openRedis, openTopology, parseRedisUrl, topologyMasters, type RedisEndpoint, type Topology } from '../destination/connection.js';
import { checkDestinationDbs, precheckDestination } from '../destination/precheck.js';

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

export type PrecheckResult = 'pass' | 'warn' | 'fail' | 'skip';

export interface PrecheckItem {
  item: string;
  result: PrecheckResult;
  detail: string;
  /** The setting to change, when the fix is configuration. */
  setting?: string;
}

/** What an item found: a pass or a warning with its detail (a failure is thrown). */
type Found = { result?: 'pass' | 'warn'; detail: string };

class Items {
  readonly list: PrecheckItem[] = [];
  firstError: unknown = null;

  async check(item: string, run: () => Promise<Found>): Promise<boolean> {
    try {
      const f = await run();
      this.list.push({ item, result: f.result ?? 'pass', detail: f.detail });
      return true;
    } catch (err) {
      this.firstError ??= err;
      const setting = err instanceof ReplistreamError ? err.setting : undefined;
      this.list.push({ item, result: 'fail', detail: describeError(err), ...(setting ? { setting } : {}) });
      return false;
    }
  }

  skip(item: string, why: string): void {
    this.list.push({ item, result: 'skip', detail: why });
  }
}

const MIN_BACKLOG = 64 * 1024 * 1024;

/** Sum of `used_memory` over the given servers. */
async function usedMemory(clients: Redis[]): Promise<number> {
  let n = 0;
  for (const c of clients) n += Number((await info(c, 'memory')).get('used_memory') ?? 0);
  return n;
}

/** Databases holding keys, from INFO keyspace. */
function keyspaceDbs(text: string): number[] {
  return [...text.matchAll(/^db(\d+):keys=(\d+)/gm)].filter((m) => Number(m[2]) > 0).map((m) => Number(m[1]));
}

export async function precheckCommand(c: Record<string, unknown>): Promise<number> {
  const items = new Items();
  const writeMode = (c.writeMode as 'restore' | 'commands' | undefined) ?? 'restore';
  const conflictMode = (c.conflictMode as 'intercept' | 'ignore' | undefined) ?? 'intercept';
  const dbMap = (c.dbMap as Map<number, number> | undefined) ?? null;

  // ----- source
  const ep = parseRedisUrl(String(c.source), 'source');
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
    const dest: { topo: Topology | null } = { topo: null };
    await items.check('destination reachable and authenticated', async () => {
      const topo = await openTopology(String(c.destination), 'replistream-precheck');
      dest.topo = topo;
      const v = serverVersionFromInfo(await info(topologyMasters(topo)[0], 'server'));
      return { detail: `${topo.kind} ${v.label}` };
    });
    if (dest.topo === null) {
      for (const i of ['destination version vs write mode', 'destination maxmemory-policy', 'destination memory', 'db map', 'destination empty']) items.skip(i, 'the destination cannot be reached');
    } else {
      const t: Topology = dest.topo;
      try {
        const masters = topologyMasters(t);
        const destVersion = serverVersionFromInfo(await info(masters[0], 'server'));
        await items.check(`destination version vs write mode ${writeMode}`, async () => {
          if (writeMode === 'commands') return { detail: 'typed commands work with any destination version' };
          if (!sourceVersion) return { result: 'warn', detail: 'source version unknown: not compared' };
          const why = restoreIncompatibility(sourceVersion, destVersion);
          if (why) throw new ReplistreamError('PRECHECK', `${why}: RESTORE payloads may not be readable; upgrade the destination, or set write-mode to commands (typed writes work with any version)`, { setting: 'write-mode' });
          return { detail: `${destVersion.label} reads ${sourceVersion.label}'s RESTORE payloads` };
        });
        await items.check('destination maxmemory-policy', async () => {
          let policy: string | null = null;
          try {
            policy = ((await masters[0].call('CONFIG', 'GET', 'maxmemory-policy')) as string[])?.[1] ?? null;
          } catch (err) {
            return { result: 'warn', detail: `cannot read it (${(err as Error).message}): make sure it is noeviction` };
          }
          if (policy !== 'noeviction') return { result: 'warn', detail: `${policy}: when memory runs out the destination evicts keys and silently diverges from the source; set it to noeviction` };
          return { detail: 'noeviction' };
        });
        await items.check('destination memory', async () => {
          let limit = 0;
          for (const m of masters) limit += Number((await info(m, 'memory')).get('maxmemory') ?? 0);
          if (sourceMasters.length === 0) return { result: 'warn', detail: 'source unknown: not compared' };
          const need = await usedMemory(sourceMasters);
          if (limit === 0) return { detail: `no maxmemory limit; the source uses ${formatBytes(need)}` };
          const free = limit - (await usedMemory(masters));
          if (need > free) {
            throw new ReplistreamError('PRECHECK', `the source uses ${formatBytes(need)}, the destination has ${formatBytes(Math.max(0, free))} free under its maxmemory ${formatBytes(limit)}: raise the destination's maxmemory`, { setting: 'destination' });
          }
          if (need > free * 0.8) return { result: 'warn', detail: `the source uses ${formatBytes(need)} of the destination's ${formatBytes(free)} free: little room for growth` };
          return { detail: `the source uses ${formatBytes(need)}, the destination has ${formatBytes(free)} free` };
        });
        const dbs = dbMap ? [...new Set(dbMap.values())] : sourceDbs;
        const dbMapOk = await items.check('db map', async () => {
          if (!dbMap && t.kind === 'cluster' && sourceDbs.some((d) => d !== 0)) {
            const others = sourceDbs.filter((d) => d !== 0);
            throw new ReplistreamError('CONFIG', `db-map: the destination is a cluster, which has db 0 only, and the source has keys in db ${others.join(', ')}: map them to 0 (--db-map ${sourceDbs.map((d) => `${d}:0`).join(',')}) or capture db 0 only (--dbs 0)`, { setting: 'db-map' });
          }
          await checkDestinationDbs(t, dbs);
          return { detail: dbMap ? [...dbMap].map(([a, b]) => `${a}→${b}`).join(', ') : `identity (source dbs with keys: ${sourceDbs.join(', ')})` };
        });
        if (!dbMapOk) items.skip(`destination empty (${conflictMode})`, 'the db map is not valid');
        else {
          await items.check(`destination empty (${conflictMode})`, async () => {
            const r = await precheckDestination(String(c.destination), dbs, conflictMode);
            const held = r.found.filter((f) => f.keys.length > 0);
            if (held.length === 0) return { detail: `db ${dbs.join(', ')} empty` };
            return { result: 'warn', detail: `db ${held.map((f) => `${f.db} holds ${f.keys.join(', ')}`).join('; ')}: conflict-mode ignore overwrites the same keys` };
          });
        }
      } finally {
        closeTopology(t);
      }
    }
  } finally {
    (client as Redis | null)?.disconnect();
    for (const x of extra) x.disconnect();
  }

  const failed = items.list.filter((i) => i.result === 'fail').length;
  const warned = items.list.filter((i) => i.result === 'warn').length;
  if (c.json) process.stdout.write(JSON.stringify({ passed: failed === 0, items: items.list }, null, 2) + '\n');
  else {
    const width = Math.max(...items.list.map((i) => i.item.length));
    const lines = items.list.map((i) => `${i.result.padEnd(4)}  ${i.item.padEnd(width)}  ${i.detail}`);
    lines.push(failed ? `precheck failed: ${failed} of ${items.list.length} items` : `precheck passed${warned ? ` (${warned} warning${warned > 1 ? 's' : ''})` : ''}`);
    process.stdout.write(lines.join('\n') + '\n');
  }
  // the first failure is the command's error: one line on stderr, and its exit code
  if (items.firstError) throw items.firstError;
  return 0;
}
