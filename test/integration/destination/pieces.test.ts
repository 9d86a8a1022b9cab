/**
 * Events split into Kafka-record pieces reach the destination through one assembler: the
 * applier's stream queue (services/applier/stream-queue.ts). These tests run the real `Applier`
 * and the real `DestinationWriter` against a Redis server, with the Kafka partition played by an
 * array of records (one piece per record, as capture writes them) and a consumer that records
 * commits and seeks — so they show the guarantees end to end without a broker:
 * - a series split across fetched batches is written whole, and no offset is committed past its
 *   first record while it is incomplete (a crash there re-reads the whole series);
 * - a piece read without its beginning: the partition is read again from the first piece's
 *   record when the destination has not applied the event, the piece is dropped as a replay when
 *   it has; read again without its beginning (the first records gone), the applier stops with an
 *   error naming the position — never a silent gap;
 * - a series cut short and re-sent whole (capture crashed mid-event) is discarded and counted.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { Applier } from '../../../services/applier/applier.js';
import type { DecodedRecord } from '../../../services/transport/consumer.js';
import type { ChangeEvent, SnapshotKey } from '../../../services/events/model.js';
import { verifyDatabases } from '../../../services/destination/verify.js';
import { client, quietLogger, type RedisServer, snapshotEvents, startRedis, writer } from './helpers.js';

const TOPIC = 't';

/** One Kafka partition as the applier sees it: what it committed and where it asked to seek. */
class FakePartition {
  commits: bigint[] = [];
  seeks: string[] = [];
  stopped: Error | null = null;
  readonly consumer = {
    commit: async (offsets: Array<{ offset: string }>) => {
      for (const o of offsets) this.commits.push(BigInt(o.offset));
    },
    pause: () => undefined,
    resume: () => undefined,
    seek: (_t: string, _p: number, offset: string) => void this.seeks.push(offset),
    stop: async (err?: Error) => void (this.stopped = err ?? null),
  };

  constructor(readonly records: DecodedRecord[]) {}

  get maxCommit(): bigint {
    return this.commits.reduce((a, b) => (b > a ? b : a), -1n);
  }

  /** Hands records [from, to) to the applier in batches of `size`, as kafkajs fetches them. */
  async deliver(a: Applier, from: number, to = this.records.length, size = 3): Promise<void> {
    const ctx = { heartbeat: async () => undefined, isRunning: () => true, isStale: () => false, pause: () => () => undefined };
    for (let i = from; i < to; i += size) {
      const records = this.records.slice(i, Math.min(i + size, to));
      await a.handle({ topic: TOPIC, partition: 0, highWatermark: String(this.records.length), records, lastOffset: records[records.length - 1].offset }, ctx);
    }
  }
}

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('record pieces through the applier (one assembler, strict rule)', () => {
  let source: RedisServer;
  let src: Redis;
  let evs: ChangeEvent[];
  let records: DecodedRecord[];
  /** Index (and offset) of the big key's first piece, and its number of pieces. */
  let first: number;
  let pieceCount: number;
  const dests: RedisServer[] = [];
  const running: Array<{ a: Applier; close: () => Promise<void> }> = [];

  beforeAll(async () => {
    source = await startRedis();
    src = client(source.url);
    await src.set('a-small', 'a');
    await src.rpush('big', ...Array.from({ length: 3000 }, (_, i) => `element-${i}`));
    await src.set('z-small', 'z');
    evs = await snapshotEvents(src, 0, { recordBytes: 4096 });
    const big = evs.filter((e): e is SnapshotKey => e.kind === 'snapshot-key' && e.key.toString() === 'big');
    first = evs.indexOf(big[0]);
    pieceCount = big.length;
    records = evs.map((e, i) => ({ offset: String(i), timestamp: '0', bytes: 4000, events: [e], value: null }));
  });
  afterAll(async () => {
    await Promise.all(running.map((r) => r.close()));
    src.disconnect();
    await Promise.all([source, ...dests].map((s) => s.stop()));
  });

  /** A fresh applier process: its own writer (nothing in memory) on `url`. */
  const applier = (url: string, part: FakePartition, mode: 'restore' | 'commands' = 'restore', explicitStart = false) => {
    const w = writer(url, { writeMode: mode });
    const a = new Applier({
      writer: w,
      consumer: part.consumer,
      topicOfDb: () => TOPIC,
      logger: quietLogger,
      commitIntervalMs: 0,
      // as with --from offset:…: read from where the operator said, not from the destination's position
      explicitStarts: () => (explicitStart ? [{ topic: TOPIC, partition: 0 }] : []),
    });
    a.setAssignment([{ topic: TOPIC, partitions: [0] }]);
    a.start();
    const r = { a, close: async () => void (await Promise.all([a.stop(), w.close()])) };
    running.push(r);
    return { a, w, crash: () => (running.splice(running.indexOf(r), 1), a.stop().then(() => w.disconnect())), close: r.close };
  };
  const dest = async () => {
    const d = await startRedis();
    dests.push(d);
    return d;
  };
  const equal = async (url: string) => (await verifyDatabases(source.url, url, [0], new Map())).differences;

  it('has a big key of many pieces between small keys', () => {
    expect(pieceCount).toBeGreaterThan(4);
    expect(first).toBeGreaterThan(1);
    expect(records.length).toBe(first + pieceCount + 2); // z-small and snapshot-end after it
  });

  for (const mode of ['restore', 'commands'] as const) {
    it(`a series split across batches: written whole, never committed past while incomplete; a crash inside it re-reads it (${mode})`, async () => {
      const d = await dest();
      const part = new FakePartition(records);
      const p1 = applier(d.url, part, mode);
      // fetched batches end inside the series
      await part.deliver(p1.a, 0, first + 2);
      await until('the keys before the series applied', async () => (await client(d.url).exists('a-small')) === 1 && part.maxCommit === BigInt(first));
      await new Promise((r) => setTimeout(r, 200));
      expect(await client(d.url).exists('big')).toBe(0); // nothing of the series written
      expect(part.maxCommit).toBe(BigInt(first)); // the resume point is the series' first record
      await p1.crash();
      // the restarted process reads from the committed offset: the series whole, in small batches
      const p2 = applier(d.url, part, mode);
      await part.deliver(p2.a, Number(part.maxCommit));
      await until('every record applied', () => part.maxCommit === BigInt(records.length));
      expect(await equal(d.url)).toEqual([]);
      expect(p2.a.stats).toMatchObject({ seriesRewinds: 0, replayedPieces: 0, discardedPieces: 0 });
      await p2.close();
    });
  }

  it('a piece without its beginning: read again from the first piece when not applied, dropped as a replay when applied', async () => {
    const d = await dest();
    const part = new FakePartition(records);
    const p1 = applier(d.url, part);
    await part.deliver(p1.a, 0, first);
    await until('the records before the series applied', () => part.maxCommit === BigInt(first));
    await p1.close();
    // a group started inside the series (e.g. --from offset:…): the event was not applied
    const p2 = applier(d.url, part, 'restore', true);
    await part.deliver(p2.a, first + 2);
    await until('a seek to the series\' first record', () => part.seeks.length > 0);
    expect(part.seeks).toEqual([String(first)]);
    expect(p2.a.stats.seriesRewinds).toBe(1);
    expect(part.maxCommit).toBeLessThanOrEqual(BigInt(first)); // never committed past the gap
    expect(await client(d.url).exists('big')).toBe(0);
    await part.deliver(p2.a, first);
    await until('every record applied', () => part.maxCommit === BigInt(records.length));
    expect(await equal(d.url)).toEqual([]);
    await p2.close();
    // once applied, the same start inside the series is a replay: dropped, no seek
    const replay = new FakePartition(records);
    const p3 = applier(d.url, replay, 'restore', true);
    await replay.deliver(p3.a, first + 2);
    await until('every record passed', () => replay.maxCommit === BigInt(records.length));
    expect(replay.seeks).toEqual([]);
    expect(p3.a.stats).toMatchObject({ seriesRewinds: 0, replayedPieces: pieceCount - 2 });
    expect(await equal(d.url)).toEqual([]);
    await p3.close();
    // the same start without an operator's choice (a commit left there): reading moves on to the
    // offset stored with the destination's position, after the record that proves it
    const resumed = new FakePartition(records);
    const p4 = applier(d.url, resumed);
    await resumed.deliver(p4.a, first + 2);
    await until('the commit at the end', () => resumed.maxCommit === BigInt(records.length));
    // (this fake partition goes on delivering after a seek, where kafkajs would drop those batches as stale)
    expect(new Set(resumed.seeks)).toEqual(new Set([String(records.length - 1)]));
    expect(p4.a.stats).toMatchObject({ seriesRewinds: 0, replayedPieces: 0, resumes: 1, events: 0 });
    await p4.close();
  });

  it('a piece still without its beginning after reading again (first records gone): the applier stops naming the position', async () => {
    const d = await dest();
    const part = new FakePartition(records);
    const p = applier(d.url, part);
    await part.deliver(p.a, first + 2);
    await until('a seek to the series\' first record', () => part.seeks.length > 0);
    // retention deleted the records before: reading from the seek gives the same middle again
    await part.deliver(p.a, first + 2);
    await until('the applier to stop', () => part.stopped !== null);
    expect(part.stopped!.message).toMatch(new RegExp(`t\\[0\\] offset ${first + 2}: piece 2 of the event at epoch 1 offset 1000 seq \\d+ was read again without the pieces before it.*first records are gone from the topic`));
    expect(part.maxCommit).toBeLessThanOrEqual(BigInt(first));
    expect(await client(d.url).exists('big')).toBe(0);
    await p.close();
  });

  it('a series cut short and re-sent whole (capture crashed mid-event) is discarded and counted', async () => {
    const d = await dest();
    const cut = [...evs.slice(0, first + 2), ...evs.slice(first)];
    const part = new FakePartition(cut.map((e, i) => ({ offset: String(i), timestamp: '0', bytes: 4000, events: [e], value: null })));
    const p = applier(d.url, part);
    await part.deliver(p.a, 0);
    await until('every record applied', () => part.maxCommit === BigInt(cut.length));
    expect(p.a.stats.discardedPieces).toBe(2);
    expect(await equal(d.url)).toEqual([]);
    await p.close();
  });
});
