/**
 * Helpers for the destination writer tests: private redis-servers (standalone and cluster), events
 * built from a real source (DUMP payloads and typed reads), command events from the source's own
 * propagation (its AOF, which holds exactly what a replica would receive), and a quiet logger.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import type { ChangeEvent, CommandEvent, SnapshotKey, SourcePosition, StreamId, StreamValue, TypedValue } from '../../../services/events/model.js';
import { DestinationWriter, type DestinationWriterOptions } from '../../../services/destination/writer.js';
import { splitForRecordLimit } from '../../../services/events/split.js';
import { StreamQueue } from '../../../services/applier/stream-queue.js';
import { type RedisServer, startRedis } from '../../helpers/redis-server.js';

export { startRedis, type RedisServer };

const run = promisify(execFile);

export const quietLogger = pino({ level: process.env.REPLISTREAM_TEST_LOG ?? 'silent' });

export function client(url: string, db = 0): Redis {
  const u = new URL(url);
  const c = new Redis({ host: u.hostname, port: Number(u.port), db, protocol: 2, lazyConnect: false, maxRetriesPerRequest: 1, enableOfflineQueue: true });
  c.on('error', () => undefined);
  return c;
}

export function writer(url: string, over: Partial<DestinationWriterOptions> = {}): DestinationWriter {
  return new DestinationWriter({
    url,
    dbMap: new Map(),
    writeMode: 'restore',
    allowRestoreFallback: false,
    refuseFlush: false,
    onUnknownCommand: 'fail',
    positionKeyPrefix: 'replistream:pos:test',
    logger: quietLogger,
    ...over,
  });
}

export function pos(offset: number, seq = 0, epoch = 1): SourcePosition {
  return { epoch, offset, seq, replid: 'a'.repeat(40) };
}

const b = (s: string | Buffer | number) => (Buffer.isBuffer(s) ? s : Buffer.from(String(s)));

export function cmd(p: SourcePosition, db: number, ...commands: Array<Array<string | Buffer | number>>): CommandEvent {
  return { kind: 'command', pos: p, db, commands: commands.map((c) => c.map(b)), participants: [], piece: null };
}

// ---------------------------------------------------------------------------------------------
// snapshot events from a live source

function parseId(s: string): StreamId {
  const [ms, seq] = s.split('-');
  return { ms: BigInt(ms), seq: BigInt(seq ?? 0) };
}

function map(a: unknown[]): Record<string, unknown> {
  const m: Record<string, unknown> = {};
  for (let i = 0; i + 1 < a.length; i += 2) m[String(a[i])] = a[i + 1];
  return m;
}

function score(s: string): number {
  if (s === 'inf' || s === '+inf') return Infinity;
  if (s === '-inf') return -Infinity;
  return Number(s);
}

/** Typed value of `key` read from `c` (every type but module). */
export async function typedValue(c: Redis, key: Buffer): Promise<TypedValue> {
  const type = await c.type(key);
  switch (type) {
    case 'string':
      return { type: 'string', value: (await c.getBuffer(key))! };
    case 'list':
      return { type: 'list', items: await c.lrangeBuffer(key, 0, -1) };
    case 'set':
      return { type: 'set', members: await c.smembersBuffer(key) };
    case 'zset': {
      const a = (await c.callBuffer('ZRANGE', key, '0', '-1', 'WITHSCORES')) as Buffer[];
      const entries = [];
      for (let i = 0; i < a.length; i += 2) entries.push({ member: a[i], score: score(a[i + 1].toString()) });
      return { type: 'zset', entries };
    }
    case 'hash': {
      const a = (await c.callBuffer('HGETALL', key)) as Buffer[];
      const entries = [];
      for (let i = 0; i < a.length; i += 2) entries.push({ field: a[i], value: a[i + 1], expireAtMs: null });
      return { type: 'hash', entries };
    }
    case 'stream':
      return { type: 'stream', stream: await streamValue(c, key) };
    default:
      throw new Error(`typedValue: type ${type}`);
  }
}

async function streamValue(c: Redis, key: Buffer): Promise<StreamValue> {
  const full = map((await c.callBuffer('XINFO', 'STREAM', key, 'FULL', 'COUNT', '0')) as unknown[]);
  const s = (x: unknown) => (Buffer.isBuffer(x) ? x.toString() : String(x));
  const entries = ((full.entries as unknown[][]) ?? []).map((e) => ({ id: parseId(s(e[0])), fields: e[1] as Buffer[] }));
  const groups = ((full.groups as unknown[][]) ?? []).map((g0) => {
    const g = map(g0);
    return {
      name: g.name as Buffer,
      lastId: parseId(s(g['last-delivered-id'])),
      entriesRead: g['entries-read'] === null || g['entries-read'] === undefined ? undefined : Number(s(g['entries-read'])),
      pending: ((g.pending as unknown[][]) ?? []).map((p) => ({ id: parseId(s(p[0])), consumer: p[1] as Buffer, deliveryTimeMs: Number(s(p[2])), deliveryCount: Number(s(p[3])) })),
      consumers: ((g.consumers as unknown[][]) ?? []).map((c0) => {
        const cm = map(c0);
        return {
          name: cm.name as Buffer,
          seenTimeMs: Number(s(cm['seen-time'])),
          pending: ((cm.pending as unknown[][]) ?? []).map((p) => parseId(s(p[0]))),
        };
      }),
    };
  });
  return {
    entries,
    length: Number(s(full.length)),
    lastId: parseId(s(full['last-generated-id'])),
    maxDeletedId: full['max-deleted-entry-id'] ? parseId(s(full['max-deleted-entry-id'])) : undefined,
    entriesAdded: full['entries-added'] !== undefined ? Number(s(full['entries-added'])) : undefined,
    groups,
  };
}

export interface SnapshotOptions {
  epoch?: number;
  offset?: number;
  /** Include DUMP payloads (default true) / typed values (default true). */
  payload?: boolean;
  value?: boolean;
  /** Split every event into Kafka-record pieces of at most this many bytes (services/events/split.ts). */
  recordBytes?: number;
  /** Send each key of several elements as this many parts, like the capture does for keys over its parser bound (`append`). */
  parts?: number;
  rdbVersion?: number;
}

/** snapshot-begin, one snapshot-key per key of `db` (SCAN order), snapshot-end. */
export async function snapshotEvents(c: Redis, db: number, o: SnapshotOptions = {}): Promise<ChangeEvent[]> {
  const epoch = o.epoch ?? 1;
  const offset = o.offset ?? 1000;
  await c.select(db);
  const keys: Buffer[] = [];
  let cursor = '0';
  do {
    const [next, ks] = (await c.scanBuffer(cursor, 'COUNT', 1000)) as unknown as [Buffer, Buffer[]];
    cursor = next.toString();
    keys.push(...ks);
  } while (cursor !== '0');
  keys.sort(Buffer.compare);
  let seq = 0;
  const events: ChangeEvent[] = [{ kind: 'snapshot-begin', pos: { epoch, offset, seq: seq++, replid: 'r'.repeat(40) }, db, rdbVersion: o.rdbVersion ?? 10, sourceVersion: '7.0.15' }];
  for (const key of keys) {
    const type = (await c.type(key)) as SnapshotKey['type'];
    const pexpiretime = Number(await c.call('PEXPIRETIME', key));
    const expireAtMs = pexpiretime > 0 ? pexpiretime : null;
    const payload = o.payload === false ? null : await c.dumpBuffer(key);
    const value = o.value === false ? null : await typedValue(c, key);
    const n = o.parts ?? 1;
    const parts = n > 1 && value ? splitValue(value, n) : null;
    if (!parts || parts.length < 2) {
      events.push({ kind: 'snapshot-key', pos: { epoch, offset, seq: seq++, replid: 'r'.repeat(40) }, db, key, type, expireAtMs, payload, value, piece: null });
      continue;
    }
    // a payload is only usable whole: parts travel as typed elements
    parts.forEach((v, i) => {
      events.push({ kind: 'snapshot-key', pos: { epoch, offset, seq: seq++, replid: 'r'.repeat(40) }, db, key, type, expireAtMs, payload: null, value: v, piece: null, append: i > 0 });
    });
  }
  events.push({ kind: 'snapshot-end', pos: { epoch, offset, seq: seq++, replid: 'r'.repeat(40) }, db, keyCount: keys.length });
  return o.recordBytes ? events.flatMap((e) => splitForRecordLimit(e, o.recordBytes)) : events;
}

/**
 * Events split into record pieces (`snapshotEvents` with `recordBytes`) rebuilt the way the
 * applier does it, through its stream queue (one event per record): the writer takes whole events
 * only. Throws when a series is incomplete or read without its beginning.
 */
export async function wholeEvents(events: ChangeEvent[]): Promise<ChangeEvent[]> {
  const q = new StreamQueue('test', 0, (reason) => {
    throw new Error(`wholeEvents: ${reason}`);
  });
  q.push(events.map((e, i) => ({ offset: String(i), bytes: 1, events: [e] })));
  await q.fill(Number.MAX_SAFE_INTEGER, async (r) => r.events);
  const items = q.items.map((i) => i.event);
  q.consume(items.length);
  // with everything consumed, the queue resumes after the last record unless pieces are left over
  if (q.commitOffset() !== String(events.length)) throw new Error(`wholeEvents: a series is incomplete (resume offset ${q.commitOffset()} of ${events.length})`);
  return items;
}

function splitBuffer(buf: Buffer, n: number): Buffer[] {
  if (buf.length === 0) return [buf];
  const size = Math.ceil(buf.length / n);
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}

function slices<T>(a: T[], n: number): T[][] {
  const size = Math.max(1, Math.ceil(a.length / n));
  const out: T[][] = [];
  for (let i = 0; i < a.length; i += size) out.push(a.slice(i, i + size));
  return out.length ? out : [[]];
}

/** Splits a typed value's elements into up to n parts (a string: its bytes, appended). */
export function splitValue(v: TypedValue, n: number): TypedValue[] {
  switch (v.type) {
    case 'string':
      return splitBuffer(v.value, n).map((value) => ({ type: 'string', value }));
    case 'list':
      return slices(v.items, n).map((items) => ({ type: 'list', items }));
    case 'set':
      return slices(v.members, n).map((members) => ({ type: 'set', members }));
    case 'zset':
      return slices(v.entries, n).map((entries) => ({ type: 'zset', entries }));
    case 'hash':
      return slices(v.entries, n).map((entries) => ({ type: 'hash', entries }));
    case 'stream': {
      // as the RDB parser does: earlier parts carry entries only (length 0, last id 0-0, no
      // groups); the last part carries the metadata and the consumer groups
      const parts = slices(v.stream.entries, n);
      return parts.map((entries, i) =>
        i === parts.length - 1
          ? { type: 'stream', stream: { ...v.stream, entries } }
          : { type: 'stream', stream: { entries, length: 0, lastId: { ms: 0n, seq: 0n }, groups: [] } },
      );
    }
    default:
      return [v];
  }
}

// ---------------------------------------------------------------------------------------------
// command events from the source's propagation (AOF)

/** Reads every RESP array of a byte stream. */
export function parseResp(buf: Buffer): Buffer[][] {
  const out: Buffer[][] = [];
  let i = 0;
  const line = (): string => {
    const e = buf.indexOf('\r\n', i);
    if (e < 0) throw new Error('truncated');
    const s = buf.subarray(i, e).toString();
    i = e + 2;
    return s;
  };
  while (i < buf.length) {
    const head = line();
    if (!head.startsWith('*')) throw new Error(`unexpected ${head}`);
    const n = Number(head.slice(1));
    const args: Buffer[] = [];
    for (let k = 0; k < n; k++) {
      const len = Number(line().slice(1));
      args.push(buf.subarray(i, i + len));
      i += len + 2;
    }
    out.push(args);
  }
  return out;
}

/** The commands the server propagated so far (appendonly yes; Redis 7 multi-part AOF). */
export function aofCommands(server: RedisServer): Buffer[][] {
  const dir = join(server.dir, 'appendonlydir');
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.incr.aof')).sort() : [];
  return files.flatMap((f) => parseResp(readFileSync(join(dir, f))));
}

/**
 * Groups propagated commands into command events the way a capture does: SELECT sets the db
 * (and is not an event), MULTI…EXEC becomes one unit.
 */
export function commandEventsFrom(commands: Buffer[][], startOffset = 10_000, epoch = 1): CommandEvent[] {
  const out: CommandEvent[] = [];
  let db = 0;
  let offset = startOffset;
  let unit: { db: number; commands: Buffer[][] } | null = null;
  for (const c of commands) {
    const name = c[0].toString().toUpperCase();
    offset += 10;
    if (name === 'MULTI') {
      unit = { db, commands: [] };
      continue;
    }
    if (name === 'EXEC' && unit) {
      out.push({ kind: 'command', pos: { epoch, offset, seq: 0, replid: 'r'.repeat(40) }, db: unit.db, commands: unit.commands, participants: [], piece: null });
      unit = null;
      continue;
    }
    if (unit) {
      unit.commands.push(c);
      if (name === 'SELECT') db = Number(c[1].toString());
      continue;
    }
    if (name === 'SELECT') {
      db = Number(c[1].toString());
      continue;
    }
    out.push({ kind: 'command', pos: { epoch, offset, seq: 0, replid: 'r'.repeat(40) }, db, commands: [c], participants: [], piece: null });
  }
  return out;
}

/** A source whose AOF records every propagated command. */
export function startSource(extra: Record<string, string | number> = {}): Promise<RedisServer> {
  return startRedis({ appendonly: 'yes', appendfsync: 'always', 'aof-use-rdb-preamble': 'yes', ...extra });
}

// ---------------------------------------------------------------------------------------------
// cluster

export interface TestCluster {
  nodes: RedisServer[];
  url: string;
  stop(): Promise<void>;
}

export async function startCluster(masters = 3): Promise<TestCluster> {
  const nodes: RedisServer[] = [];
  try {
    for (let i = 0; i < masters; i++) nodes.push(await startRedis({ 'cluster-enabled': 'yes', 'cluster-node-timeout': 2000 }));
    await run('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-yes']);
    const deadline = Date.now() + 20_000;
    for (;;) {
      const states = await Promise.all(
        nodes.map(async (n) => {
          const c = client(n.url);
          try {
            return String(await c.call('CLUSTER', 'INFO')).includes('cluster_state:ok');
          } finally {
            c.disconnect();
          }
        }),
      );
      if (states.every(Boolean)) break;
      if (Date.now() > deadline) throw new Error('cluster did not reach cluster_state:ok');
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (err) {
    await Promise.all(nodes.map((n) => n.stop()));
    throw err;
  }
  return { nodes, url: nodes[0].url, stop: async () => void (await Promise.all(nodes.map((n) => n.stop()))) };
}

/** Positive control for tests: the number of keys a writer left under its position prefix. */
export async function positionKeys(c: Redis, prefix = 'replistream:'): Promise<string[]> {
  return (await c.keys(`${prefix}*`)).sort();
}

/** Splits events into batches of `size`. */
export function batches<T>(events: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < events.length; i += size) out.push(events.slice(i, i + size));
  return out;
}

// ---------------------------------------------------------------------------------------------
// fixtures

/** Fills `c` (db 0) with every type and the encodings Redis picks by size. */
export async function fillEveryType(c: Redis): Promise<void> {
  const big = <T,>(n: number, f: (i: number) => T): T[] => Array.from({ length: n }, (_, i) => f(i));
  await c.set('str:int', '12345');
  await c.set('str:embstr', 'hello');
  await c.set('str:raw', 'x'.repeat(200));
  await c.set(Buffer.from([0xff, 0x00, 0x80, 0x0a]), Buffer.from([0, 1, 2, 255, 13, 10]));
  await c.set('str:ttl', 'soon', 'PX', 3_600_000);
  await c.rpush('list:small', 'a', 'b', 'a', '3');
  await c.rpush('list:big', ...big(2000, (i) => `item-${i}-${'y'.repeat(i % 70)}`));
  await c.sadd('set:int', 1, 2, 3, 100000);
  await c.sadd('set:small', 'a', 'b', 'c');
  await c.sadd('set:big', ...big(1000, (i) => `m${i}`));
  await c.zadd('zset:small', 1, 'a', 2.5, 'b', -3, 'c');
  await c.zadd('zset:big', ...big(500, (i) => [String(i * 1.5), `z${i}`]).flat());
  await c.zadd('zset:inf', 'inf', 'top', '-inf', 'bottom', 0, 'zero');
  await c.hset('hash:small', 'f1', 'v1', 'f2', 'v2');
  await c.hset('hash:big', ...big(600, (i) => [`field${i}`, `value${i}`]).flat());
  await c.hset('hash:ttl', 'a', '1');
  await c.pexpire('hash:ttl', 7_200_000);
  await c.xadd('stream:plain', '1-1', 'a', '1');
  await c.xadd('stream:plain', '2-0', 'b', '2', 'c', '3');
  await c.xadd('stream:groups', '5-1', 'k', 'v1');
  await c.xadd('stream:groups', '5-2', 'k', 'v2');
  await c.xadd('stream:groups', '6-0', 'k', 'v3');
  await c.xadd('stream:groups', '7-0', 'k', 'v4');
  await c.xdel('stream:groups', '7-0');
  await c.xgroup('CREATE', 'stream:groups', 'g1', '0');
  await c.xgroup('CREATE', 'stream:groups', 'g2', '$');
  await c.xreadgroup('GROUP', 'g1', 'alice', 'COUNT', 2, 'STREAMS', 'stream:groups', '>');
  await c.xreadgroup('GROUP', 'g1', 'bob', 'COUNT', 1, 'STREAMS', 'stream:groups', '>');
  await c.xack('stream:groups', 'g1', '5-1');
  await c.call('XGROUP', 'CREATECONSUMER', 'stream:groups', 'g2', 'carol');
  await c.xadd('stream:empty', '9-9', 'x', 'y');
  await c.xdel('stream:empty', '9-9');
  for (let i = 0; i < 300; i++) await c.xadd('stream:big', `${1000 + i}-0`, 'n', String(i));
}
