/**
 * One command far bigger than a Kafka record (and a key as big in the snapshot): an RPUSH of 1,000,000 elements (~22 MB) travels as a
 * series of record pieces and is applied whole, once:
 * - streamed normally (the series is longer than the applier's queue budget: its pieces must not
 *   pause the partition they are waiting on);
 * - read by a new group started in the middle of the series (`--from offset:`): the applier reads
 *   the partition again from the series' first record instead of dropping what it cannot rebuild;
 * - read again from the middle by the group that applied it: the destination's position shows it
 *   is there, so it is not applied twice (an RPUSH applied twice doubles the list).
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { RunningApplier } from '../../../services/applier/service.js';
import { createKafka } from '../../../services/transport/kafka.js';
import { topicName } from '../../../services/transport/topics.js';
import { redisClient, runApplier, runCapture, pipelineNames, until, waitConverged } from '../../helpers/pipeline.js';
import { startRedis, type RedisServer } from '../../helpers/redis-server.js';
import { stack, uniqueName } from '../../helpers/stack-env.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

async function server(): Promise<RedisServer> {
  const s = await startRedis({});
  cleanups.push(() => s.stop());
  return s;
}

const ELEMENTS = 1_000_000;

async function endOffset(topic: string): Promise<bigint> {
  const admin = createKafka({ brokers: stack().kafka, clientId: 'huge-command-test' }).admin();
  await admin.connect();
  try {
    const [p0] = await admin.fetchTopicOffsets(topic);
    return BigInt(p0.high);
  } finally {
    await admin.disconnect();
  }
}

async function valueOf(url: string, key: string): Promise<string | null> {
  const c = redisClient(url);
  try {
    return await c.get(key);
  } finally {
    c.disconnect();
  }
}

async function listOf(url: string, key = 'biglist'): Promise<{ len: number; first: string | null; last: string | null }> {
  const c = redisClient(url);
  try {
    const [len, first, last] = await Promise.all([c.llen(key), c.lindex(key, 0), c.lindex(key, -1)]);
    return { len, first, last };
  } finally {
    c.disconnect();
  }
}

describe('a command of 1,000,000 elements', () => {
  it('is applied whole and once: streamed, read from the middle of its series by a new group and by the group that applied it', async () => {
    const source = await server();
    // a big key in the snapshot too: its pieces (more than the applier's queue budget) follow records
    // that paused the partition before they were decoded
    const seed = redisClient(source.url);
    await seed.call('RPUSH', ['snaplist', ...Array.from({ length: ELEMENTS }, (_, i) => `item-${i}`)]);
    seed.disconnect();
    const names = pipelineNames();
    // one partition: the series' records are consecutive offsets the test can point into
    const capture = await runCapture(source.url, names, { dbs: [0], partitions: 1, noHeartbeat: true });
    cleanups.push(() => capture.stop());
    await until(() => capture.service.stats.state === 'synchronizing', 60_000, 'capture to finish its full sync');
    const topic = topicName(names.topicPrefix, names.sourceId, 0);

    const destA = await server();
    const groupA = uniqueName('g');
    let a: RunningApplier = await runApplier(destA.url, names, groupA);
    cleanups.push(() => a.stop());

    await until(async () => (await endOffset(topic)) > 0n, 30_000, 'the snapshot records');
    const before = await endOffset(topic);
    const src = redisClient(source.url);
    cleanups.push(async () => src.disconnect());
    await src.call('RPUSH', ['biglist', ...Array.from({ length: ELEMENTS }, (_, i) => `element-${i}`)]);
    await src.set('after', 'the big command');
    await until(async () => (await valueOf(destA.url, 'after')) === 'the big command', 120_000, 'the writes after the big command on destination A');
    const after = await endOffset(topic);
    const pieces = Number(after - before) - 1; // the last record holds the SET
    expect(pieces).toBeGreaterThan(10);
    expect(await listOf(destA.url)).toEqual({ len: ELEMENTS, first: 'element-0', last: `element-${ELEMENTS - 1}` });
    expect(await listOf(destA.url, 'snaplist')).toEqual({ len: ELEMENTS, first: 'item-0', last: `item-${ELEMENTS - 1}` });
    expect(a.applier.stats.discardedPieces).toBe(0);

    // A new group on an empty destination, started in the middle of the series.
    const middle = before + BigInt(Math.floor(pieces / 2));
    const destB = await server();
    const b = await runApplier(destB.url, names, uniqueName('g'), { from: `offset:0@${middle}` });
    cleanups.push(() => b.stop());
    await until(async () => (await valueOf(destB.url, 'after')) === 'the big command', 120_000, 'destination B');
    expect(await listOf(destB.url)).toEqual({ len: ELEMENTS, first: 'element-0', last: `element-${ELEMENTS - 1}` });
    expect(b.applier.stats.seriesRewinds).toBe(1);

    // The group that applied it, started again in the middle of the series: a replay.
    await a.stop();
    a = await runApplier(destA.url, names, groupA, { from: `offset:0@${middle}` });
    await src.set('after', 'again');
    await until(async () => (await valueOf(destA.url, 'after')) === 'again', 120_000, 'destination A after the restart');
    expect(await listOf(destA.url)).toEqual({ len: ELEMENTS, first: 'element-0', last: `element-${ELEMENTS - 1}` });
    expect(a.applier.stats.replayedPieces).toBeGreaterThan(0);
    expect(a.applier.stats.seriesRewinds).toBe(0);
    // the whole destination, not only the list: equal to the source, key by key
    expect((await waitConverged(source.url, destA.url, [0])).differences).toEqual([]);
  }, 300_000);

  it('a 100 MB string and a hash of 1,000,000 fields in one HSET travel whole, in the snapshot and streamed', async () => {
    const MB = 1024 * 1024;
    const big = Buffer.alloc(100 * MB);
    for (let i = 0; i < big.length; i += 4096) big.write(`block ${i} `, i, 'latin1'); // not one repeated byte
    const fields = (tag: string) => Array.from({ length: ELEMENTS }, (_, i) => [`f${i}`, `${tag}-${i}`]).flat();
    const source = await server();
    const seed = redisClient(source.url);
    await seed.set('snapstring', big);
    await seed.call('HSET', ['snaphash', ...fields('s')]);
    seed.disconnect();
    const names = pipelineNames();
    const capture = await runCapture(source.url, names, { dbs: [0], partitions: 2, noHeartbeat: true });
    cleanups.push(() => capture.stop());
    const dest = await server();
    const a = await runApplier(dest.url, names, uniqueName('g'));
    cleanups.push(() => a.stop());
    await until(() => capture.service.stats.state === 'synchronizing', 120_000, 'capture to finish its full sync');
    const src = redisClient(source.url);
    cleanups.push(async () => src.disconnect());
    await src.set('bigstring', big);
    await src.call('HSET', ['bighash', ...fields('v')]);
    await src.set('after', 'the big commands');
    const d = redisClient(dest.url);
    cleanups.push(async () => d.disconnect());
    // keys of different partitions: no order between them, so each is waited for
    await until(
      async () => (await d.get('after')) === 'the big commands' && (await d.strlen('bigstring')) === big.length && (await d.hlen('bighash')) === ELEMENTS,
      180_000,
      'the big commands and the write after them',
    );
    for (const k of ['snapstring', 'bigstring']) {
      expect(await d.strlen(k), k).toBe(big.length);
      expect((await d.getBuffer(k))!.equals(big), k).toBe(true);
    }
    for (const [k, tag] of [['snaphash', 's'], ['bighash', 'v']]) {
      expect(await d.hlen(k), k).toBe(ELEMENTS);
      expect(await d.hget(k, `f${ELEMENTS - 1}`), k).toBe(`${tag}-${ELEMENTS - 1}`);
    }
    expect((await waitConverged(source.url, dest.url, [0])).differences).toEqual([]);
  }, 300_000);
});
