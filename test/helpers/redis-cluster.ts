/**
 * A private Redis Cluster of masters with one replica each, for tests that reshard it, fail it
 * over or kill its nodes (the stack's cluster is shared by other tests), and small tools to look
 * at it and write to it.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Cluster, Redis } from 'ioredis';
import type { RunningApplier } from '../../services/applier/service.js';
import type { RunningCapture } from '../../services/capture/service.js';
import { pipelineNames, runApplier, runCapture, until, type PipelineNames } from './pipeline.js';
import { startRedis, type RedisServer } from './redis-server.js';
import { uniqueName } from './stack-env.js';
import type { Teardown } from './teardown.js';

export const run = promisify(execFile);

export function client(port: number): Redis {
  const c = new Redis({ host: '127.0.0.1', port, protocol: 2, maxRetriesPerRequest: 1, retryStrategy: () => null } as never);
  c.on('error', () => undefined);
  return c;
}

export async function onNode<T>(port: number, work: (c: Redis) => Promise<T>): Promise<T> {
  const c = client(port);
  try {
    return await work(c);
  } finally {
    c.disconnect();
  }
}

export interface NodeInfo {
  id: string;
  port: number;
  master: boolean;
  masterId: string | null;
  alive: boolean;
  /** Slots it serves. */
  slots: number;
  /** The lowest slot it serves (-1: none): capture numbers a cluster's masters in this order. */
  firstSlot: number;
}

export async function clusterNodes(port: number): Promise<NodeInfo[]> {
  const text = String(await onNode(port, (c) => c.call('CLUSTER', 'NODES') as Promise<unknown>));
  return text
    .trim()
    .split('\n')
    .map((l) => {
      const f = l.split(' ');
      const ranges = f.slice(8).filter((r) => !r.startsWith('[')).map((r) => r.split('-').map(Number));
      const slots = ranges.reduce((n, [a, b]) => n + (Number.isInteger(b) ? b - a + 1 : 1), 0);
      const firstSlot = ranges.length > 0 ? Math.min(...ranges.map(([a]) => a)) : -1;
      return { id: f[0], port: Number(f[1].split('@')[0].split(':')[1]), master: f[2].includes('master'), masterId: f[3] === '-' ? null : f[3], alive: !f[2].includes('fail'), slots, firstSlot };
    });
}

/** A numeric field of INFO (sync_full, sync_partial_ok …); NaN when absent. */
export async function stat(port: number, field: string): Promise<number> {
  const text = await onNode(port, (c) => c.info());
  return Number(new RegExp(`^${field}:(\\d+)`, 'm').exec(text)?.[1] ?? NaN);
}

export async function clusterOk(port: number): Promise<boolean> {
  return String(await onNode(port, (c) => (c.call('CLUSTER', 'INFO') as Promise<unknown>).catch(() => ''))).includes('cluster_state:ok');
}

/**
 * `masters` masters with a replica each, formed and in sync. A small node timeout makes failovers
 * quick; replicas may always be elected (validity factor 0); a master resharded empty stays a
 * master (no replica migration), so that slots can be moved back to it.
 */
export async function startReplicatedCluster(masters = 3): Promise<{ nodes: RedisServer[]; stop(): Promise<void> }> {
  const nodes: RedisServer[] = [];
  const stop = async () => void (await Promise.all(nodes.map((n) => n.stop())));
  try {
    for (let i = 0; i < masters * 2; i++) {
      nodes.push(await startRedis({ 'cluster-enabled': 'yes', 'cluster-node-timeout': 1000, 'repl-diskless-sync-delay': 0, 'cluster-replica-validity-factor': 0, 'cluster-allow-replica-migration': 'no' }));
    }
    await run('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '1', '--cluster-yes']);
    await until(async () => (await Promise.all(nodes.map((n) => clusterOk(n.port)))).every(Boolean), 30_000, 'cluster_state:ok');
    await until(async () => (await clusterNodes(nodes[0].port)).filter((n) => !n.master).length === masters, 30_000, 'every replica known');
    await until(async () => (await Promise.all(nodes.map((n) => onNode(n.port, (c) => c.info('replication'))))).every((t) => !/master_link_status:down/.test(t)), 30_000, 'replicas in sync');
  } catch (err) {
    await stop();
    throw err;
  }
  return { nodes, stop };
}

/** A new empty master joined to the cluster (`--cluster add-node`); stopped with the cluster. */
export async function addClusterMaster(cluster: { nodes: RedisServer[] }): Promise<NodeInfo> {
  const node = await startRedis({ 'cluster-enabled': 'yes', 'cluster-node-timeout': 1000, 'repl-diskless-sync-delay': 0, 'cluster-replica-validity-factor': 0, 'cluster-allow-replica-migration': 'no' });
  cluster.nodes.push(node);
  // a live node serving slots (a node killed earlier stays in the list, stopped)
  let seed: RedisServer | null = null;
  for (const n of cluster.nodes) if (n !== node && !seed && (await clusterOk(n.port).catch(() => false))) seed = n;
  if (!seed) throw new Error('no live node of the cluster');
  await run('redis-cli', ['--cluster', 'add-node', `127.0.0.1:${node.port}`, `127.0.0.1:${seed.port}`]);
  await until(() => clusterOk(node.port).catch(() => false), 30_000, 'cluster_state:ok on the new master');
  await until(async () => (await clusterNodes(seed.port)).some((n) => n.port === node.port && n.master), 30_000, 'the new master known');
  return (await clusterNodes(node.port)).find((n) => n.port === node.port)!;
}

/** INCRs and SETs through a cluster client until stopped; failed writes (during a failover) are retried later. */
export function startWriter(seedPort: number) {
  const src = new Cluster([{ host: '127.0.0.1', port: seedPort }], {
    redisOptions: { protocol: 2 } as never,
    retryDelayOnClusterDown: 100,
    retryDelayOnFailover: 100,
    maxRedirections: 32,
  });
  src.on('error', () => undefined);
  let stop = false;
  let writes = 0;
  const done = (async () => {
    for (let i = 0; !stop; i++) {
      const batch = Array.from({ length: 20 }, (_, j) => i * 20 + j);
      await Promise.all(
        batch.map((n) => (n % 3 === 0 ? src.set(`key:${n % 2000}`, `v${n}`) : src.incr(`ctr:${n % 200}`)).then(() => writes++, () => undefined)),
      );
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  return {
    writes: () => writes,
    async stop() {
      stop = true;
      await done;
      src.disconnect();
    },
  };
}

export interface ClusterPipeline {
  cluster: { nodes: RedisServer[]; stop(): Promise<void> };
  destination: RedisServer;
  names: PipelineNames;
  /** Replace it when the test restarts capture: the tear-down stops the one here then. */
  capture: RunningCapture;
  applier: RunningApplier;
  /** The applier's consumer group (a restarted applier joins it again). */
  group: string;
}

/**
 * The start of a cluster-source test: a replicated cluster of 3 masters with keys written through
 * a cluster client, a private standalone destination, capture of db 0 (2 partitions) until every
 * master is synchronizing, and an applier in a group of its own. Each is stopped by `teardown`.
 */
export async function startClusterPipeline(teardown: Teardown): Promise<ClusterPipeline> {
  const cluster = await startReplicatedCluster(3);
  teardown.cleanups.push(() => cluster.stop());
  const destination = await teardown.server();
  const seed = startWriter(cluster.nodes[0].port);
  await until(() => seed.writes() > 500, 20_000, 'first writes');
  await seed.stop();

  const names = pipelineNames();
  const capture = await runCapture(cluster.nodes[0].url, names, { partitions: 2, dbs: [0] });
  const pipeline = { cluster, destination, names, capture } as ClusterPipeline;
  teardown.cleanups.push(() => pipeline.capture.stop());
  await until(() => capture.service.stats.state === 'synchronizing', 60_000, 'all masters synchronizing');
  pipeline.group = uniqueName('g');
  pipeline.applier = await runApplier(destination.url, names, pipeline.group);
  teardown.cleanups.push(() => pipeline.applier.stop());
  return pipeline;
}
