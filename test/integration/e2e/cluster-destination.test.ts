/**
 * A standalone source synchronized into a 3-master cluster destination (detected from the
 * server), in both write modes: the cluster ends equal to the source.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { fillEveryType, startCluster } from '../destination/helpers.js';
import { redisClient, runApplier, runCapture, pipelineNames, waitConverged } from '../../helpers/pipeline.js';
import { startRedis } from '../../helpers/redis-server.js';
import { uniqueName } from '../../helpers/stack-env.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

describe.each(['restore', 'commands'] as const)('cluster destination, write mode %s', (writeMode) => {
  it('full sync and same-slot multi-key commands land on the right masters', async () => {
    const source = await startRedis();
    cleanups.push(() => source.stop());
    const cluster = await startCluster(3);
    cleanups.push(() => cluster.stop());
    const src = redisClient(source.url);
    cleanups.push(async () => src.disconnect());
    await fillEveryType(src);
    const names = pipelineNames();
    const capture = await runCapture(source.url, names, { dbs: [0] });
    cleanups.push(() => capture.stop());
    const applier = await runApplier(cluster.url, names, uniqueName('g'), { writeMode });
    cleanups.push(() => applier.stop());
    for (let i = 0; i < 50; i++) {
      await src.incr(`{u${i}}:visits`);
      await src.rpush(`{u${i}}:log`, `e${i}`);
      await src.rename(`{u${i}}:log`, `{u${i}}:log2`); // multi-key, one slot
      await src.multi().set(`{u${i}}:a`, 'x').sadd(`{u${i}}:s`, 'm').exec();
    }
    const result = await waitConverged(source.url, cluster.url, [0]);
    expect(result.differences).toEqual([]);
    expect(result.compared).toBeGreaterThan(200);
  });
});
