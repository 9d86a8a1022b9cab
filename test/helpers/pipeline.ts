/**
 * Running the real pipeline inside a test: capture and appliers started in-process against the
 * stack's Kafka and registry, private Redis servers as source and destinations, a workload that
 * uses every operation of the reference's list, and convergence checked by content (verify).
 */
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { startApplier, type ApplySettings, type RunningApplier } from '../../services/applier/service.js';
import { startCapture, type CaptureSettings, type RunningCapture } from '../../services/capture/service.js';
import { verifyDatabases, type VerifyOptions, type VerifyResult } from '../../services/destination/verify.js';
import { stack, uniqueName } from './stack-env.js';

export const testLogger = pino({ level: process.env.REPLISTREAM_TEST_LOG ?? 'silent' });

export function redisClient(url: string, db = 0): Redis {
  const c = new Redis(url, { db, protocol: 2, maxRetriesPerRequest: 2, enableOfflineQueue: true } as never);
  c.on('error', () => undefined);
  return c;
}

export interface PipelineNames {
  topicPrefix: string;
  sourceId: string;
}

export function pipelineNames(): PipelineNames {
  return { topicPrefix: uniqueName('t').replace(/-/g, '_'), sourceId: 's1' };
}

export function captureSettings(source: string, names: PipelineNames, over: Partial<CaptureSettings> = {}): CaptureSettings {
  const s = stack();
  return {
    source,
    sourceId: names.sourceId,
    kafka: s.kafka,
    registry: s.registry,
    topicPrefix: names.topicPrefix,
    partitions: 4,
    replicationFactor: 1,
    retentionMs: -1,
    dbs: [0, 1, 2],
    include: [],
    exclude: [],
    heartbeatKey: 'REPLISTREAM_TIMESTAMP_HEARTBEAT',
    noHeartbeat: false,
    maxRecordBytes: 900_000,
    compression: 'snappy',
    httpPort: 0,
    ...over,
  };
}

export function applySettings(destination: string, names: PipelineNames, group: string, over: Partial<ApplySettings> = {}): ApplySettings {
  const s = stack();
  return {
    destination,
    group,
    sourceId: names.sourceId,
    kafka: s.kafka,
    registry: s.registry,
    topicPrefix: names.topicPrefix,
    conflictMode: 'intercept',
    writeMode: 'restore',
    restoreFallback: false,
    from: 'committed',
    refuseFlush: false,
    onCommandError: 'fail',
    httpPort: 0,
    ...over,
  };
}

export async function runCapture(source: string, names: PipelineNames, over: Partial<CaptureSettings> = {}): Promise<RunningCapture> {
  return startCapture(captureSettings(source, names, over), testLogger);
}

export async function runApplier(destination: string, names: PipelineNames, group: string, over: Partial<ApplySettings> = {}): Promise<RunningApplier> {
  return startApplier(applySettings(destination, names, group, over), testLogger);
}

/** Polls verify until source and destination are equal (G1), or returns the last difference. */
export async function waitConverged(
  source: string,
  destination: string,
  dbs: number[],
  timeoutMs = 90_000,
  dbMap = new Map<number, number>(),
  options: VerifyOptions = {},
): Promise<VerifyResult> {
  const deadline = Date.now() + timeoutMs;
  let last: VerifyResult;
  do {
    last = await verifyDatabases(source, destination, dbs, dbMap, options);
    if (last.equal) return last;
    await new Promise((r) => setTimeout(r, 500));
  } while (Date.now() < deadline);
  return last;
}

export interface Workload {
  done: Promise<void>;
  /** Operations sent so far. */
  sent(): number;
}

/**
 * `ops` rounds of INCR, LPUSH and APPEND (a MULTI every 50), in order, `paceMs` apart: any write
 * lost or applied twice changes a counter, a list length or a string (the fault tests'
 * `expectExactCounters` checks all of them).
 */
export function counterWorkload(url: string, ops: number, paceMs = 0): Workload {
  const c = redisClient(url);
  let i = 0;
  const done = (async () => {
    for (; i < ops; i++) {
      const p = c.pipeline();
      p.incr(`ctr:${i % 7}`);
      p.lpush(`lst:${i % 5}`, String(i));
      p.append(`app:${i % 3}`, `${i},`);
      if (i % 50 === 0) await c.multi().incrby('tx:a', 2).rpush('tx:l', String(i)).exec();
      await p.exec();
      if (paceMs) await new Promise((r) => setTimeout(r, paceMs));
    }
  })().finally(() => c.disconnect());
  return { done, sent: () => i };
}

/** A service's /status or another JSON answer of its HTTP port: any shape, as tests read into it. */
export type ServiceBody = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** GET /status of a service's HTTP port (capture, applier or a CLI process). */
export async function statusOf(port: number): Promise<ServiceBody> {
  return (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as ServiceBody;
}

/** POST to a service's HTTP port (pause, resume, limits …), with `body` as JSON when given. */
export async function postTo(port: number, path: string, body?: unknown): Promise<{ code: number; body: ServiceBody }> {
  const res = await fetch(`http://127.0.0.1:${port}/${path}`, { method: 'POST', body: body === undefined ? undefined : JSON.stringify(body) });
  return { code: res.status, body: (await res.json()) as ServiceBody };
}

/** A Redis master's replication counters: full syncs it served, and PSYNCs it continued. */
export async function syncStats(url: string): Promise<{ full: number; partialOk: number }> {
  const c = redisClient(url);
  try {
    const info = await c.info('stats');
    return { full: Number(/sync_full:(\d+)/.exec(info)?.[1]), partialOk: Number(/sync_partial_ok:(\d+)/.exec(info)?.[1]) };
  } finally {
    c.disconnect();
  }
}

/** Waits until `cond` holds. */
export async function until(cond: () => Promise<boolean> | boolean, timeoutMs = 60_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/**
 * Every write operation of the reference's list (and a few more: UNLINK, SWAPDB, COPY, FUNCTION
 * effects), run against the source. `round` varies keys and values between calls.
 */
export async function referenceWorkload(url: string, round = 0): Promise<void> {
  const c = redisClient(url);
  const k = (n: string) => `w${round}:${n}`;
  try {
    await c.append(k('app'), 'abc');
    await c.append(k('app'), 'def');
    await c.set(k('b1'), 'foo');
    await c.set(k('b2'), 'bar');
    await c.bitop('AND', k('bitop'), k('b1'), k('b2'));
    await c.rpush(k('bl'), 'x', 'y', 'z');
    await c.blpop(k('bl'), 1);
    await c.brpop(k('bl'), 1);
    await c.rpush(k('bl2'), 'p', 'q');
    await c.brpoplpush(k('bl2'), k('bl3'), 1);
    await c.set(k('cnt'), '10');
    await c.decr(k('cnt'));
    await c.decrby(k('cnt'), 3);
    await c.incr(k('cnt'));
    await c.incrby(k('cnt'), 100);
    await c.incrbyfloat(k('flt'), 1.25);
    await c.set(k('del'), 'x');
    await c.del(k('del'));
    await c.eval("redis.call('SET', KEYS[1], ARGV[1]); redis.call('INCR', KEYS[2]); return 1", 2, k('ev1'), k('ev2'), 'scripted');
    const sha = (await c.script('LOAD', "return redis.call('LPUSH', KEYS[1], ARGV[1])")) as string;
    await c.evalsha(sha, 1, k('evl'), 'viasha');
    await c.multi().set(k('tx1'), 'a').incr(k('tx2')).lpush(k('txl'), 'q').exec();
    await c.set(k('exp'), 'v');
    await c.expire(k('exp'), 3600);
    await c.set(k('expat'), 'v');
    await c.expireat(k('expat'), Math.floor(Date.now() / 1000) + 7200);
    await c.geoadd(k('geo'), 13.361389, 38.115556, 'Palermo', 15.087269, 37.502669, 'Catania');
    await c.getset(k('gs'), 'new');
    await c.hset(k('h'), 'a', '1', 'b', '2', 'c', '3');
    await c.hdel(k('h'), 'c');
    await c.hincrby(k('h'), 'a', 5);
    await c.hincrbyfloat(k('h'), 'f', 0.5);
    await c.hmset(k('h'), { d: '4', e: '5' });
    await c.hsetnx(k('h'), 'a', 'no');
    await c.hsetnx(k('h'), 'z', 'yes');
    await c.rpush(k('l'), '1', '2', '3', '4', '5', '2');
    await c.linsert(k('l'), 'BEFORE', '3', 'ins');
    await c.lpop(k('l'));
    await c.lpush(k('l'), 'head');
    await c.lpushx(k('l'), 'head2');
    await c.lrem(k('l'), 1, '2');
    await c.lset(k('l'), 0, 'set0');
    await c.ltrim(k('l'), 0, 4);
    await c.rpop(k('l'));
    await c.rpoplpush(k('l'), k('l2'));
    await c.rpushx(k('l'), 'tail');
    await c.set(k('mv'), 'moving');
    await c.move(k('mv'), 1);
    await c.mset(k('ms1'), '1', k('ms2'), '2');
    await c.msetnx(k('msn1'), '1', k('msn2'), '2');
    await c.set(k('pers'), 'v', 'EX', 100);
    await c.persist(k('pers'));
    await c.set(k('pexp'), 'v');
    await c.pexpire(k('pexp'), 500_000);
    await c.set(k('pexpat'), 'v');
    await c.pexpireat(k('pexpat'), Date.now() + 900_000);
    await c.pfadd(k('hll1'), 'a', 'b', 'c');
    await c.pfadd(k('hll2'), 'c', 'd');
    await c.pfmerge(k('hllm'), k('hll1'), k('hll2'));
    await c.psetex(k('psx'), 600_000, 'v');
    await c.publish(k('chan'), 'hello');
    await c.set(k('rn'), 'v');
    await c.rename(k('rn'), k('rn2'));
    await c.set(k('rnx'), 'v');
    await c.renamenx(k('rnx'), k('rnx2'));
    const dump = await c.dumpBuffer(k('h'));
    await c.restore(k('restored'), 0, dump, 'REPLACE');
    await c.sadd(k('s1'), 'a', 'b', 'c', 'd');
    await c.sadd(k('s2'), 'c', 'd', 'e');
    await c.sdiffstore(k('sd'), k('s1'), k('s2'));
    await c.sinterstore(k('si'), k('s1'), k('s2'));
    await c.sunionstore(k('su'), k('s1'), k('s2'));
    await c.smove(k('s1'), k('s2'), 'a');
    await c.spop(k('s1'));
    await c.srem(k('s2'), 'e');
    await c.set(k('set'), 'v');
    await c.setbit(k('bits'), 7, 1);
    await c.setex(k('sx'), 3600, 'v');
    await c.setnx(k('snx'), 'v');
    await c.set(k('sr'), 'Hello World');
    await c.setrange(k('sr'), 6, 'Redis');
    await c.zadd(k('z1'), 1, 'a', 2, 'b', 3, 'c', 4, 'd');
    await c.zadd(k('z2'), 10, 'c', 20, 'e');
    await c.zincrby(k('z1'), 5, 'a');
    await c.zinterstore(k('zi'), 2, k('z1'), k('z2'));
    await c.zunionstore(k('zu'), 2, k('z1'), k('z2'), 'WEIGHTS', 1, 2);
    await c.zrem(k('z1'), 'b');
    await c.zadd(k('zl'), 0, 'a', 0, 'b', 0, 'c', 0, 'd');
    await c.zremrangebylex(k('zl'), '[b', '[c');
    await c.zremrangebyrank(k('z2'), 0, 0);
    await c.zremrangebyscore(k('z1'), 0, 3.5);
    await c.set(k('ul'), 'v');
    await c.unlink(k('ul'));
    await c.copy(k('z1'), k('zcopy'));
    const d2 = redisClient(url, 2);
    await d2.set(k('in2'), 'db2');
    await d2.incr(k('cnt2'));
    d2.disconnect();
    await c.swapdb(1, 2);
    await c.swapdb(1, 2);
  } finally {
    c.disconnect();
  }
}

/**
 * Every event on the source's db topics, read from the beginning to the current end, with the
 * partition it was read from: the raw material for checks by position (duplicates, gaps, order).
 */
export async function readAllEvents(names: PipelineNames, dbs: number[]): Promise<Array<{ db: number; partition: number; event: import('../../services/events/model.js').ChangeEvent }>> {
  const { createKafka } = await import('../../services/transport/kafka.js');
  const { EventRegistry } = await import('../../services/transport/registry.js');
  const { topicName } = await import('../../services/transport/topics.js');
  const s = stack();
  const kafka = createKafka({ brokers: s.kafka, clientId: 'test-reader', logger: testLogger });
  const registry = new EventRegistry({ url: s.registry, logger: testLogger });
  const admin = kafka.admin();
  await admin.connect();
  const out: Array<{ db: number; partition: number; event: import('../../services/events/model.js').ChangeEvent }> = [];
  const consumer = kafka.consumer({ groupId: uniqueName('reader') });
  try {
    const ends = new Map<string, bigint>();
    for (const db of dbs) {
      for (const o of await admin.fetchTopicOffsets(topicName(names.topicPrefix, names.sourceId, db))) ends.set(`${db}:${o.partition}`, BigInt(o.high));
    }
    const remaining = new Set([...ends].filter(([, high]) => high > 0n).map(([k]) => k));
    if (remaining.size === 0) return out;
    await consumer.connect();
    await consumer.subscribe({ topics: dbs.map((db) => topicName(names.topicPrefix, names.sourceId, db)), fromBeginning: true });
    const byTopic = new Map(dbs.map((db) => [topicName(names.topicPrefix, names.sourceId, db), db]));
    const collected = new Map<string, Array<{ offset: bigint; events: import('../../services/events/model.js').ChangeEvent[] }>>();
    await new Promise<void>((resolve, reject) => {
      consumer
        .run({
          eachMessage: async ({ topic, partition, message }) => {
            const db = byTopic.get(topic)!;
            const k = `${db}:${partition}`;
            const list = collected.get(k) ?? [];
            list.push({ offset: BigInt(message.offset), events: await registry.decode(message.value!) });
            collected.set(k, list);
            if (BigInt(message.offset) + 1n >= ends.get(k)!) {
              remaining.delete(k);
              if (remaining.size === 0) resolve();
            }
          },
        })
        .catch(reject);
    });
    for (const [k, list] of collected) {
      const [db, partition] = k.split(':').map(Number);
      for (const r of list.sort((a, b) => (a.offset < b.offset ? -1 : 1))) for (const event of r.events) out.push({ db, partition, event });
    }
    return out;
  } finally {
    await consumer.disconnect().catch(() => {});
    await admin.disconnect().catch(() => {});
  }
}
