/**
 * A cluster source's master dies after sending capture writes its replica never got (the replica
 * was cut off from it), and that replica is elected. The promoted node's history lacks what
 * capture produced, so PSYNC must not continue there: capture takes a new snapshot epoch, and the
 * destination ends equal to the source as it is now, without the writes the source lost (G6).
 */
import { describe, expect, it } from 'vitest';
import { redisClient, waitConverged, until } from '../helpers/pipeline.js';
import { client, clusterNodes, clusterOk, onNode, startClusterPipeline, stat } from '../helpers/redis-cluster.js';
import { useTeardown } from '../helpers/teardown.js';

const teardown = useTeardown({ after: 'all' });
const { cleanups } = teardown;

describe('cluster source failover without continuation', () => {
  it('the elected replica lacks writes capture produced: a new epoch, the destination equals the source', async () => {
    const { cluster, destination, capture } = await startClusterPipeline(teardown);
    const stats = () => capture.service.stats as unknown as { fullSyncs: number; topology: { continued: number; topologyEpochs: number } };

    // the replica of one master is cut off: wrong credentials for its master, links dropped
    const all = await clusterNodes(cluster.nodes[0].port);
    const master = all.find((n) => n.master && n.slots > 0)!;
    const replica = all.find((n) => n.masterId === master.id)!;
    await onNode(replica.port, async (c) => {
      await c.config('SET', 'masteruser', 'nobody-here');
      await c.config('SET', 'masterauth', 'not-the-password');
    });
    await onNode(master.port, (c) => c.call('CLIENT', 'KILL', 'TYPE', 'replica') as Promise<unknown>); // capture's link comes back by PSYNC; the replica's cannot
    await until(async () => /master_link_status:down/.test(await onNode(replica.port, (c) => c.info('replication'))), 10_000, 'replica cut off');

    // writes only the master (and capture) see: a key of its own slots
    const direct = client(master.port);
    cleanups.push(async () => direct.disconnect());
    let lost = '';
    for (let i = 0; !lost; i++) {
      const ok = await direct.set(`{lost:${i}}`, 'only-on-the-dead-master').then(() => true, () => false); // MOVED: not its slot
      if (ok) lost = `{lost:${i}}`;
    }
    for (let i = 0; i < 50; i++) await direct.incr(`${lost}:n`); // same slot (hash tag)
    const dst = redisClient(destination.url);
    cleanups.push(async () => dst.disconnect());
    await until(async () => (await dst.get(lost)) !== null, 20_000, 'the write reached the destination');
    const fullSyncsBefore = stats().fullSyncs;

    // the master dies; its stale replica is elected
    await cluster.nodes.find((n) => n.port === master.port)!.stop();
    await until(async () => (await clusterNodes(replica.port)).find((n) => n.id === replica.id)!.master, 30_000, 'stale replica elected');
    await until(() => stats().topology.topologyEpochs >= 1, 20_000, 'a new epoch');
    await until(() => stats().fullSyncs >= fullSyncsBefore + 3, 30_000, 'every master in the new epoch');
    await until(() => capture.service.stats.state === 'synchronizing', 30_000, 'new epoch captured');
    expect(stats().topology.continued).toBe(0);

    const live = cluster.nodes.find((n) => n.port !== master.port)!;
    await until(() => clusterOk(live.port), 20_000, 'cluster ok');
    const result = await waitConverged(`redis://127.0.0.1:${live.port}`, destination.url, [0], 45_000);
    expect(result.differences).toEqual([]);
    expect(result.compared).toBeGreaterThan(500); // the seed writes: key:* and ctr:*
    expect(await dst.get(lost)).toBeNull(); // the source lost them with its master: so did the destination
    expect(await dst.get(`${lost}:n`)).toBeNull();
    expect(await stat(replica.port, 'sync_full')).toBeGreaterThanOrEqual(1); // the snapshot capture asked for
    expect(stats().fullSyncs).toBe(fullSyncsBefore + 3); // every master once, no more
  }, 180_000);
});
