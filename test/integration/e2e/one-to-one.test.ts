/**
 * End to end through the real stack: a source with every type, a capture, Kafka, one or three
 * appliers, a destination. The destination must end equal to the source (G1), value by value,
 * after the full sync and after a workload using every operation of the reference's list.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { fillEveryType } from '../destination/helpers.js';
import { redisClient, referenceWorkload, runApplier, runCapture, pipelineNames, waitConverged } from '../../helpers/pipeline.js';
import { startRedis, type RedisServer } from '../../helpers/redis-server.js';
import { uniqueName } from '../../helpers/stack-env.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

async function server(config: Record<string, string | number> = {}): Promise<RedisServer> {
  const s = await startRedis(config);
  cleanups.push(() => s.stop());
  return s;
}

// three appliers: split partitions (barriers across processes, through the destination's positions)
describe.each([1, 3])('one-to-one with %i applier(s)', (appliers) => {
  it('full sync then every reference operation: destination equals source', async () => {
    const source = await server({ 'repl-diskless-sync': appliers === 1 ? 'no' : 'yes', 'repl-diskless-sync-delay': 0 });
    const destination = await server();
    const src = redisClient(source.url);
    cleanups.push(async () => src.disconnect());
    await fillEveryType(src);
    await redisClient(source.url, 1).set('db1:key', 'one');
    await referenceWorkload(source.url, 0); // already there at snapshot time

    const names = pipelineNames();
    const capture = await runCapture(source.url, names);
    cleanups.push(() => capture.stop());
    const group = uniqueName('g');
    for (let i = 0; i < appliers; i++) {
      const a = await runApplier(destination.url, names, group, { assignment: appliers > 1 ? 'partition' : 'db' });
      cleanups.push(() => a.stop());
    }
    const afterSnapshot = await waitConverged(source.url, destination.url, [0, 1, 2]);
    expect(afterSnapshot.differences).toEqual([]);
    expect(afterSnapshot.compared).toBeGreaterThan(50);

    for (let round = 1; round <= 3; round++) await referenceWorkload(source.url, round);
    for (let i = 0; i < 200; i++) await src.incr('counter:exact');
    for (let i = 0; i < 200; i++) await src.lpush('list:nodup', String(i));
    const result = await waitConverged(source.url, destination.url, [0, 1, 2]);
    expect(result.differences).toEqual([]);
    const dst = redisClient(destination.url);
    cleanups.push(async () => dst.disconnect());
    expect(await dst.get('counter:exact')).toBe('200');
    expect(await dst.llen('list:nodup')).toBe(200);
    expect(capture.service.stats.fullSyncs).toBe(1);
  });
});

describe.each([
  ['typed', 'commands'],
  ['restore', 'restore'],
] as const)('snapshot format %s, write mode %s', (snapshotFormat, writeMode) => {
  it('every type arrives equal', async () => {
    const source = await server();
    const destination = await server();
    const src = redisClient(source.url);
    cleanups.push(async () => src.disconnect());
    await fillEveryType(src);
    const names = pipelineNames();
    const capture = await runCapture(source.url, names, { dbs: [0], snapshotFormat });
    cleanups.push(() => capture.stop());
    const a = await runApplier(destination.url, names, uniqueName('g'), { writeMode });
    cleanups.push(() => a.stop());
    await referenceWorkload(source.url, 1);
    const result = await waitConverged(source.url, destination.url, [0]);
    expect(result.differences).toEqual([]);
  });
});
