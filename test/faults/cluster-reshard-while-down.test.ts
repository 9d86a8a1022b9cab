/**
 * Slots of a cluster source move while capture and the applier are down (writes running). The
 * restarted capture resumes every master by PSYNC from its durable position, so both masters'
 * streams replay the move (the old owner's DELs, the new owner's RESTOREs); the slot owners stored
 * in the positions topic make it hold the new owner's stream and hand the slots off (no snapshot).
 * The applier then starts on the whole backlog, the new owner's partitions first in its plans
 * (the slots go from the last master to the first): only the hand-off keeps the new owner's
 * RESTOREs behind the old owner's earlier writes and DELs. The destination ends equal to the
 * source with exact counters.
 */
import { describe, expect, it } from 'vitest';
import { runApplier, runCapture, waitConverged, until } from '../helpers/pipeline.js';
import { clusterNodes, run, startClusterPipeline, startWriter } from '../helpers/redis-cluster.js';
import { useTeardown } from '../helpers/teardown.js';

const teardown = useTeardown({ after: 'all' });

describe('cluster source resharded while capture is down', () => {
  it('the restarted capture hands the moved slots off without a snapshot; the destination equals the source', async () => {
    const pipeline = await startClusterPipeline(teardown);
    const { cluster, destination, names } = pipeline;
    let capture = pipeline.capture;
    expect((await waitConverged(cluster.nodes[0].url, destination.url, [0], 30_000)).differences).toEqual([]);

    await pipeline.applier.stop();
    await capture.stop();
    const writer = startWriter(cluster.nodes[0].port);
    await until(() => writer.writes() > 300, 10_000, 'writes running');
    const masters = (await clusterNodes(cluster.nodes[0].port)).filter((n) => n.master && n.slots > 0).sort((a, b) => a.firstSlot - b.firstSlot);
    const [to, from] = [masters[0], masters[masters.length - 1]];
    await run('redis-cli', ['--cluster', 'reshard', `127.0.0.1:${from.port}`, '--cluster-from', from.id, '--cluster-to', to.id, '--cluster-slots', '2000', '--cluster-yes', '--cluster-pipeline', '50']);
    const at = writer.writes();
    await until(() => writer.writes() > at + 300, 10_000, 'writes after the move');

    capture = pipeline.capture = await runCapture(cluster.nodes[0].url, names, { partitions: 2, dbs: [0] });
    const stats = () => capture.service.stats as unknown as { fullSyncs: number; continues: number; topology: { topologyEpochs: number; handOffs: number; lastHandOffRefused: string | null } };
    await until(() => stats().continues === 3, 30_000, 'every master resumed by PSYNC');
    await until(() => stats().topology.handOffs + stats().topology.topologyEpochs >= 1, 30_000, 'the move seen against the stored slot owners');
    const more = writer.writes();
    await until(() => writer.writes() > more + 300, 10_000, 'writes after the hand-off');
    await writer.stop();
    pipeline.applier = await runApplier(destination.url, names, pipeline.group);
    const result = await waitConverged(cluster.nodes[0].url, destination.url, [0], 45_000);
    expect(result.differences).toEqual([]);
    expect(result.compared).toBeGreaterThan(500);
    expect(stats().topology.lastHandOffRefused).toBeNull();
    expect(stats().topology.handOffs).toBe(1);
    expect(stats().topology.topologyEpochs).toBe(0);
    expect(stats().fullSyncs).toBe(0);
  }, 180_000);
});
