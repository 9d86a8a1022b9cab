/**
 * Slots of a cluster source move while capture is down (writes running). The restarted capture
 * resumes every master by PSYNC from its durable position, so both masters' streams replay the
 * move (the old owner's DELs, the new owner's RESTOREs); the slot owners stored with the epoch
 * make it hold back the new owner's writes and take one new epoch, and the destination ends equal
 * to the source with exact counters.
 */
import { describe, expect, it } from 'vitest';
import { runCapture, waitConverged, until } from '../helpers/pipeline.js';
import { clusterNodes, run, startClusterPipeline, startWriter } from '../helpers/redis-cluster.js';
import { useTeardown } from '../helpers/teardown.js';

const teardown = useTeardown({ after: 'all' });

describe('cluster source resharded while capture is down', () => {
  it('the restarted capture takes one epoch for the move; the destination equals the source', async () => {
    const pipeline = await startClusterPipeline(teardown);
    const { cluster, destination, names } = pipeline;
    let capture = pipeline.capture;
    expect((await waitConverged(cluster.nodes[0].url, destination.url, [0], 30_000)).differences).toEqual([]);

    await capture.stop();
    const writer = startWriter(cluster.nodes[0].port);
    await until(() => writer.writes() > 300, 10_000, 'writes running');
    const masters = (await clusterNodes(cluster.nodes[0].port)).filter((n) => n.master && n.slots > 0);
    await run('redis-cli', ['--cluster', 'reshard', `127.0.0.1:${masters[0].port}`, '--cluster-from', masters[0].id, '--cluster-to', masters[1].id, '--cluster-slots', '2000', '--cluster-yes', '--cluster-pipeline', '50']);
    const at = writer.writes();
    await until(() => writer.writes() > at + 300, 10_000, 'writes after the move');

    capture = pipeline.capture = await runCapture(cluster.nodes[0].url, names, { partitions: 2, dbs: [0] });
    const stats = () => capture.service.stats as unknown as { fullSyncs: number; continues: number; topology: { topologyEpochs: number } };
    await until(() => stats().continues === 3, 30_000, 'every master resumed by PSYNC');
    await until(() => stats().topology.topologyEpochs >= 1, 30_000, 'the move seen against the stored slot owners');
    await until(() => stats().fullSyncs >= 3, 30_000, 'the new epoch');
    await until(() => capture.service.stats.state === 'synchronizing', 30_000, 'new epoch captured');
    await writer.stop();
    const result = await waitConverged(cluster.nodes[0].url, destination.url, [0], 45_000);
    expect(result.differences).toEqual([]);
    expect(result.compared).toBeGreaterThan(500);
    expect(stats().topology.topologyEpochs).toBe(1);
    expect(stats().fullSyncs).toBe(3);
  }, 180_000);
});
