/**
 * The applier loop (services/applier/applier.ts) with a writer and a consumer standing in for the
 * destination and Kafka: the order of writes and offset commits, how much one plan takes, and the
 * partition pause that bounds memory. (The barrier plan itself: barrier.test.ts; the real services
 * end to end: test/integration/e2e.)
 */
import { describe, expect, it } from 'vitest';
import { Applier, type Writer } from '../../../services/applier/applier.js';
import { ReplistreamError } from '../../../services/common/errors.js';
import { createLogger } from '../../../services/common/log.js';
import type { ChangeEvent, CommandEvent, SourcePosition } from '../../../services/events/model.js';
import type { WriterPosition } from '../../../services/destination/position.js';
import type { BatchContext, DecodedBatch, TopicPartitionOffset } from '../../../services/transport/consumer.js';

const logger = createLogger('silent', 'applier-test');
const pos = (offset: number, seq = 0): SourcePosition => ({ epoch: 1, offset, seq, replid: 'r'.repeat(40) });
const set = (offset: number, seq: number): ChangeEvent => ({
  kind: 'command',
  pos: pos(offset, seq),
  db: 0,
  commands: [[Buffer.from('SET'), Buffer.from(`k${offset}:${seq}`), Buffer.from('v')]],
  participants: [],
  piece: null,
});

/** `n` records of `perRecord` events each, from `first` on, for topic t partition `partition`. */
function batch(partition: number, first: number, n: number, perRecord: number, bytes = 100): DecodedBatch {
  const records = Array.from({ length: n }, (_, i) => {
    const offset = first + i;
    return { offset: String(offset), timestamp: '0', bytes, value: null, events: Array.from({ length: perRecord }, (_, s) => set(offset * 100_000 + partition * 10_000, s)) };
  });
  return { topic: 't', partition, highWatermark: String(first + n), records, lastOffset: String(first + n - 1) };
}

const ctx: BatchContext = { heartbeat: async () => undefined, isRunning: () => true, isStale: () => false, pause: () => () => undefined };

interface Log {
  writes: number[];
  commits: TopicPartitionOffset[][];
  paused: number[];
  resumed: number[];
  /** Order of what happened: `write:<events>`, `written`, `commit:<partition>@<offset>`. */
  order: string[];
  seeks: string[];
  /** Calls of the writer's storedPositions. */
  positionReads: number;
}

function harness(opts: { maxEventsPerPlan?: number; strictPlanSize?: boolean; maxQueuedBytes?: number; hold?: () => Promise<void>; stored?: WriterPosition | null; cluster?: boolean; commitIntervalMs?: number; remotePollIntervalMs?: number; explicitStarts?: number[]; makeWriter?: (log: Log) => Writer } = {}) {
  const log: Log = { writes: [], commits: [], paused: [], resumed: [], order: [], seeks: [], positionReads: 0 };
  const writer: Writer = opts.makeWriter?.(log) ?? {
    async applyStreams(segments) {
      const n = segments.reduce((k, s) => k + s.events.length, 0);
      log.writes.push(n);
      log.order.push(`write:${n}`);
      await opts.hold?.();
      log.order.push('written');
      return { applied: n, skipped: 0 };
    },
    appliedPosition: async () => null,
    storedPositions: async (streams) => {
      log.positionReads++;
      return new Map(streams.map((id) => [id, opts.stored ?? null]));
    },
  };
  const applier = new Applier({
    writer,
    consumer: {
      commit: async (offsets) => {
        log.commits.push(offsets);
        for (const o of offsets) log.order.push(`commit:${o.partition}@${o.offset}`);
      },
      pause: (_topic, partitions) => void log.paused.push(...(partitions ?? [])),
      resume: (_topic, partitions) => void log.resumed.push(...(partitions ?? [])),
      seek: (_topic, partition, offset) => void log.seeks.push(`${partition}@${offset}`),
      stop: async () => undefined,
    },
    cluster: opts.cluster,
    commitIntervalMs: opts.commitIntervalMs ?? 0,
    ...(opts.remotePollIntervalMs !== undefined ? { remotePollIntervalMs: opts.remotePollIntervalMs } : {}),
    explicitStarts: () => (opts.explicitStarts ?? []).map((partition) => ({ topic: 't', partition })),
    topicOfDb: () => 't',
    logger,
    maxEventsPerPlan: opts.maxEventsPerPlan,
    strictPlanSize: opts.strictPlanSize,
    maxQueuedBytes: opts.maxQueuedBytes,
  });
  return { applier, log };
}

/**
 * A writer like the destination's in what the applier relies on: calls run one after another, and
 * a call made with `unlessFailedSince` is refused when an earlier call failed since. `fail(k)`:
 * whether call k fails (after `hold(k)`). Logs `handed:k`, `written:k` and the events written.
 */
function queuedWriter(log: Log, hold: (k: number) => Promise<void>, fail: (k: number) => boolean, written: string[]): Writer {
  let calls = 0;
  let failures = 0;
  let lock: Promise<unknown> = Promise.resolve();
  return {
    applyStreams(segments, options) {
      const k = ++calls;
      const events = segments.flatMap((s) => s.events);
      log.writes.push(events.length);
      log.order.push(`handed:${k}`);
      const run = lock.then(async () => {
        if (options?.unlessFailedSince !== undefined && options.unlessFailedSince !== failures) {
          log.order.push(`refused:${k}`);
          throw new ReplistreamError('DESTINATION', 'refused', { retriable: true });
        }
        await hold(k);
        if (fail(k)) {
          failures++;
          log.order.push(`failed:${k}`);
          throw new ReplistreamError('DESTINATION', 'connection lost', { retriable: true });
        }
        for (const e of events) written.push(`${e.pos.offset}:${e.pos.seq}`);
        log.order.push(`written:${k}`);
        return { applied: events.length, skipped: 0 };
      });
      lock = run.catch(() => undefined);
      return run;
    },
    writeFailures: () => failures,
    appliedPosition: async () => null,
    storedPositions: async (streams) => new Map(streams.map((id) => [id, null])),
  };
}

async function until(check: () => boolean, ms = 2000): Promise<void> {
  for (const end = Date.now() + ms; !check(); ) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 2));
  }
}

describe('Applier', () => {
  it('commits a record\'s offset only after the write that holds its events', async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const { applier, log } = harness({ hold: () => held });
    applier.start();
    await applier.handle(batch(0, 0, 3, 10), ctx);
    await until(() => log.writes.length === 1);
    await new Promise((r) => setTimeout(r, 20));
    expect(log.commits).toEqual([]); // the write is still in flight
    release();
    await until(() => log.commits.length > 0);
    await applier.stop();
    expect(log.order.indexOf('written')).toBeLessThan(log.order.findIndex((o) => o.startsWith('commit:')));
    expect(log.commits.flat().at(-1)).toEqual({ topic: 't', partition: 0, offset: '3' }); // the next record to read
  });

  it('one plan takes every event decoded, however the records cut them (none waits for the next plan)', async () => {
    const { applier, log } = harness({ maxEventsPerPlan: 2000 });
    // 4 busy partitions share a plan's 2,000 events: 500 each, so each decodes one record of 1,000
    for (let p = 0; p < 4; p++) await applier.handle(batch(p, 0, 1, 1000), ctx);
    applier.start();
    await until(() => log.writes.reduce((a, b) => a + b, 0) === 4000);
    await applier.stop();
    expect(log.writes).toEqual([4000]);
  });

  it('with a strict plan size (a rate limit\'s), no plan passes it', async () => {
    const { applier, log } = harness({ maxEventsPerPlan: 500, strictPlanSize: true });
    for (let p = 0; p < 4; p++) await applier.handle(batch(p, 0, 1, 1000), ctx);
    applier.start();
    await until(() => log.writes.reduce((a, b) => a + b, 0) === 4000);
    await applier.stop();
    expect(Math.max(...log.writes)).toBe(500);
  });

  it('pauses a partition whose queued records pass the byte budget and resumes it once drained', async () => {
    const { applier, log } = harness({ maxQueuedBytes: 1000 });
    await applier.handle(batch(1, 0, 5, 10, 400), ctx); // 2,000 bytes queued
    expect(log.paused).toEqual([1]);
    applier.start();
    await until(() => log.resumed.length > 0);
    await until(() => log.writes.reduce((a, b) => a + b, 0) === 50);
    await applier.stop();
    expect(log.resumed).toEqual([1]);
  });

  it('records read again (a refetch after a seek or rebalance) are dropped, not applied twice', async () => {
    const { applier, log } = harness();
    applier.start();
    await applier.handle(batch(0, 0, 3, 10), ctx);
    await until(() => log.writes.reduce((a, b) => a + b, 0) === 30);
    await applier.handle(batch(0, 1, 3, 10), ctx); // offsets 1 and 2 again, then 3
    await until(() => log.writes.reduce((a, b) => a + b, 0) === 40);
    await applier.stop();
    expect(applier.stats.rereadRecords).toBe(2);
    expect(applier.stats.events).toBe(40);
  });

  it('a barrier waiting for another process does not cost a position read per plan while other partitions progress', async () => {
    const { applier, log } = harness({ maxEventsPerPlan: 10, strictPlanSize: true, remotePollIntervalMs: 60_000 });
    // partition 0: a unit owned by partition 9, which another process holds (never applied there)
    const unit: ChangeEvent = { ...(set(1, 0) as CommandEvent), participants: [{ db: 0, partition: 9 }, { db: 0, partition: 0 }] };
    await applier.handle({ topic: 't', partition: 0, highWatermark: '1', lastOffset: '0', records: [{ offset: '0', timestamp: '0', bytes: 100, value: null, events: [unit] }] }, ctx);
    await applier.handle(batch(1, 0, 100, 10), ctx); // 1,000 events: 100 plans of 10
    applier.start();
    await until(() => log.writes.reduce((a, b) => a + b, 0) >= 1001); // partition 0's arrival, then partition 1
    const reads = log.positionReads;
    await applier.stop();
    expect(applier.stats.remotePolls).toBeGreaterThan(0); // it does wait for the owner
    expect(reads).toBeLessThanOrEqual(3); // not one per plan (100)
  });

  it('commits at most once per commit interval, what the plans applied meanwhile together; stop commits at once', async () => {
    const { applier, log } = harness({ commitIntervalMs: 300 });
    applier.start();
    for (let i = 0; i < 5; i++) {
      await applier.handle(batch(0, i, 1, 10), ctx);
      await until(() => log.writes.reduce((a, b) => a + b, 0) === 10 * (i + 1));
    }
    // the first plan's commit went out at once; the next four wait for the interval
    expect(log.commits.flat()).toEqual([{ topic: 't', partition: 0, offset: '1' }]);
    await until(() => log.commits.length === 2, 1000);
    expect(log.commits[1]).toEqual([{ topic: 't', partition: 0, offset: '5' }]);
    await applier.handle(batch(0, 5, 1, 10), ctx);
    await until(() => log.writes.reduce((a, b) => a + b, 0) === 60);
    const t = Date.now();
    await applier.stop();
    expect(Date.now() - t).toBeLessThan(200);
    expect(log.commits.flat().at(-1)).toEqual({ topic: 't', partition: 0, offset: '6' });
  });

  describe('a newly assigned partition resumes at the offset stored with the destination\'s position', () => {
    // batch(0, …, 10): record o holds events at offset o*100000, seq 0..9; its last is seq 9
    const lastOf = (record: number): WriterPosition => ({ ...pos(record * 100_000, 9), part: 0 });
    const assign = (applier: Applier) => applier.setAssignment([{ topic: 't', partitions: [0] }]);
    /** The first records fetched of a partition that holds 10 (high watermark 10). */
    const head = (first: number, n: number): DecodedBatch => ({ ...batch(0, first, n, 10), highWatermark: '10' });

    it('drops the records before it unread (no re-read, no duplicate) and applies the rest', async () => {
      const { applier, log } = harness({ stored: { ...lastOf(6), resume: '7' } });
      assign(applier);
      applier.start();
      await applier.handle(batch(0, 2, 8, 10), ctx); // the commit says 2; records 2..6 are applied
      await until(() => log.writes.reduce((a, b) => a + b, 0) === 30);
      await applier.stop();
      expect(applier.stats).toMatchObject({ resumes: 1, resumeSkippedRecords: 5, rereadRecords: 0, events: 30 });
      expect(log.seeks).toEqual([]);
      expect(log.commits.flat().at(-1)).toEqual({ topic: 't', partition: 0, offset: '10' });
    });

    it('reads on to the record that proves the offset when it is past the first batch', async () => {
      const { applier, log } = harness({ stored: { ...lastOf(6), resume: '7' } });
      assign(applier);
      applier.start();
      await applier.handle(head(2, 3), ctx); // 2..4: record 6 is not in it
      expect(log.seeks).toEqual(['0@6']);
      await applier.handle(batch(0, 6, 4, 10), ctx); // after the seek: 6..9
      await until(() => log.writes.reduce((a, b) => a + b, 0) === 30);
      await applier.stop();
      expect(applier.stats).toMatchObject({ resumes: 1, resumeSkippedRecords: 5, events: 30 });
    });

    it('distrusts an offset whose record does not end with the stored position (a recreated topic): reads from the commit', async () => {
      const { applier, log } = harness({ stored: { ...lastOf(6), seq: 8, resume: '7' } });
      assign(applier);
      applier.start();
      await applier.handle(head(2, 3), ctx);
      expect(log.seeks).toEqual(['0@6']);
      await applier.handle(batch(0, 6, 4, 10), ctx); // record 6 ends with seq 9, not 8
      expect(log.seeks).toEqual(['0@6', '0@2']); // back to the commit
      await applier.handle(batch(0, 2, 8, 10), ctx);
      await until(() => log.writes.reduce((a, b) => a + b, 0) === 80);
      await applier.stop();
      expect(applier.stats).toMatchObject({ resumes: 0, resumeSkippedRecords: 0, events: 80 });
    });

    it('ignores an offset past the partition\'s end, and does not resume on a cluster destination nor where the operator chose the start', async () => {
      const stored = { ...lastOf(6), resume: '7' };
      for (const h of [harness({ stored: { ...stored, resume: '70' } }), harness({ stored, cluster: true }), harness({ stored, explicitStarts: [0] })]) {
        assign(h.applier);
        h.applier.start();
        await h.applier.handle(batch(0, 2, 8, 10), ctx);
        await until(() => h.log.writes.reduce((a, b) => a + b, 0) === 80);
        await h.applier.stop();
        expect(h.applier.stats.resumes).toBe(0);
        expect(h.log.seeks).toEqual([]);
      }
    });

    it('only on a new assignment: a partition kept across a rebalance is not checked again', async () => {
      const { applier, log } = harness({ stored: { ...lastOf(6), resume: '7' } });
      assign(applier);
      applier.start();
      await applier.handle(batch(0, 7, 1, 10), ctx);
      await until(() => log.writes.reduce((a, b) => a + b, 0) === 10);
      assign(applier);
      await applier.handle(batch(0, 8, 1, 10), ctx);
      await until(() => log.writes.reduce((a, b) => a + b, 0) === 20);
      await applier.stop();
      expect(applier.stats.resumes).toBe(0); // 7 is where the commit was
    });
  });
  it('hands the next plan over while the writer works on the one before; each plan\'s offsets are committed after its own write', async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const written: string[] = [];
    const { applier, log } = harness({ maxEventsPerPlan: 10, makeWriter: (l) => queuedWriter(l, (k) => (k === 1 ? held : Promise.resolve()), () => false, written) });
    await applier.handle(batch(0, 0, 3, 10), ctx);
    applier.start();
    await until(() => log.order.includes('handed:2'));
    await new Promise((r) => setTimeout(r, 20));
    expect(log.order).not.toContain('written:1');
    expect(log.commits).toEqual([]); // nothing is committed while the first plan is in flight
    release();
    await until(() => written.length === 30);
    await until(() => log.commits.flat().some((c) => c.offset === '3'));
    await applier.stop();
    expect(log.writes).toEqual([10, 10, 10]);
    // each commit follows the write of the records before it
    for (const c of log.commits.flat()) {
      const at = log.order.indexOf(`commit:0@${c.offset}`);
      expect(at).toBeGreaterThan(log.order.indexOf(`written:${Number(c.offset)}`));
    }
    expect(written).toEqual(Array.from({ length: 3 }, (_, r) => Array.from({ length: 10 }, (_, s) => `${r * 100_000}:${s}`)).flat());
  });

  it('when a plan fails, the plan handed over behind it is refused, and both are planned again from the queue: every event written once, in order', async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const written: string[] = [];
    const { applier, log } = harness({ maxEventsPerPlan: 10, makeWriter: (l) => queuedWriter(l, (k) => (k === 1 ? held : Promise.resolve()), (k) => k === 1, written) });
    await applier.handle(batch(0, 0, 3, 10), ctx);
    applier.start();
    await until(() => log.order.includes('handed:2'));
    release();
    await until(() => written.length === 30, 5000);
    await until(() => log.commits.flat().some((c) => c.offset === '3'));
    await applier.stop();
    expect(log.order.slice(0, 4)).toEqual(['handed:1', 'handed:2', 'failed:1', 'refused:2']);
    expect(applier.stats.retries).toBe(1);
    expect(written).toEqual(Array.from({ length: 3 }, (_, r) => Array.from({ length: 10 }, (_, s) => `${r * 100_000}:${s}`)).flat());
    expect(log.commits.flat().map((c) => c.offset)).not.toContain('0');
  });
});
