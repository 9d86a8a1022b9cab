/**
 * What the writer learns of a destination when it starts: the Redis version and the features it
 * implies, the highest RDB version every master RESTOREs (found by DUMPing a scratch key, since
 * no INFO field says it), whether HPEXPIREAT exists, how many dbs a standalone server has.
 *
 * Why apart from the writer: these are one-time probes with their own fallbacks (CONFIG and
 * COMMAND may be renamed or forbidden on managed services), unrelated to applying events; the
 * writer keeps only their results (`DestinationInfo`, the db count).
 */
import type { Redis } from 'ioredis';
import { ReplistreamError } from '../common/errors.js';
import { type Topology, info, parseVersion, slotTag, versionAtLeast } from './connection.js';
import { requirePayloadRdbVersion } from '../replication/dump-payload.js';
import type { DestinationInfo, ResolvedWriterOptions } from './writer-types.js';

/** Where the scratch key of the RDB version probe goes (under the position prefix, in the position db). */
type ProbeOptions = Pick<ResolvedWriterOptions, 'positionKeyPrefix' | 'positionDb'>;

/** The version, RDB version and features of the destination whose masters are `masters`. */
export async function probeDestination(topo: Topology, masters: Redis[], opts: ProbeOptions): Promise<DestinationInfo> {
  let version = '';
  let rdb = Infinity;
  for (const c of masters) {
    const i = await info(c, 'server');
    const v = i.get('redis_version') ?? '0.0.0';
    if (!version) version = v;
    rdb = Math.min(rdb, await probeRdbVersion(c, topo, opts));
  }
  const v = parseVersion(version);
  const hpexpire = await commandExists(masters[0], 'hpexpireat');
  return {
    topology: topo.kind,
    version,
    rdbVersion: rdb,
    features: {
      streamMeta: versionAtLeast(v, 7, 0),
      createConsumer: versionAtLeast(v, 6, 2),
      hashFieldTtl: hpexpire,
      absTtl: versionAtLeast(v, 5, 0),
    },
  };
}

/** The RDB version of the server's DUMP payloads: DUMP of a scratch key, in one transaction. */
async function probeRdbVersion(c: Redis, topo: Topology, opts: ProbeOptions): Promise<number> {
  let key = `${opts.positionKeyPrefix}:@probe:${process.pid}:${Math.random().toString(36).slice(2)}`;
  const p = c.pipeline();
  if (topo.kind === 'cluster') {
    // a key in a slot this master serves
    const master = topo.router.masters().find((m) => m.client === c)!;
    const slot = topo.router.slotsByMaster().get(master.key)?.[0] ?? 0;
    key += `{${slotTag(slot)}}`;
  } else {
    p.select(opts.positionDb);
  }
  (p as unknown as { multi(): unknown }).multi();
  p.set(key, 'x');
  p.dumpBuffer(key);
  p.del(key);
  p.exec();
  const res = (await p.exec()) ?? [];
  const last = res[res.length - 1];
  if (!last || last[0]) throw new ReplistreamError('DESTINATION', `cannot learn the destination's RDB version (DUMP failed): ${last?.[0]?.message ?? 'no reply'}`, { cause: last?.[0] });
  const dump = (last[1] as unknown[])[1] as Buffer;
  return requirePayloadRdbVersion(Buffer.isBuffer(dump) ? dump : Buffer.from(String(dump), 'latin1'));
}

export async function databaseCount(c: Redis): Promise<number> {
  try {
    const r = (await c.call('CONFIG', 'GET', 'databases')) as string[];
    const n = Number(r?.[1]);
    return Number.isInteger(n) && n > 0 ? n : 16;
  } catch {
    return 16; // CONFIG may be renamed or forbidden (managed services)
  }
}

async function commandExists(c: Redis, name: string): Promise<boolean> {
  try {
    const r = (await c.call('COMMAND', 'INFO', name)) as unknown[];
    return Array.isArray(r) && r[0] !== null && r[0] !== undefined;
  } catch {
    return false;
  }
}
