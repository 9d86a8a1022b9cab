/**
 * Compares the synchronized databases of a source and a destination, key by key: existence, type,
 * content (`DEBUG DIGEST-VALUE`, or the values themselves when DEBUG is unavailable), TTL within a
 * tolerance, and for streams the metadata a digest does not cover (last id, entries-added,
 * consumer groups, pending entries). Keys the destination has and the source has not are reported
 * too. replistream's own keys (positions, epoch markers) and the heartbeat key are ignored.
 *
 * The tests use this as the G1 oracle, so it is strict: any difference is reported with a reason.
 */
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { type Topology, closeTopology, clientForKey, info, openTopology, topologyMasters } from './connection.js';
import type { Arg } from './translate.js';

export interface VerifyOptions {
  /** Compare only N keys per db, chosen at random among all keys (both directions). */
  sample?: number;
  /** Key prefixes to ignore (replistream's own keys). Default `replistream:`. */
  ignorePrefixes?: string[];
  /** Compare only keys starting with this prefix (a destination that holds other data too). */
  onlyPrefix?: string;
  /** Heartbeat keys to ignore. Default DTS_REDIS_TIMESTAMP_HEARTBEAT and REPLISTREAM_TIMESTAMP_HEARTBEAT. */
  heartbeatKeys?: string[];
  /** TTL tolerance in ms (default 1000). */
  ttlToleranceMs?: number;
  /** Stop collecting differences after this many (default 1000); `equal` stays false. */
  maxDifferences?: number;
  /** Keys read per round trip (default 200). */
  batch?: number;
}

export interface VerifyDifference {
  db: number;
  key: string;
  reason: string;
}

export interface VerifyResult {
  equal: boolean;
  differences: VerifyDifference[];
  /** Keys compared (source keys checked, plus destination keys checked for existence at the source). */
  compared: number;
}

export const DEFAULT_HEARTBEAT_KEYS = ['DTS_REDIS_TIMESTAMP_HEARTBEAT', 'REPLISTREAM_TIMESTAMP_HEARTBEAT'];

interface KeyFacts {
  type: string;
  pttl: number;
  digest: string | null;
}

export async function verifyDatabases(
  sourceUrl: string,
  destUrl: string,
  dbs: number[],
  dbMap: Map<number, number>,
  options: VerifyOptions = {},
): Promise<VerifyResult> {
  const src = await openTopology(sourceUrl, 'replistream-verify-source', 'source');
  let dst: Topology | null = null;
  try {
    dst = await openTopology(destUrl, 'replistream-verify-destination', 'destination');
    const v = new Verifier(src, dst, options);
    const list = dbs.length ? dbs : await keyspaceDbs(src);
    for (const db of list) {
      const target = dbMap.size === 0 ? db : dbMap.get(db);
      if (target === undefined) continue;
      await v.compareDb(db, target);
    }
    return { equal: v.differences.length === 0, differences: v.differences, compared: v.compared };
  } finally {
    closeTopology(src);
    if (dst) closeTopology(dst);
  }
}

async function keyspaceDbs(t: Topology): Promise<number[]> {
  const dbs = new Set<number>();
  for (const c of topologyMasters(t)) {
    for (const k of (await info(c, 'keyspace')).keys()) {
      const m = /^db(\d+)$/.exec(k);
      if (m) dbs.add(Number(m[1]));
    }
  }
  return [...dbs].sort((a, b) => a - b);
}

class Verifier {
  readonly differences: VerifyDifference[] = [];
  compared = 0;
  private readonly ignorePrefixes: string[];
  private readonly heartbeat: Set<string>;
  private readonly tolerance: number;
  private readonly max: number;
  private readonly batch: number;
  private digestWorks = new Map<Topology, boolean>();

  constructor(
    private readonly src: Topology,
    private readonly dst: Topology,
    private readonly options: VerifyOptions,
  ) {
    this.ignorePrefixes = options.ignorePrefixes ?? ['replistream:'];
    this.heartbeat = new Set(options.heartbeatKeys ?? DEFAULT_HEARTBEAT_KEYS);
    this.tolerance = options.ttlToleranceMs ?? 1000;
    this.max = options.maxDifferences ?? 1000;
    this.batch = options.batch ?? 200;
  }

  private ignored(k: Buffer): boolean {
    const s = k.toString('latin1');
    if (this.options.onlyPrefix !== undefined && !s.startsWith(Buffer.from(this.options.onlyPrefix).toString('latin1'))) return true;
    return this.heartbeat.has(k.toString('utf8')) || this.ignorePrefixes.some((p) => s.startsWith(Buffer.from(p).toString('latin1')));
  }

  private report(db: number, key: Buffer, reason: string): void {
    if (this.differences.length < this.max) this.differences.push({ db, key: key.toString('utf8'), reason });
    else if (this.differences.length === this.max) this.differences.push({ db, key: '…', reason: `more than ${this.max} differences` });
  }

  async compareDb(srcDb: number, dstDb: number): Promise<void> {
    const sample = this.options.sample;
    // source → destination: every source key must exist there, equal
    if (sample) {
      const keys = await sampleKeys(this.src, srcDb, sample, (k) => this.ignored(k));
      await this.compareKeys(srcDb, dstDb, keys);
      const back = await sampleKeys(this.dst, dstDb, sample, (k) => this.ignored(k));
      await this.checkExtra(srcDb, dstDb, back);
      return;
    }
    await scanAll(this.src, srcDb, async (keys) => this.compareKeys(srcDb, dstDb, keys.filter((k) => !this.ignored(k))), this.batch);
    // destination → source: no key only the destination has
    await scanAll(this.dst, dstDb, async (keys) => this.checkExtra(srcDb, dstDb, keys.filter((k) => !this.ignored(k))), this.batch);
  }

  private async checkExtra(srcDb: number, dstDb: number, keys: Buffer[]): Promise<void> {
    if (!keys.length) return;
    void dstDb;
    const res = await readMany(this.src, srcDb, keys, (k) => [['EXISTS', k]]);
    keys.forEach((k, i) => {
      this.compared++;
      const [err, n] = res[i][0];
      if (err) this.report(srcDb, k, `cannot check the key at the source: ${err.message}`);
      else if (Number(n) === 0) this.report(srcDb, k, 'extra in destination (absent from the source)');
    });
  }

  private async canDigest(t: Topology, db: number, key: Buffer): Promise<boolean> {
    let ok = this.digestWorks.get(t);
    if (ok === undefined) {
      const [[[err]]] = await readMany(t, db, [key], (k) => [['DEBUG', 'DIGEST-VALUE', k]]);
      ok = !err;
      this.digestWorks.set(t, ok);
    }
    return ok;
  }

  private async compareKeys(srcDb: number, dstDb: number, keys: Buffer[]): Promise<void> {
    if (!keys.length) return;
    const useDigest = (await this.canDigest(this.src, srcDb, keys[0])) && (await this.canDigest(this.dst, dstDb, keys[0]));
    const cmds = (k: Buffer): Arg[][] => (useDigest ? [['TYPE', k], ['PTTL', k], ['DEBUG', 'DIGEST-VALUE', k]] : [['TYPE', k], ['PTTL', k]]);
    const [a, b] = await Promise.all([readMany(this.src, srcDb, keys, cmds), readMany(this.dst, dstDb, keys, cmds)]);
    const needValues: number[] = [];
    const streams: number[] = [];
    const facts = (r: Array<[Error | null, unknown]>): KeyFacts | Error => {
      for (const [e] of r) if (e) return e;
      return { type: String(r[0][1]), pttl: Number(r[1][1]), digest: r[2] ? String(r[2][1]) : null };
    };
    keys.forEach((k, i) => {
      this.compared++;
      const s = facts(a[i]);
      const d = facts(b[i]);
      if (s instanceof Error) return this.report(srcDb, k, `cannot read the key at the source: ${s.message}`);
      if (d instanceof Error) return this.report(srcDb, k, `cannot read the key at the destination: ${d.message}`);
      if (s.type === 'none') return; // expired or deleted since the scan
      if (d.type === 'none') return this.report(srcDb, k, 'missing in destination');
      if (s.type !== d.type) return this.report(srcDb, k, `type differs: source ${s.type}, destination ${d.type}`);
      if (useDigest) {
        if (s.digest !== d.digest) this.report(srcDb, k, 'value differs (DEBUG DIGEST-VALUE)');
      } else {
        needValues.push(i);
      }
      const ttl = ttlDiff(s.pttl, d.pttl, this.tolerance);
      if (ttl) this.report(srcDb, k, ttl);
      if (s.type === 'stream') streams.push(i);
    });
    if (needValues.length) {
      const ks = needValues.map((i) => keys[i]);
      const [sv, dv] = await Promise.all([valueHashes(this.src, srcDb, ks), valueHashes(this.dst, dstDb, ks)]);
      ks.forEach((k, j) => {
        if (sv[j] !== dv[j]) this.report(srcDb, k, 'value differs');
      });
    }
    for (const i of streams) {
      const [sm, dm] = commonStreamFacts(...(await Promise.all([streamMeta(this.src, srcDb, keys[i]), streamMeta(this.dst, dstDb, keys[i])])));
      if (sm !== dm) this.report(srcDb, keys[i], `stream metadata differs: source ${sm}, destination ${dm}`);
    }
  }
}

function ttlDiff(s: number, d: number, tolerance: number): string | null {
  const show = (t: number) => (t < 0 ? 'none' : `${t} ms`);
  if (s === -2 || d === -2) return null; // expired meanwhile; existence is checked elsewhere
  if (s < 0 && d < 0) return null;
  if (s < 0 || d < 0 || Math.abs(s - d) > tolerance) return `ttl differs: source ${show(s)}, destination ${show(d)}`;
  return null;
}

/**
 * Runs `cmds(key)` for each key on the server holding it; results per key, per command.
 * Standalone: one pipeline (SELECT db first). Cluster: one pipeline per master.
 */
async function readMany(t: Topology, db: number, keys: Buffer[], cmds: (k: Buffer, i: number) => Arg[][]): Promise<Array<Array<[Error | null, unknown]>>> {
  const groups = new Map<Redis, number[]>();
  keys.forEach((k, i) => {
    const c = clientForKey(t, k);
    let g = groups.get(c);
    if (!g) groups.set(c, (g = []));
    g.push(i);
  });
  const out: Array<Array<[Error | null, unknown]>> = new Array(keys.length);
  await Promise.all(
    [...groups.entries()].map(async ([c, idx]) => {
      const p = c.pipeline();
      if (t.kind === 'standalone') p.select(db);
      const counts: number[] = [];
      for (const i of idx) {
        const list = cmds(keys[i], i);
        counts.push(list.length);
        for (const args of list) p.callBuffer(String(args[0]), ...args.slice(1));
      }
      const res = ((await p.exec()) ?? []) as Array<[Error | null, unknown]>;
      let j = t.kind === 'standalone' ? 1 : 0;
      if (t.kind === 'standalone' && res[0]?.[0]) throw res[0][0];
      idx.forEach((i, n) => {
        out[i] = res.slice(j, j + counts[n]).map(([e, v]) => [e, Buffer.isBuffer(v) ? v.toString('latin1') : v] as [Error | null, unknown]);
        j += counts[n];
      });
    }),
  );
  return out;
}

/** SCAN every master of `t` in db `db`, handing keys over in pages. */
async function scanAll(t: Topology, db: number, onKeys: (keys: Buffer[]) => Promise<void>, count: number): Promise<void> {
  for (const c of topologyMasters(t)) {
    let cursor = '0';
    do {
      if (t.kind === 'standalone') await c.select(db);
      const [next, keys] = (await c.scanBuffer(cursor, 'COUNT', count)) as unknown as [Buffer | string, Buffer[]];
      cursor = next.toString();
      if (keys.length) await onKeys(keys);
    } while (cursor !== '0');
  }
}

/** `n` keys of db chosen uniformly at random (reservoir over a full SCAN). */
async function sampleKeys(t: Topology, db: number, n: number, ignored: (k: Buffer) => boolean): Promise<Buffer[]> {
  const res: Buffer[] = [];
  let seen = 0;
  await scanAll(
    t,
    db,
    async (keys) => {
      for (const k of keys) {
        if (ignored(k)) continue;
        seen++;
        if (res.length < n) res.push(k);
        else {
          const j = Math.floor(Math.random() * seen);
          if (j < n) res[j] = k;
        }
      }
    },
    1000,
  );
  return res;
}

/** A hash of each key's value in a canonical form (order-free for sets and hashes). */
async function valueHashes(t: Topology, db: number, keys: Buffer[]): Promise<string[]> {
  const types = await readMany(t, db, keys, (k) => [['TYPE', k]]);
  const reads = await readMany(t, db, keys, (k, i) => {
    const type = String(types[i][0][1]);
    switch (type) {
      case 'string':
        return [['GET', k]];
      case 'list':
        return [['LRANGE', k, '0', '-1']];
      case 'set':
        return [['SMEMBERS', k]];
      case 'zset':
        return [['ZRANGE', k, '0', '-1', 'WITHSCORES']];
      case 'hash':
        return [['HGETALL', k]];
      case 'stream':
        return [['XRANGE', k, '-', '+']];
      default:
        return [['DUMP', k]];
    }
  });
  return keys.map((_k, i) => {
    const type = String(types[i][0][1]);
    const [err, v] = reads[i][0];
    if (err) return `error:${err.message}`;
    const h = createHash('sha256');
    h.update(type);
    const feed = (x: unknown) => {
      if (Array.isArray(x)) {
        h.update(`*${x.length}`);
        x.forEach(feed);
      } else {
        const s = x === null ? '' : String(x);
        h.update(`$${s.length}:`);
        h.update(s, 'latin1');
      }
    };
    let val = v as unknown;
    if (type === 'set' && Array.isArray(val)) val = [...(val as string[])].sort();
    if (type === 'hash' && Array.isArray(val)) {
      const a = val as string[];
      const pairs: string[][] = [];
      for (let j = 0; j < a.length; j += 2) pairs.push([a[j], a[j + 1]]);
      pairs.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
      val = pairs;
    }
    if (type !== 'string' && type !== 'list' && type !== 'set' && type !== 'zset' && type !== 'hash' && type !== 'stream' && typeof val === 'string') {
      val = val.slice(0, Math.max(0, val.length - 10)); // DUMP without RDB version and CRC
    }
    feed(val);
    return h.digest('hex');
  });
}

type StreamFacts = Record<string, unknown> & { groups?: Array<Record<string, unknown>> };

/**
 * The two sides' stream facts as canonical strings, without the facts only one side reports:
 * servers before 7.0 have no entries-added, max-deleted-entry-id, recorded-first-entry-id nor a
 * group's entries-read, so a sync between 6.2 and 7.0+ compares what both know.
 */
function commonStreamFacts(a: StreamFacts | string, b: StreamFacts | string): [string, string] {
  if (typeof a === 'string' || typeof b === 'string') return [JSON.stringify(a), JSON.stringify(b)];
  const strip = (x: Record<string, unknown>, y: Record<string, unknown>) => Object.fromEntries(Object.entries(x).filter(([k]) => k in y));
  const ga = a.groups ?? [];
  const gb = b.groups ?? [];
  const pa = { ...strip(a, b), groups: ga.map((g, i) => (gb[i] ? strip(g, gb[i]) : g)) };
  const pb = { ...strip(b, a), groups: gb.map((g, i) => (ga[i] ? strip(g, ga[i]) : g)) };
  return [JSON.stringify(pa), JSON.stringify(pb)];
}

/** Stream facts a digest does not cover (an error message when they cannot be read). */
async function streamMeta(t: Topology, db: number, key: Buffer): Promise<StreamFacts | string> {
  const c = clientForKey(t, key);
  const p = c.pipeline();
  if (t.kind === 'standalone') p.select(db);
  p.call('XINFO', 'STREAM', key);
  p.call('XINFO', 'GROUPS', key);
  const res = ((await p.exec()) ?? []).slice(t.kind === 'standalone' ? 1 : 0) as Array<[Error | null, unknown]>;
  if (res[0][0] || res[1][0]) return `error:${(res[0][0] ?? res[1][0])!.message}`;
  const st = toMap(res[0][1] as unknown[]);
  const meta: Record<string, unknown> = {};
  for (const f of ['length', 'last-generated-id', 'max-deleted-entry-id', 'entries-added', 'recorded-first-entry-id']) if (f in st) meta[f] = st[f];
  const groups: Array<Record<string, unknown>> = [];
  for (const g of res[1][1] as unknown[][]) {
    const gm = toMap(g);
    const name = String(gm.name);
    const q = c.pipeline();
    if (t.kind === 'standalone') q.select(db);
    q.call('XINFO', 'CONSUMERS', key, name);
    q.call('XPENDING', key, name, '-', '+', '1000000');
    const r = ((await q.exec()) ?? []).slice(t.kind === 'standalone' ? 1 : 0) as Array<[Error | null, unknown]>;
    const consumers = ((r[0][1] as unknown[][]) ?? []).map((x) => {
      const m = toMap(x);
      return [String(m.name), Number(m.pending)];
    });
    consumers.sort();
    const pending = ((r[1][1] as unknown[][]) ?? []).map((x) => [String(x[0]), String(x[1]), Number(x[3])]);
    groups.push({
      name, consumers: gm.consumers, pending: gm.pending, 'last-delivered-id': gm['last-delivered-id'],
      ...('entries-read' in gm ? { 'entries-read': gm['entries-read'] ?? null } : {}), consumerList: consumers, pel: pending,
    });
  }
  groups.sort((x, y) => (String((x as { name: string }).name) < String((y as { name: string }).name) ? -1 : 1));
  return { ...meta, groups };
}

function toMap(a: unknown[]): Record<string, unknown> {
  const m: Record<string, unknown> = {};
  for (let i = 0; i + 1 < a.length; i += 2) m[String(a[i])] = a[i + 1];
  return m;
}
