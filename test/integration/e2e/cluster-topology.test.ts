/**
 * A cluster source whose topology changes during incremental sync, writes running: slots resharded
 * between masters, a replica promoted by CLUSTER FAILOVER, a master killed (kill -9) and replaced
 * by its replica. After each, the destination equals the source key by key (INCR counters
 * included), the reshards were handed off between the masters' streams (no snapshot), and the
 * failovers were continued by PSYNC on the promoted node (sync_partial_ok), without a full resync
 * of anything.
 *
 * A private cluster of 3 masters + 3 replicas: the stack's cluster is shared by other tests.
 */
import { describe, expect, it } from 'vitest';
import { runCapture, waitConverged, until } from '../../helpers/pipeline.js';
import { addClusterMaster, clusterNodes, clusterOk, onNode, run, startClusterPipeline, startWriter, stat, type NodeInfo } from '../../helpers/redis-cluster.js';
import { Kafka } from 'kafkajs';
import { stack } from '../../helpers/stack-env.js';
import { topicName } from '../../../services/transport/topics.js';
import { useTeardown } from '../../helpers/teardown.js';

const teardown = useTeardown({ after: 'all' });

describe('cluster source topology changes during incremental sync', () => {
  it('follows a reshard, a CLUSTER FAILOVER and a master killed; the destination converges each time', async () => {
    // --- 3 masters + 3 replicas, capture and applier, initial full sync
    const pipeline = await startClusterPipeline(teardown);
    const { cluster, destination, names } = pipeline;
    const nodes = cluster.nodes;
    let capture = pipeline.capture;
    // read again each time: the stats are a fresh object per read
    const view = {
      get fullSyncs() {
        return capture.service.stats.fullSyncs;
      },
      get topology() {
        return (capture.service.stats as unknown as { topology: { failovers: number; continued: number; topologyEpochs: number; handOffs: number; lastHandOffRefused: string | null } }).topology;
      },
    };
    expect(view.fullSyncs).toBe(3);

    const liveNode = async () => {
      for (const n of nodes) if (await clusterOk(n.port).catch(() => false)) return n.port;
      throw new Error('no live node');
    };
    const converge = async (what: string) => {
      const port = await liveNode();
      const result = await waitConverged(`redis://127.0.0.1:${port}`, destination.url, [0], 45_000);
      expect(result.differences, what).toEqual([]);
      expect(result.compared, what).toBeGreaterThan(2000); // every key:* and ctr:* key
    };
    const sumOf = async (field: string) => {
      let n = 0;
      for (const node of nodes) n += await stat(node.port, field).then((v) => (Number.isFinite(v) ? v : 0), () => 0);
      return n;
    };

    // --- (a) reshard every slot of one master to another while writes run (its link stops), then
    // 1000 slots back to it (its link continues its stream): each a hand-off, no snapshot, no full
    // resync anywhere
    let emptied: NodeInfo;
    let taker: NodeInfo;
    const handOffsPassed = () => (pipeline.applier.applier.stats as { handOffsPassed: number }).handOffsPassed;
    {
      const fullBefore = await sumOf('sync_full');
      const before = await clusterNodes(nodes[0].port);
      const masters = before.filter((n) => n.master);
      [emptied, taker] = masters;
      const writer = startWriter(nodes[0].port);
      await until(() => writer.writes() > 200, 10_000, 'writes running');
      await run('redis-cli', ['--cluster', 'reshard', `127.0.0.1:${masters[0].port}`, '--cluster-from', masters[0].id, '--cluster-to', masters[1].id, '--cluster-slots', String(masters[0].slots), '--cluster-yes', '--cluster-pipeline', '50']);
      await until(() => view.topology.handOffs + view.topology.topologyEpochs >= 1, 20_000, 'the reshard seen');
      const at = writer.writes();
      await until(() => writer.writes() > at + 500, 20_000, 'writes after the hand-off');
      await writer.stop();
      await converge('after the reshard');
      expect(view.topology.lastHandOffRefused).toBeNull();
      expect(view.topology.handOffs).toBe(1);
      expect(view.topology.topologyEpochs).toBe(0);
      expect(view.fullSyncs).toBe(3);
      expect(await sumOf('sync_full')).toBe(fullBefore);
      expect(handOffsPassed()).toBeGreaterThanOrEqual(2); // the new owner's 2 partitions waited for the old owner's
      expect(capture.service.ready()).toBe(true); // a stopped link of a master without slots is no outage
    }
    {
      const fullBefore = await sumOf('sync_full');
      const writer = startWriter(nodes[0].port);
      await until(() => writer.writes() > 200, 10_000, 'writes running');
      await run('redis-cli', ['--cluster', 'reshard', `127.0.0.1:${taker.port}`, '--cluster-from', taker.id, '--cluster-to', emptied.id, '--cluster-slots', '1000', '--cluster-yes', '--cluster-pipeline', '50']);
      await until(() => view.topology.handOffs + view.topology.topologyEpochs >= 2, 20_000, 'the reshard back seen');
      const at = writer.writes();
      await until(() => writer.writes() > at + 500, 20_000, 'writes after the hand-off');
      await writer.stop();
      await converge('after the reshard back');
      expect(view.topology.lastHandOffRefused).toBeNull();
      expect(view.topology.handOffs).toBe(2);
      expect(view.topology.topologyEpochs).toBe(0);
      expect(view.fullSyncs).toBe(3);
      expect(await sumOf('sync_full')).toBe(fullBefore);
    }

    // --- (b) CLUSTER FAILOVER on a replica, writes running
    {
      const fullBefore = await sumOf('sync_full');
      const fullSyncsBefore = view.fullSyncs;
      const all = await clusterNodes(nodes[1].port);
      const replica = all.find((n) => !n.master && n.alive && all.find((m) => m.id === n.masterId)!.slots > 0)!;
      const writer = startWriter(nodes[1].port);
      await until(() => writer.writes() > 200, 10_000, 'writes running');
      await onNode(replica.port, (c) => c.call('CLUSTER', 'FAILOVER'));
      await until(async () => (await clusterNodes(replica.port)).find((n) => n.id === replica.id)!.master, 20_000, 'replica promoted');
      await until(() => view.topology.continued >= 1, 20_000, 'link moved to the promoted replica');
      await until(() => writer.writes() > 2000, 20_000, 'more writes after the failover');
      await writer.stop();
      await converge('after CLUSTER FAILOVER');
      expect(await stat(replica.port, 'sync_partial_ok')).toBeGreaterThanOrEqual(1);
      expect(await sumOf('sync_full')).toBe(fullBefore);
      expect(view.fullSyncs).toBe(fullSyncsBefore);
    }

    // --- (c) kill -9 a master; its replica takes over
    {
      const fullBefore = await sumOf('sync_full');
      const fullSyncsBefore = view.fullSyncs;
      const all = await clusterNodes(await liveNode());
      const victim = all.find((n) => n.master && n.alive && n.slots > 0 && all.some((r) => r.masterId === n.id && r.alive))!;
      const heir = all.find((r) => r.masterId === victim.id)!;
      const writer = startWriter(heir.port);
      await until(() => writer.writes() > 200, 10_000, 'writes running');
      await nodes.find((n) => n.port === victim.port)!.stop();
      await until(async () => (await clusterNodes(heir.port)).find((n) => n.id === heir.id)!.master, 30_000, 'replica elected');
      await until(() => view.topology.continued >= 2, 20_000, 'link moved to the elected replica');
      const at = writer.writes();
      await until(() => writer.writes() > at + 1000, 20_000, 'writes after the election');
      await writer.stop();
      await converge('after kill -9 of a master');
      expect(await stat(heir.port, 'sync_partial_ok')).toBeGreaterThanOrEqual(1);
      expect(await sumOf('sync_full')).toBeLessThanOrEqual(fullBefore); // the killed node's count is gone with it
      expect(view.fullSyncs).toBe(fullSyncsBefore);
    }

    // --- (d) capture restarted: every master continues its range by PSYNC (matched by history,
    // after failovers too), no snapshot
    {
      await capture.stop();
      capture = pipeline.capture = await runCapture(`redis://127.0.0.1:${await liveNode()}`, names, { partitions: 2, dbs: [0] });
      await until(() => capture.service.stats.state === 'synchronizing', 30_000, 'restarted capture synchronizing');
      expect(capture.service.stats.fullSyncs).toBe(0);
      expect(capture.service.stats.continues).toBe(3);
      const writer = startWriter(await liveNode());
      await until(() => writer.writes() > 500, 10_000, 'writes after the restart');
      await writer.stop();
      await converge('after a restart of capture');
    }

    // --- (e) a master added (add-node), then 1000 slots resharded to it, writes running: every
    // range of partitions is in use, so the topics grow by one range for it; it joins the current
    // epoch with its own (empty) snapshot, and the slots moved to it are handed off
    {
      const fullSyncsBefore = view.fullSyncs;
      const handOffsBefore = view.topology.handOffs;
      const writer = startWriter(await liveNode());
      await until(() => writer.writes() > 200, 10_000, 'writes running');
      // (masters the restarted capture saw at its first reading of the topology were there before
      // the task: only later ones count as added)
      await until(() => (view.topology as unknown as { readings: number }).readings >= 2, 10_000, 'the topology read since the restart');
      const added = await addClusterMaster(cluster);
      const masters = () => (capture.service.stats as unknown as { masters: Array<{ state: string }> }).masters;
      await until(() => masters().length === 4 && masters().every((m) => m.state === 'synchronizing'), 30_000, 'the new master followed').catch((err: Error) => {
        throw new Error(`${err.message}: masters ${JSON.stringify(masters().map((m) => m.state))}, topology ${JSON.stringify(view.topology)}`);
      });
      const giver = (await clusterNodes(await liveNode())).find((n) => n.master && n.alive && n.slots > 1000)!;
      await run('redis-cli', ['--cluster', 'reshard', `127.0.0.1:${giver.port}`, '--cluster-from', giver.id, '--cluster-to', added.id, '--cluster-slots', '1000', '--cluster-yes', '--cluster-pipeline', '50']);
      await until(() => view.topology.handOffs + view.topology.topologyEpochs > handOffsBefore, 20_000, 'the move to the new master seen');
      const at = writer.writes();
      await until(() => writer.writes() > at + 500, 20_000, 'writes after the move');
      await writer.stop();
      await converge('after a master was added and given slots');
      expect(view.topology.lastHandOffRefused).toBeNull();
      expect(view.topology.topologyEpochs).toBe(0);
      expect(view.fullSyncs).toBe(fullSyncsBefore + 1); // the new master's own, empty, snapshot
      expect(capture.service.ready()).toBe(true);
      const kadmin = new Kafka({ brokers: stack().kafka.split(','), logLevel: 0 }).admin();
      await kadmin.connect();
      try {
        const [meta] = (await kadmin.fetchTopicMetadata({ topics: [topicName(names.topicPrefix, names.sourceId, 0)] })).topics;
        expect(meta.partitions.length).toBe(4 * 2); // one range of 2 partitions per master
      } finally {
        await kadmin.disconnect();
      }
    }
  }, 210_000);
});
