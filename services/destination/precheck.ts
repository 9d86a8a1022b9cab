/**
 * Destination precheck (the reference's "Pre-check and Intercept"): the mapped databases must be
 * empty in `intercept` mode (replistream's own keys aside), the eviction policy should be
 * `noeviction`, and in RESTORE mode the destination must read the RDB version the source writes
 * (common/server-version.ts: Valkey's own version is not comparable with Redis's).
 */
import type { Redis } from 'ioredis';
import { ReplistreamError, configError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { restoreIncompatibility, serverVersionFromInfo, serverVersionOf, type ServerVersion } from '../common/server-version.js';
import { type Topology, closeTopology, info, openTopology, topologyMasters } from './connection.js';
import { printableKey } from './translate.js';

export interface PrecheckOptions {
  logger?: Pick<Logger, 'warn' | 'info'>;
  /** Keys starting with these are replistream's own (positions, markers) and do not count. Default `replistream:`. */
  ignorePrefixes?: string[];
  /**
   * The source's server (from its INFO server; a plain "7.0.15" is taken as Redis): with write mode
   * restore, the destination must read the RDB version the source writes.
   */
  sourceVersion?: string | ServerVersion;
  writeMode?: 'restore' | 'commands';
  /** Keys to name in the error (default 5). */
  maxKeys?: number;
}

export interface PrecheckResult {
  topology: 'standalone' | 'cluster';
  /** The destination's own release ("8.1.8" for Valkey 8.1; `server.redisCompatible` has its redis_version). */
  version: string;
  server: ServerVersion;
  maxmemoryPolicy: string | null;
  /** Non-fatal findings (eviction policy, unreadable settings). */
  warnings: string[];
  /** Per checked db: keys found (up to maxKeys), empty when the db is empty. */
  found: Array<{ db: number; keys: string[] }>;
}

export async function precheckDestination(url: string, dbs: number[], mode: 'intercept' | 'ignore', options: PrecheckOptions = {}): Promise<PrecheckResult> {
  const ignore = options.ignorePrefixes ?? ['replistream:'];
  const maxKeys = options.maxKeys ?? 5;
  const topo = await openTopology(url, 'replistream-precheck');
  try {
    const masters = topologyMasters(topo);
    const warnings: string[] = [];
    const serverInfo = await info(masters[0], 'server');
    const server = serverVersionFromInfo(serverInfo);
    const version = server.version;

    // eviction policy
    let policy: string | null = null;
    try {
      const r = (await masters[0].call('CONFIG', 'GET', 'maxmemory-policy')) as string[];
      policy = r?.[1] ?? null;
    } catch (err) {
      warnings.push(`cannot read maxmemory-policy (${(err as Error).message}): make sure it is noeviction`);
    }
    if (policy !== null && policy !== 'noeviction') {
      warnings.push(
        `destination maxmemory-policy is ${policy}: when memory runs out it evicts keys and the destination silently diverges from the source; set it to noeviction`,
      );
    }

    // version
    if (options.sourceVersion && options.writeMode !== 'commands') {
      const source = typeof options.sourceVersion === 'string' ? serverVersionOf('Redis', options.sourceVersion) : options.sourceVersion;
      const why = restoreIncompatibility(source, server);
      if (why) {
        throw new ReplistreamError(
          'PRECHECK',
          `${why}: RESTORE payloads may not be readable; upgrade the destination, or set write-mode to commands (typed writes work with any version)`,
          { setting: 'write-mode', details: { sourceVersion: source.label, destinationVersion: server.label, sourceRdbVersion: source.rdbVersion, destinationRdbVersion: server.rdbVersion } },
        );
      }
    }

    // emptiness
    const found: Array<{ db: number; keys: string[] }> = [];
    const targets = [...new Set(dbs)].sort((a, b) => a - b);
    await checkDestinationDbs(topo, targets);
    for (const db of targets) {
      if (topo.kind === 'cluster' && db !== 0) {
        throw new ReplistreamError('PRECHECK', `destination is a cluster: it has only db 0, cannot receive db ${db}`, { setting: 'db-map' });
      }
      const keys = await firstKeys(topo, db, ignore, maxKeys);
      found.push({ db, keys });
    }
    if (mode === 'intercept') {
      const bad = found.find((f) => f.keys.length > 0);
      if (bad) {
        throw new ReplistreamError(
          'PRECHECK',
          `destination db ${bad.db} is not empty (conflict-mode intercept): found ${bad.keys.map((k) => printableKey(k)).join(', ')}${bad.keys.length >= maxKeys ? ' …' : ''}. ` +
            'Empty it, map the source to another db (db-map), or set conflict-mode to ignore (same keys are overwritten)',
          { setting: 'conflict-mode', details: { db: bad.db, keys: bad.keys, nonEmpty: found.filter((f) => f.keys.length).map((f) => f.db) } },
        );
      }
    }
    for (const w of warnings) options.logger?.warn({ destination: topo.endpoint.display }, w);
    return { topology: topo.kind, version, server, maxmemoryPolicy: policy, warnings, found };
  } finally {
    closeTopology(topo);
  }
}

/** Up to `max` keys of `db` not starting with an ignored prefix (SCAN on every master). */
async function firstKeys(topo: Topology, db: number, ignore: string[], max: number): Promise<string[]> {
  const out: string[] = [];
  for (const c of topologyMasters(topo)) {
    if (topo.kind === 'standalone') await c.select(db);
    let cursor = '0';
    do {
      const [next, keys] = (await (c as Redis).scanBuffer(cursor, 'COUNT', 1000)) as unknown as [Buffer | string, Buffer[]];
      cursor = next.toString();
      for (const k of keys) {
        const s = k.toString('utf8');
        if (ignore.some((p) => s.startsWith(p))) continue;
        out.push(s);
        if (out.length >= max) return out;
      }
    } while (cursor !== '0');
  }
  return out;
}

/**
 * The destination has every database `dbs` names: a db-map entry beyond its `databases` is a
 * setting to fix, refused before anything is written (else the first write to it fails at run
 * time with "ERR DB index is out of range"). A cluster has db 0 only.
 */
export async function checkDestinationDbs(topo: Topology, dbs: number[]): Promise<void> {
  const server = `destination ${topo.endpoint.host}:${topo.endpoint.port}`;
  const wanted = [...new Set(dbs)].sort((a, b) => a - b);
  if (topo.kind === 'cluster') {
    const bad = wanted.find((db) => db !== 0);
    if (bad !== undefined) throw configError('db-map', `${server} is a cluster, which has db 0 only: db ${bad} cannot be written; map every source db to 0`);
    return;
  }
  let count: number | null = null;
  try {
    const [, n] = (await topo.client.call('CONFIG', 'GET', 'databases')) as string[];
    if (/^\d+$/.test(n ?? '')) count = Number(n);
  } catch {
    // CONFIG may be renamed or refused on a managed service: try each database instead
  }
  if (count === null) {
    for (const db of wanted) {
      try {
        await topo.client.select(db);
      } catch (err) {
        if (/out of range|invalid DB index/i.test((err as Error).message)) throw configError('db-map', `${server} has no db ${db} (${(err as Error).message}); change db-map, or the destination's databases setting`);
        throw err;
      }
    }
    await topo.client.select(0);
    return;
  }
  const bad = wanted.filter((db) => db >= count);
  if (bad.length) {
    throw configError('db-map', `${server} has ${count} databases (0-${count - 1}): db ${bad.join(', ')} does not exist; change db-map, or the destination's databases setting`);
  }
}

/** `checkDestinationDbs` on a connection of its own. */
export async function checkDestinationDbsAt(url: string, dbs: number[]): Promise<void> {
  const topo = await openTopology(url, 'replistream-precheck');
  try {
    await checkDestinationDbs(topo, dbs);
  } finally {
    closeTopology(topo);
  }
}
