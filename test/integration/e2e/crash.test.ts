/**
 * G4/G5: `kill -9` of capture or appliers (real processes of the CLI) during full and incremental
 * sync. The destination still ends equal to the source, with non-idempotent commands (INCR,
 * LPUSH, APPEND) in the workload and lists in the snapshot; a restarted capture continues by
 * PSYNC (+CONTINUE, counted by the source's own `sync_partial_ok`) instead of a new full sync.
 */
import { describe, expect, it } from 'vitest';
import { readAllEvents, redisClient, runApplier, runCapture, pipelineNames, waitConverged, until, type PipelineNames, syncStats, counterWorkload } from '../../helpers/pipeline.js';
import { startService, waitForLog, type ServiceProcess } from '../../helpers/processes.js';
import { startRedis } from '../../helpers/redis-server.js';
import { uniqueName } from '../../helpers/stack-env.js';
import { useTeardown } from '../../helpers/teardown.js';

const { cleanups, server } = useTeardown({ serverDefaults: { 'repl-backlog-size': '64mb' } });

function captureProcess(source: string, names: PipelineNames): ServiceProcess {
  return startService(['capture', '--source', source, '--source-id', names.sourceId, '--topic-prefix', names.topicPrefix, '--dbs', '0,1', '--partitions', '4']);
}

function applierProcess(destination: string, names: PipelineNames, group: string): ServiceProcess {
  return startService(['apply', '--destination', destination, '--group', group, '--source-id', names.sourceId, '--topic-prefix', names.topicPrefix]);
}

async function fill(url: string, keys: number): Promise<void> {
  const c = redisClient(url);
  await c.call('DEBUG', 'POPULATE', keys, 'pop', 32);
  for (let l = 0; l < 20; l++) await c.rpush(`snaplist:${l}`, ...Array.from({ length: 500 }, (_, i) => `item${i}`));
  c.disconnect();
}

describe('kill -9', () => {
  it('capture killed during incremental sync resumes with +CONTINUE; destination equals source', async () => {
    const source = await server();
    const destination = await server();
    await fill(source.url, 20_000);
    const names = pipelineNames();
    let capture = captureProcess(source.url, names);
    await waitForLog(capture, /full sync captured/);
    const applier = await runApplier(destination.url, names, uniqueName('g'));
    cleanups.push(() => applier.stop());

    const w = counterWorkload(source.url, 3000, 1);
    for (let round = 0; round < 3; round++) {
      await new Promise((r) => setTimeout(r, 300 + Math.random() * 700));
      const before = await syncStats(source.url);
      await capture.kill9();
      await new Promise((r) => setTimeout(r, 200));
      capture = captureProcess(source.url, names);
      await waitForLog(capture, /source continued the stream \(\+CONTINUE\)/);
      const after = await syncStats(source.url);
      expect(after.full).toBe(before.full); // no new full sync
      expect(after.partialOk).toBe(before.partialOk + 1);
      expect(capture.log()).toMatch(/resuming from the durable position/);
    }
    await w.done;
    const result = await waitConverged(source.url, destination.url, [0, 1]);
    expect(result.differences).toEqual([]);
    const dst = redisClient(destination.url);
    expect(await dst.get('tx:a')).toBe(String(2 * 60));
    expect(await dst.llen('lst:0')).toBe(600);
    dst.disconnect();

    // By position: across the restarts every INCR of the workload is on the topics (no gap), a
    // re-sent one carries the position it had (a duplicate, recognisable), and within a
    // partition positions only go back right after a restart, to a point already produced.
    const events = await readAllEvents(names, [0, 1]);
    const incrs = events.filter((e) => e.event.kind === 'command' && e.event.commands.some((c) => c[0].toString().toLowerCase() === 'incr' && c[1].toString().startsWith('ctr:')));
    const distinct = new Set(incrs.map((e) => `${e.event.pos.epoch}:${e.event.pos.offset}`));
    expect(distinct.size).toBe(3000);
    expect(incrs.length).toBeGreaterThanOrEqual(3000);
    const byPartition = new Map<string, number[]>();
    for (const e of events) if (e.event.kind === 'command') byPartition.set(`${e.db}:${e.partition}`, [...(byPartition.get(`${e.db}:${e.partition}`) ?? []), e.event.pos.offset]);
    for (const offsets of byPartition.values()) {
      const seen = new Set<number>();
      let max = -1;
      for (const o of offsets) {
        if (o < max) expect(seen.has(o)).toBe(true); // a step back only re-sends what was produced
        seen.add(o);
        max = Math.max(max, o);
      }
    }
  });

  it('capture killed during its full sync starts a new one (new epoch); destination equals source', async () => {
    const source = await server();
    const destination = await server();
    await fill(source.url, 40_000);
    // The source writes its snapshot slowly (50 µs a key: 2 s for these keys), so the kill lands
    // inside the full sync whatever the machine's speed, without a big dataset to wait for.
    const src = redisClient(source.url);
    cleanups.push(async () => src.disconnect());
    await src.config('SET', 'rdb-key-save-delay', '50');
    const names = pipelineNames();
    let capture = captureProcess(source.url, names);
    await waitForLog(capture, /full sync started/);
    await new Promise((r) => setTimeout(r, 400));
    expect(capture.log()).not.toMatch(/full sync captured/);
    await capture.kill9();
    await src.config('SET', 'rdb-key-save-delay', '0');
    const w = counterWorkload(source.url, 500);
    capture = captureProcess(source.url, names);
    await waitForLog(capture, /previous full sync did not complete/);
    const app = await runApplier(destination.url, names, uniqueName('g'));
    cleanups.push(() => app.stop());
    await waitForLog(capture, /full sync captured/, 120_000);
    await w.done;
    const result = await waitConverged(source.url, destination.url, [0, 1], 120_000);
    expect(result.differences).toEqual([]);
  });

  it('appliers killed at random moments during full and incremental sync never lose nor double', async () => {
    const source = await server();
    const destination = await server();
    await fill(source.url, 100_000);
    const names = pipelineNames();
    const capture = await runCapture(source.url, names, { dbs: [0, 1] });
    cleanups.push(() => capture.stop());
    const group = uniqueName('g');
    const w = counterWorkload(source.url, 4000, 1);
    let appliers = [applierProcess(destination.url, names, group), applierProcess(destination.url, names, group)];
    for (let round = 0; round < 4; round++) {
      await new Promise((r) => setTimeout(r, 1500 + Math.random() * 2500));
      const victim = Math.floor(Math.random() * appliers.length);
      await appliers[victim].kill9();
      appliers[victim] = applierProcess(destination.url, names, group);
    }
    await w.done;
    await until(() => capture.service.stats.durableOffset > 0, 30_000, 'capture durable');
    const result = await waitConverged(source.url, destination.url, [0, 1], 150_000);
    expect(result.differences).toEqual([]);
    const dst = redisClient(destination.url);
    expect(await dst.get('tx:a')).toBe(String(2 * 80));
    expect(await dst.llen('snaplist:3')).toBe(500);
    expect(await dst.llen('lst:1')).toBe(800);
    dst.disconnect();
  });
});

describe('full resync (G6)', () => {
  it('after a backlog overrun the new snapshot replaces the old one, deleted keys included', async () => {
    const source = await startRedis({ 'repl-backlog-size': '16kb' });
    cleanups.push(() => source.stop());
    const destination = await server();
    const src = redisClient(source.url);
    cleanups.push(async () => src.disconnect());
    for (let i = 0; i < 500; i++) await src.set(`old:${i}`, 'x');
    await src.rpush('keeps', 'a', 'b');
    const names = pipelineNames();
    let capture = captureProcess(source.url, names);
    await waitForLog(capture, /full sync captured/);
    const applier = await runApplier(destination.url, names, uniqueName('g'));
    cleanups.push(() => applier.stop());
    expect((await waitConverged(source.url, destination.url, [0, 1])).differences).toEqual([]);

    await capture.kill9();
    const before = await syncStats(source.url);
    for (let i = 0; i < 500; i++) await src.del(`old:${i}`); // deleted while nobody listens
    await src.set('filler', 'y'.repeat(100_000)); // more than the backlog holds
    await src.set('new-key', 'z');
    capture = captureProcess(source.url, names);
    await waitForLog(capture, /full sync captured/);
    expect((await syncStats(source.url)).full).toBe(before.full + 1);
    const result = await waitConverged(source.url, destination.url, [0, 1]);
    expect(result.differences).toEqual([]);
    const dst = redisClient(destination.url);
    expect(await dst.exists('old:1')).toBe(0);
    expect(await dst.lrange('keeps', 0, -1)).toEqual(['a', 'b']);
    dst.disconnect();
  });
});
