/**
 * A Redis Cluster source (3 masters): one replication link per master, each in its own range of
 * partitions; the destination ends equal to the whole cluster.
 */
import { Cluster } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { startCluster } from '../destination/helpers.js';
import { runApplier, runCapture, pipelineNames, waitConverged, until } from '../../helpers/pipeline.js';
import { killAll, startService, waitForLog } from '../../helpers/processes.js';
import { startRedis } from '../../helpers/redis-server.js';
import { stack, uniqueName } from '../../helpers/stack-env.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

/** A private 3-master cluster source, a standalone destination and a cluster client of the source. */
async function clusterAndDestination() {
  const cluster = await startCluster(3);
  cleanups.push(() => cluster.stop());
  const destination = await startRedis();
  cleanups.push(() => destination.stop());
  const first = new URL(cluster.url);
  const src = new Cluster([{ host: first.hostname, port: Number(first.port) }], { redisOptions: { protocol: 2 } as never });
  cleanups.push(async () => src.disconnect());
  return { cluster, destination, src };
}

describe('cluster source', () => {
  it('full sync and incremental writes from every master reach the destination', async () => {
    const { cluster, destination, src } = await clusterAndDestination();
    for (let i = 0; i < 300; i++) await src.set(`k:${i}`, `v${i}`);
    for (let i = 0; i < 30; i++) await src.rpush(`{u${i}}:list`, 'a', 'b', String(i));

    const names = pipelineNames();
    const capture = await runCapture(cluster.url, names, { partitions: 2, dbs: [0] });
    cleanups.push(() => capture.stop());
    await until(() => capture.service.stats.state === 'synchronizing', 60_000, 'all masters synchronizing');
    expect(capture.service.stats.fullSyncs).toBe(3);
    const applier = await runApplier(destination.url, names, uniqueName('g'));
    cleanups.push(() => applier.stop());

    for (let i = 0; i < 300; i++) await src.incr(`ctr:${i % 40}`);
    for (let i = 0; i < 30; i++) {
      await src.rename(`{u${i}}:list`, `{u${i}}:list2`);
      await src.multi().lpush(`{u${i}}:list2`, 'x').incr(`{u${i}}:n`).exec();
    }
    const result = await waitConverged(cluster.url, destination.url, [0]);
    expect(result.differences).toEqual([]);
    expect(result.compared).toBeGreaterThan(350);
  });
});

describe('cluster source, one master overrun', () => {
  it('every master joins a new snapshot epoch; keys deleted meanwhile disappear', async () => {
    cleanups.push(() => killAll());
    const { cluster, destination, src } = await clusterAndDestination();
    for (let i = 0; i < 200; i++) await src.set(`old:${i}`, 'x');
    const names = pipelineNames();
    const args = ['capture', '--source', cluster.url, '--source-id', names.sourceId, '--topic-prefix', names.topicPrefix, '--partitions', '2'];
    let capture = startService(args);
    await until(() => (capture.log().match(/full sync captured/g) ?? []).length === 3, 60_000, 'three snapshots');
    const applier = await runApplier(destination.url, names, uniqueName('g'));
    cleanups.push(() => applier.stop());
    expect((await waitConverged(cluster.url, destination.url, [0])).differences).toEqual([]);

    await capture.kill9();
    for (const node of cluster.nodes) {
      const c = new (await import('ioredis')).Redis(node.url, { protocol: 2 } as never);
      await c.config('SET', 'repl-backlog-size', '16384');
      c.disconnect();
    }
    for (let i = 0; i < 200; i++) await src.del(`old:${i}`);
    await src.set('{filler}', 'y'.repeat(100_000)); // overruns the backlog of one master
    await src.set('new', 'z');
    capture = startService(args);
    await waitForLog(capture, /every master joins a new epoch/, 60_000);
    await until(() => (capture.log().match(/full sync captured/g) ?? []).length === 3, 60_000, 'three new snapshots');
    const result = await waitConverged(cluster.url, destination.url, [0]);
    expect(result.differences).toEqual([]);
  });
});

describe('cluster source, --dbs', () => {
  // Read-only on the stack's cluster: capture stops before anything is created.
  it.skipIf(stack().cluster.length === 0)('a db other than 0 is a configuration error (exit 2) saying a cluster has only db 0', async () => {
    cleanups.push(() => killAll());
    const names = pipelineNames();
    const p = startService(['capture', '--source', stack().cluster[0], '--source-id', names.sourceId, '--topic-prefix', names.topicPrefix, '--dbs', '0,1']);
    expect(await p.exited()).toBe(2);
    expect(p.log()).toMatch(/dbs: the source redis:\/\/127\.0\.0\.1:\d+\/? is a Redis Cluster, which has only database 0/);
  });
});
