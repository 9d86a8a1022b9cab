/**
 * Cascade A → B → C: an applier writes B, a capture reads B, another applier writes C, both hops
 * through the same Kafka cluster (so with two group names: a consumer group's name is one per
 * Kafka cluster; see README, cascades). C must equal A, and nothing
 * of replistream's bookkeeping on B (positions, epoch markers, heartbeat keys) may travel to C,
 * nor turn B's applier transactions into units over several databases. The one key carried on
 * purpose is the origin key (A's heartbeat time as it reached B): C's applier reports from it the
 * lag from A, end to end.
 */
import { describe, expect, it } from 'vitest';
import { readAllEvents, until, redisClient, referenceWorkload, runApplier, runCapture, pipelineNames, waitConverged } from '../../helpers/pipeline.js';
import { uniqueName } from '../../helpers/stack-env.js';
import { CROSS_DB } from '../../../services/capture/command-keys.js';
import { startKafkaBroker } from '../../helpers/kafka-broker.js';
import { useTeardown } from '../../helpers/teardown.js';
import { formatTask } from '../../../services/commands/status.js';

const { cleanups, server } = useTeardown({ serverDefaults: { 'repl-backlog-size': '64mb' } });

const DBS = [0, 1, 2];
const HEARTBEAT = 'REPLISTREAM_TIMESTAMP_HEARTBEAT';

/** Transactions over two dbs' keys, multi-key commands and counters, `rounds` times. */
async function mixedWorkload(url: string, rounds: number): Promise<void> {
  const c0 = redisClient(url, 0);
  const c1 = redisClient(url, 1);
  try {
    for (let i = 0; i < rounds; i++) {
      await c0.multi().incr('tx:counter').set(`tx:k${i % 50}`, `v${i}`).lpush('tx:list', String(i)).exec();
      await c1.multi().incr('db1:counter').hincrby('db1:h', `f${i % 7}`, 1).exec();
      await c0.mset(`m:{a}${i % 20}`, String(i), `m:{b}${i % 20}`, String(-i));
      if (i % 10 === 0) {
        await c0.set(`rn:${i}`, 'x');
        await c0.rename(`rn:${i}`, `rn2:${i}`);
        await c0.sadd('s:a', String(i));
        await c0.sunionstore('s:u', 's:a', 's:b');
      }
      await c0.incrby('plain:counter', 3);
    }
  } finally {
    c0.disconnect();
    c1.disconnect();
  }
}

describe('cascade', () => {
  it('A → B → C under a workload: C equals A, no bookkeeping of B reaches C', async () => {
    const [a, b, c] = [await server(), await server(), await server()];
    const src = redisClient(a.url);
    cleanups.push(async () => src.disconnect());
    // A heartbeat key left on A by an earlier capture: the snapshot must not carry it to B.
    await src.set(HEARTBEAT, '1');
    await src.call('DEBUG', 'POPULATE', 2000, 'pre', 16);
    await referenceWorkload(a.url, 0);

    const hop1 = pipelineNames();
    const hop2 = { ...pipelineNames(), sourceId: 'b' };
    const group1 = uniqueName('hop1');
    const group = uniqueName('hop2');
    const cap1 = await runCapture(a.url, hop1, { dbs: DBS });
    cleanups.push(() => cap1.stop());
    const app1 = await runApplier(b.url, hop1, group1);
    cleanups.push(() => app1.stop());
    expect((await waitConverged(a.url, b.url, DBS)).differences).toEqual([]);
    const db0 = redisClient(b.url);
    expect(await db0.exists(HEARTBEAT)).toBe(0); // not copied by the full sync
    db0.disconnect();

    // B's capture starts while B holds the applier's positions and markers, then follows it.
    const cap2 = await runCapture(b.url, hop2, { dbs: DBS });
    cleanups.push(() => cap2.stop());
    const app2 = await runApplier(c.url, hop2, group);
    cleanups.push(() => app2.stop());
    await until(() => cap2.status.task.state === 'synchronizing', 60_000, "B's capture synchronizing");
    // C's applier's lag from A, sampled every 200 ms while the workload runs
    type Origin = { sourceId: string; ms: number } | null;
    const originOf = (app: typeof app2) => app.status.body().originLag as Origin;
    const samples: Array<{ origin: number; hop: number }> = [];
    const sampler = setInterval(() => {
      const o = originOf(app2);
      const hop = app2.writer.lagMs();
      if (o && hop !== null) samples.push({ origin: o.ms, hop });
    }, 200);
    cleanups.push(async () => clearInterval(sampler));
    await Promise.all([mixedWorkload(a.url, 400), referenceWorkload(a.url, 1)]);

    const result = await waitConverged(a.url, c.url, DBS, 90_000);
    expect(result.differences).toEqual([]);
    expect(result.compared).toBeGreaterThan(2000);
    const dc = redisClient(c.url);
    const dc1 = redisClient(c.url, 1);
    cleanups.push(async () => { dc.disconnect(); dc1.disconnect(); });
    expect(await dc.get('tx:counter')).toBe('400');
    // the reference workload's SWAPDB 1 2 (twice) runs meanwhile: the counter's INCRs land in db 1 or 2
    const dc2 = redisClient(c.url, 2);
    expect(Number(await dc1.get('db1:counter')) + Number(await dc2.get('db1:counter'))).toBe(400);
    dc2.disconnect();
    expect(await dc.get('plain:counter')).toBe('1200');

    // End-to-end lag: C's applier names A (hop 1's source id) and measures from A's heartbeats.
    // It is at least C's own hop lag, less one heartbeat period (A's and B's heartbeats tick apart),
    // and a few seconds at most on an idle local stack.
    await until(() => originOf(app2) !== null, 10_000, "C's applier reporting the lag from A");
    clearInterval(sampler);
    const origin = originOf(app2)!;
    expect(origin.sourceId).toBe(hop1.sourceId);
    expect(origin.ms).toBeLessThan(5000);
    expect(origin.ms).toBeGreaterThanOrEqual((app2.writer.lagMs() ?? 0) - 1500);
    expect(samples.length).toBeGreaterThan(0);
    for (const x of samples) expect(x.origin, JSON.stringify(x)).toBeGreaterThanOrEqual(x.hop - 1500);
    const sorted = (xs: number[]) => [...xs].sort((p, q) => p - q);
    const pct = (xs: number[], p: number) => sorted(xs)[Math.min(xs.length - 1, Math.floor(xs.length * p))];
    const o = samples.map((x) => x.origin);
    const h = samples.map((x) => x.hop);
    console.log(`cascade lag while writing (${samples.length} samples): A→C median ${pct(o, 0.5)} ms, p95 ${pct(o, 0.95)} ms, max ${pct(o, 1)} ms; hop B→C median ${pct(h, 0.5)} ms, p95 ${pct(h, 0.95)} ms`);
    expect(originOf(app1)).toBeNull(); // hop 1 reads from the origin itself
    // the same figure in replistream status and as a metric
    expect(formatTask('synchronizing', [app2.status.body()], ['http://c'], false)).toMatch(new RegExp(`lag from origin ms +\\d+ \\(source ${hop1.sourceId}\\)`));
    expect(await app2.status.metrics.metrics()).toMatch(new RegExp(`replistream_applier_origin_lag_seconds\\{origin="${hop1.sourceId}"[^}]*\\} \\d`));
    expect(await app1.status.metrics.metrics()).not.toMatch(/replistream_applier_origin_lag_seconds\{/);
    expect(app2.status.body().originLag).toBeTruthy();
    // the origin key: kept on B by hop 1's applier, carried to C; C's applier adds none of its own
    const ob = redisClient(b.url);
    expect(Number(await ob.get(`replistream:origin:${hop1.sourceId}`))).toBeGreaterThan(0);
    ob.disconnect();
    expect(Number(await dc.get(`replistream:origin:${hop1.sourceId}`))).toBeGreaterThan(0);
    expect(await dc.exists(`replistream:origin:${hop2.sourceId}`)).toBe(0);

    // Nothing of B's bookkeeping on C: C's replistream keys are its own applier's (hop 2 streams,
    // its epoch markers), and no heartbeat key in any db.
    for (const db of DBS) {
      const cl = redisClient(c.url, db);
      const keys = (await cl.keys('*')).filter((k) => (k.startsWith('replistream:') && !k.startsWith('replistream:origin:')) || k === HEARTBEAT);
      cl.disconnect();
      for (const k of keys) expect(k.startsWith(`replistream:pos:${group}:${hop2.topicPrefix}.`) || k.startsWith(`replistream:pos:${group}:@epoch:`), k).toBe(true);
      expect(keys).not.toContain(HEARTBEAT);
    }
    // And B's capture produced none: no event names an own key, no unit spans databases.
    const events = await readAllEvents(hop2, DBS);
    const originKey = `replistream:origin:${hop1.sourceId}`;
    const own = (k: Buffer) => (k.toString('latin1').startsWith('replistream:') && k.toString() !== originKey) || k.toString() === HEARTBEAT;
    let commands = 0;
    for (const { event } of events) {
      if (event.kind === 'snapshot-key') expect(own(event.key), event.key.toString()).toBe(false);
      if (event.kind !== 'command') continue;
      commands++;
      for (const args of event.commands) expect(args.slice(1).some(own), args.map(String).join(' ').slice(0, 200)).toBe(false);
      // SWAPDB, MOVE, COPY … DB of the workload span databases by themselves
      if (!event.commands.some((args) => CROSS_DB.has(args[0].toString().toLowerCase()))) {
        expect(new Set(event.participants.map((p) => p.db)).size, event.commands.map((x) => x.map(String).join(' ')).join('; ').slice(0, 300)).toBeLessThanOrEqual(1);
      }
    }
    expect(commands).toBeGreaterThan(0);
    // Hop 1 went on applying meanwhile: B equals A too.
    expect((await waitConverged(a.url, b.url, DBS)).differences).toEqual([]);
  });

  it('one group name on both hops, each hop on its own Kafka cluster: no collision on C', async () => {
    const broker = await startKafkaBroker();
    cleanups.push(() => broker.stop());
    const [a, b, c] = [await server(), await server(), await server()];
    await referenceWorkload(a.url, 0);
    const hop1 = pipelineNames();
    const hop2 = { ...pipelineNames(), sourceId: 'b' };
    const group = uniqueName('same'); // the same name on both hops: position keys and epoch markers named alike on B and C
    const cap1 = await runCapture(a.url, hop1, { dbs: DBS });
    cleanups.push(() => cap1.stop());
    const app1 = await runApplier(b.url, hop1, group);
    cleanups.push(() => app1.stop());
    const cap2 = await runCapture(b.url, hop2, { dbs: DBS, kafka: broker.brokers });
    cleanups.push(() => cap2.stop());
    const app2 = await runApplier(c.url, hop2, group, { kafka: broker.brokers });
    cleanups.push(() => app2.stop());
    await until(() => cap2.status.task.state === 'synchronizing', 60_000, "B's capture synchronizing");
    await Promise.all([mixedWorkload(a.url, 200), referenceWorkload(a.url, 1)]);
    expect((await waitConverged(a.url, c.url, DBS, 90_000)).differences).toEqual([]);
    const dc = redisClient(c.url);
    cleanups.push(async () => dc.disconnect());
    expect(await dc.get('tx:counter')).toBe('200');
    // C's epoch markers are its own applier's (hop 2's epoch), not B's copied over
    let markers = 0;
    for (const db of DBS) {
      const marker = await dc.get(`replistream:pos:${group}:@epoch:db${db}`);
      if (marker === null) continue;
      markers++;
      expect(Number(marker)).toBe(cap2.service.stats.epoch);
    }
    expect(markers).toBeGreaterThan(0);
    const streams = (await dc.keys(`replistream:pos:${group}:*`)).filter((k) => !k.includes(':@'));
    expect(streams.length).toBeGreaterThan(0);
    for (const k of streams) expect(k.startsWith(`replistream:pos:${group}:${hop2.topicPrefix}.`), k).toBe(true);
  });
});
