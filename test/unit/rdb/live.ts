/**
 * Reading a live redis-server's keys in the JSON form `rdb inspect` prints (typedValueToJson),
 * for the fixture generator and the tests that compare the parser with a real server.
 */
import { Redis } from 'ioredis';
import { RDB_ENCODING_NAMES } from '../../../services/replication/rdb/parser.js';
import { toJsonSafe, type JsonSafe } from '../../../services/replication/rdb/inspect.js';
import type { RedisServer } from '../../helpers/redis-server.js';

export function connect(server: RedisServer, db = 0): Redis {
  const c = new Redis({
    host: '127.0.0.1',
    port: server.port,
    db,
    protocol: 2,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: true,
  });
  c.on('error', () => undefined);
  return c;
}

/** One key as recorded in a fixture's JSON. */
export interface ExpectedKey {
  db: number;
  key: JsonSafe;
  type: string;
  /** OBJECT ENCODING on the server. */
  objectEncoding: string;
  /** The RDB encoding our parser should report, read from the DUMP payload's type byte. */
  rdbEncoding: string;
  expireAtMs: number | null;
  value: unknown;
  /** DUMP payload, base64. */
  dump: string;
  /** DEBUG DIGEST-VALUE. */
  digest: string;
  freq?: number;
  idle?: number;
}

export interface FixtureExpectation {
  generatedBy: string;
  server: string;
  config: Record<string, string | number | string[]>;
  rdbVersion: number;
  functions: string[];
  keys: ExpectedKey[];
}

type Reply = Buffer | number | null | Reply[];

function str(b: Reply): string {
  return Buffer.isBuffer(b) ? b.toString('utf8') : String(b);
}

/** A flat [k1, v1, k2, v2…] reply as a map keyed by the (text) keys. */
function kv(r: Reply): Map<string, Reply> {
  const arr = r as Reply[];
  const m = new Map<string, Reply>();
  for (let i = 0; i < arr.length; i += 2) m.set(str(arr[i]), arr[i + 1]);
  return m;
}

function scoreJson(s: string): number | string {
  const l = s.toLowerCase();
  if (l === 'inf' || l === '+inf') return 'inf';
  if (l === '-inf') return '-inf';
  if (l === 'nan') return 'nan';
  return Number(s);
}

/** The RDB encoding name a DUMP payload announces (type byte; for strings the length byte). */
export function encodingOfDump(dump: Buffer): string {
  const t = dump[0];
  if (t === 0) {
    const b = dump[1];
    if (b >> 6 === 3) return (b & 0x3f) === 3 ? 'string-lzf' : 'string-int';
    return 'string';
  }
  return RDB_ENCODING_NAMES.get(t) ?? `type-${t}`;
}

/** Reads a key's value in typedValueToJson form. */
export async function readValue(c: Redis, key: Buffer, type: string): Promise<unknown> {
  switch (type) {
    case 'string':
      return toJsonSafe((await c.callBuffer('GET', key)) as Buffer);
    case 'list':
      return ((await c.callBuffer('LRANGE', key, 0, -1)) as Buffer[]).map(toJsonSafe);
    case 'set':
      return ((await c.callBuffer('SMEMBERS', key)) as Buffer[]).map(toJsonSafe);
    case 'zset': {
      const r = (await c.callBuffer('ZRANGE', key, 0, -1, 'WITHSCORES')) as Buffer[];
      const out: Array<{ member: JsonSafe; score: number | string }> = [];
      for (let i = 0; i < r.length; i += 2) out.push({ member: toJsonSafe(r[i]), score: scoreJson(r[i + 1].toString()) });
      return out;
    }
    case 'hash': {
      const r = (await c.callBuffer('HGETALL', key)) as Buffer[];
      const out: Array<{ field: JsonSafe; value: JsonSafe }> = [];
      for (let i = 0; i < r.length; i += 2) out.push({ field: toJsonSafe(r[i]), value: toJsonSafe(r[i + 1]) });
      return out;
    }
    case 'stream':
      return readStream(c, key);
    default:
      throw new Error(`cannot read type ${type}`);
  }
}

async function readStream(c: Redis, key: Buffer): Promise<unknown> {
  const info = kv((await c.callBuffer('XINFO', 'STREAM', key, 'FULL', 'COUNT', 0)) as Reply);
  const out: Record<string, unknown> = {
    length: info.get('length'),
    lastId: str(info.get('last-generated-id')!),
    firstId: str(info.get('recorded-first-entry-id')!),
    maxDeletedId: str(info.get('max-deleted-entry-id')!),
    entriesAdded: info.get('entries-added'),
  };
  out.entries = ((info.get('entries') as Reply[]) ?? []).map((e) => {
    const [id, fields] = e as Reply[];
    return { id: str(id), fields: (fields as Buffer[]).map(toJsonSafe) };
  });
  out.groups = ((info.get('groups') as Reply[]) ?? []).map((g) => {
    const gm = kv(g);
    const go: Record<string, unknown> = { name: toJsonSafe(gm.get('name') as Buffer), lastId: str(gm.get('last-delivered-id')!) };
    const er = gm.get('entries-read');
    if (er !== null && er !== undefined) go.entriesRead = er;
    go.pending = (gm.get('pending') as Reply[]).map((p) => {
      const [id, consumer, time, count] = p as Reply[];
      return { id: str(id), deliveryTimeMs: time, deliveryCount: count, consumer: toJsonSafe(consumer as Buffer) };
    });
    go.consumers = (gm.get('consumers') as Reply[]).map((cr) => {
      const cm = kv(cr);
      const co: Record<string, unknown> = { name: toJsonSafe(cm.get('name') as Buffer), seenTimeMs: cm.get('seen-time') };
      if (cm.has('active-time')) co.activeTimeMs = cm.get('active-time');
      co.pending = (cm.get('pending') as Reply[]).map((p) => str((p as Reply[])[0]));
      return co;
    });
    return go;
  });
  return out;
}

/**
 * Metadata that reading a key would disturb (LRU idle time, LFU counter): collect it first, with
 * OBJECT, which does not touch keys.
 */
export async function readAccessMeta(c: Redis, db: number): Promise<Map<string, { idle?: number; freq?: number }>> {
  await c.select(db);
  const policy = ((await c.config('GET', 'maxmemory-policy')) as string[])[1];
  const out = new Map<string, { idle?: number; freq?: number }>();
  const keys = (await c.callBuffer('KEYS', '*')) as Buffer[];
  for (const k of keys) {
    const m: { idle?: number; freq?: number } = {};
    if (policy.includes('lfu')) m.freq = Number(await c.call('OBJECT', 'FREQ', k));
    else if (policy.includes('lru')) m.idle = Number(await c.call('OBJECT', 'IDLETIME', k));
    out.set(k.toString('hex'), m);
  }
  return out;
}

/** Every key of every database, with its value, DUMP and digest. */
export async function readAllKeys(
  c: Redis,
  access: Map<number, Map<string, { idle?: number; freq?: number }>> = new Map(),
): Promise<ExpectedKey[]> {
  const out: ExpectedKey[] = [];
  for (let db = 0; db < 16; db++) {
    await c.select(db);
    const keys = ((await c.callBuffer('KEYS', '*')) as Buffer[]).sort(Buffer.compare);
    for (const k of keys) {
      const type = str((await c.callBuffer('TYPE', k)) as Buffer);
      const objectEncoding = str((await c.callBuffer('OBJECT', 'ENCODING', k)) as Buffer);
      const pexp = Number(await c.call('PEXPIRETIME', k));
      const dump = (await c.callBuffer('DUMP', k)) as Buffer;
      const digest = str(((await c.callBuffer('DEBUG', 'DIGEST-VALUE', k)) as Buffer[])[0]);
      const e: ExpectedKey = {
        db,
        key: toJsonSafe(k),
        type,
        objectEncoding,
        rdbEncoding: encodingOfDump(dump),
        expireAtMs: pexp >= 0 ? pexp : null,
        value: await readValue(c, k, type),
        dump: dump.toString('base64'),
        digest,
      };
      const meta = access.get(db)?.get(k.toString('hex'));
      if (meta?.freq !== undefined) e.freq = meta.freq;
      if (meta?.idle !== undefined) e.idle = meta.idle;
      out.push(e);
    }
  }
  return out;
}

/** Order-insensitive form of a value for comparison: sets, hashes and zsets sorted. */
export function normalizeValue(type: string, v: unknown): unknown {
  const key = (x: unknown): string => JSON.stringify(x);
  if (type === 'set' || type === 'hash' || type === 'zset') {
    return [...(v as unknown[])].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  }
  return v;
}
