/**
 * A Sentinel-managed source (redis+sentinel://…/mymaster): a master with one replica and one
 * redis-sentinel. The master is killed with SIGKILL; Sentinel promotes the replica; capture asks
 * Sentinel where the master is now and continues from the promoted replica by PSYNC with the old
 * replication id (the replica keeps it as master_replid2): no new snapshot. The destination ends
 * equal to the new master, counters exact. And when the promoted replica misses part of what
 * capture had read (asynchronous replication), the source answers with a full sync: a new epoch,
 * and the destination ends equal to the new master, the lost writes gone. Last, Sentinels that
 * require a password (source-sentinel-password) and a master frozen with SIGSTOP (its socket stays
 * open, nothing tells capture it is gone): capture moves when Sentinel announces +switch-master,
 * well before its source-timeout-ms would have dropped the silent link. And rediss+sentinel: the
 * Sentinel and both servers on TLS ports with a private CA, capture following a failover over TLS.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { pipelineNames, redisClient, runApplier, runCapture, until, waitConverged, syncStats } from '../../helpers/pipeline.js';
import { freePort, type RedisServer } from '../../helpers/redis-server.js';
import { uniqueName } from '../../helpers/stack-env.js';
import { startFaultProxy } from '../../helpers/fault-proxy.js';
import { configureConnections, resetConnections } from '../../../services/common/connection-settings.js';
import { certDir } from '../../helpers/tls-certs.js';
import { useTeardown } from '../../helpers/teardown.js';

const { cleanups, server } = useTeardown();

async function startSentinel(masterPort: number, requirepass?: string, extra: string[] = []): Promise<{ port: number; stop(): Promise<void> }> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'replistream-sentinel-'));
  const conf = join(dir, 'sentinel.conf');
  writeFileSync(
    conf,
    [
      `port ${port}`, 'bind 127.0.0.1', `dir ${dir}`, `logfile ${join(dir, 'sentinel.log')}`,
      `sentinel monitor mymaster 127.0.0.1 ${masterPort} 1`,
      'sentinel down-after-milliseconds mymaster 1000',
      'sentinel failover-timeout mymaster 3000',
      'sentinel parallel-syncs mymaster 1',
      ...(requirepass ? [`requirepass ${requirepass}`] : []), ...extra, '',
    ].join('\n'),
  );
  const child: ChildProcess = spawn('redis-sentinel', [conf], { stdio: 'ignore' });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  cleanups.push(stop);
  return { port, stop };
}

interface SentinelSetup {
  /** The master's configuration beyond what every test sets (TLS ports). */
  master?: Record<string, string>;
  /** How the replica reaches its master (replicaof and the like); by default the master's port. */
  replica?: (master: RedisServer) => Promise<Record<string, string>>;
  /** What the Sentinel monitors (by default the master's port), its password, further directives. */
  sentinel?: (master: RedisServer) => { monitorPort?: number; requirepass?: string; extra?: string[] };
}

/**
 * What every test here starts from: a master, its replica in sync, one Sentinel that has seen
 * that replica (only then can it fail over) and an empty destination, all stopped after the test;
 * `r` and `s` are clients of the replica and of the Sentinel.
 */
async function sentinelSource(setup: SentinelSetup = {}) {
  const repl = { 'repl-diskless-sync-delay': 0, 'repl-backlog-size': '16mb' };
  const master = await server({ ...setup.master, ...repl });
  const replicaOf = setup.replica ? await setup.replica(master) : { replicaof: `127.0.0.1 ${master.port}` };
  const replica = await server({ ...replicaOf, ...repl });
  const destination = await server();
  const r = redisClient(replica.url);
  cleanups.push(async () => r.disconnect());
  await until(async () => /master_link_status:up/.test(await r.info('replication')), 20_000, 'replica in sync');
  const how = setup.sentinel?.(master) ?? {};
  const sentinel = await startSentinel(how.monitorPort ?? master.port, how.requirepass, how.extra);
  const s = redisClient(`redis://${how.requirepass ? `:${how.requirepass}@` : ''}127.0.0.1:${sentinel.port}`);
  cleanups.push(async () => s.disconnect());
  // Sentinel learns the replica from the master's INFO: only then can it fail over.
  await until(async () => ((await s.call('SENTINEL', 'replicas', 'mymaster').catch(() => [])) as unknown[]).length > 0, 30_000, 'Sentinel sees the replica');
  return { master, replica, destination, r, s, sentinel };
}

/** Counters, a transaction and a multi-key write per round. */
/** After a failover: the destination equals the new master, the counter is exact, and no full sync was taken. */
async function expectFollowedWithoutFullSync(newMaster: string, destination: string, fullSyncsNow: () => number, fullSyncsBefore: number): Promise<void> {
  expect((await waitConverged(newMaster, destination, [0])).differences).toEqual([]);
  const d = redisClient(destination);
  try {
    expect(await d.get('counter')).toBe('300');
  } finally {
    d.disconnect();
  }
  expect(fullSyncsNow()).toBe(fullSyncsBefore);
}

async function workload(url: string, from: number, rounds: number): Promise<void> {
  const c = redisClient(url);
  try {
    for (let i = from; i < from + rounds; i++) {
      await c.incr('counter');
      await c.multi().incr('tx:counter').rpush('tx:list', String(i)).exec();
      await c.mset(`m:{x}${i % 30}`, String(i), `m:{y}${i % 30}`, String(-i));
    }
  } finally {
    c.disconnect();
  }
}

/**
 * Capture of the Sentinel-managed `url` and an applier into `destination`, then `rounds` of the
 * workload, converged on the destination and held by both replicas (the Redis one and capture:
 * WAIT), so that a failover starts from a position the promoted replica has. `m`: a master client.
 */
async function syncedThroughSentinel(url: string, master: RedisServer, destination: RedisServer, rounds: number) {
  const names = pipelineNames();
  const capture = await runCapture(url, names, { dbs: [0] });
  cleanups.push(() => capture.stop());
  const applier = await runApplier(destination.url, names, uniqueName('g'));
  cleanups.push(() => applier.stop());
  await workload(master.url, 0, rounds);
  expect((await waitConverged(master.url, destination.url, [0])).differences).toEqual([]);
  const m = redisClient(master.url);
  cleanups.push(async () => m.disconnect());
  await m.call('WAIT', 2, 5000);
  return { capture, m };
}

describe('Sentinel-managed source', () => {
  it('master killed, replica promoted: capture continues by PSYNC on the new master, destination equal', async () => {
    const { master, replica, destination, r, s, sentinel } = await sentinelSource();

    const m = redisClient(master.url);
    cleanups.push(async () => m.disconnect());
    // (not DEBUG POPULATE: it is not replicated)
    const fill = m.pipeline();
    for (let i = 0; i < 1000; i++) fill.set(`pre:${i}`, `value-${i}`);
    await fill.exec();
    // Both replicas (the Redis one and capture) hold every write before the master dies, so the
    // promoted replica's history covers capture's position: a continuation is possible.
    const { capture } = await syncedThroughSentinel(`redis+sentinel://127.0.0.1:${sentinel.port}/mymaster`, master, destination, 300);
    const fullSyncs = capture.service.stats.fullSyncs;
    const continues = capture.service.stats.continues;
    const before = await syncStats(replica.url);

    await master.stop(); // SIGKILL
    await until(async () => {
      const addr = (await s.call('SENTINEL', 'get-master-addr-by-name', 'mymaster').catch(() => null)) as [string, string] | null;
      return addr?.[1] === String(replica.port);
    }, 30_000, 'Sentinel promoting the replica');
    await until(async () => /role:master/.test(await r.info('replication')), 10_000, 'replica promoted');
    await workload(replica.url, 300, 300);
    await until(() => capture.service.stats.continues > continues, 30_000, 'capture continuing on the new master');

    const result = await waitConverged(replica.url, destination.url, [0]);
    expect(result.differences).toEqual([]);
    expect(result.compared).toBeGreaterThan(1000);
    const d = redisClient(destination.url);
    cleanups.push(async () => d.disconnect());
    expect(await d.get('counter')).toBe('600');
    expect(await d.get('tx:counter')).toBe('600');
    expect(await d.llen('tx:list')).toBe(600);
    const after = await syncStats(replica.url);
    expect(after.partialOk - before.partialOk).toBeGreaterThanOrEqual(1);
    expect(after.full - before.full).toBe(0);
    expect(capture.service.stats.fullSyncs).toBe(fullSyncs);
    expect(capture.status.task.state).toBe('synchronizing');
  });

  it('promoted replica without what capture had read: a new snapshot epoch, destination equal to the new master', async () => {
    // The replica reads its master through a proxy: black-holed, it misses writes capture gets.
    let link!: Awaited<ReturnType<typeof startFaultProxy>>;
    const { master, replica, destination, r, sentinel } = await sentinelSource({
      replica: async (m) => {
        link = await startFaultProxy(`127.0.0.1:${m.port}`);
        cleanups.push(() => link.close());
        return { replicaof: `127.0.0.1 ${link.port}` };
      },
    });

    const names = pipelineNames();
    const capture = await runCapture(`redis+sentinel://127.0.0.1:${sentinel.port}/mymaster`, names, { dbs: [0] });
    cleanups.push(() => capture.stop());
    const applier = await runApplier(destination.url, names, uniqueName('g'));
    cleanups.push(() => applier.stop());
    await workload(master.url, 0, 200);
    const m = redisClient(master.url);
    cleanups.push(async () => m.disconnect());
    await m.call('WAIT', 2, 5000);
    const epoch = capture.service.stats.epoch;
    const fullSyncs = capture.service.stats.fullSyncs;

    link.blackhole();
    for (let i = 0; i < 50; i++) await m.set(`lost:${i}`, 'only the old master and capture saw this');
    await until(() => capture.service.stats.durableOffset >= capture.service.stats.sourceOffset && capture.service.stats.sourceOffset > 0, 10_000, 'capture durable');
    expect((await waitConverged(master.url, destination.url, [0])).differences).toEqual([]); // lost:* reached the destination
    await master.stop(); // SIGKILL
    await until(async () => /role:master/.test(await r.info('replication')), 30_000, 'Sentinel promoting the replica');
    await workload(replica.url, 200, 100);

    await until(() => capture.service.stats.fullSyncs > fullSyncs && capture.status.task.state === 'synchronizing', 60_000, 'a new snapshot from the new master');
    expect(capture.service.stats.epoch).toBe(epoch + 1);
    const result = await waitConverged(replica.url, destination.url, [0]);
    expect(result.differences).toEqual([]); // the lost:* keys are gone from the destination too (G6)
    const d = redisClient(destination.url);
    cleanups.push(async () => d.disconnect());
    expect(await d.exists('lost:0', 'lost:49')).toBe(0);
    expect(await d.get('counter')).toBe('300');
    expect((await syncStats(replica.url)).full).toBeGreaterThanOrEqual(1);
  });

  it('Sentinels with a password, master frozen (SIGSTOP): capture moves on +switch-master, not on a timeout', async () => {
    const { master, replica, destination, s, sentinel } = await sentinelSource({ sentinel: () => ({ requirepass: 'sentinel-secret' }) });
    const url = `redis+sentinel://127.0.0.1:${sentinel.port}/mymaster`;

    // Without the Sentinels' password the start names the setting to set.
    configureConnections({ source: url });
    cleanups.push(async () => resetConnections());
    await expect(runCapture(url, pipelineNames(), { dbs: [0] })).rejects.toThrow(/source-sentinel-password/);

    configureConnections({ source: url, sourceSentinelPassword: 'sentinel-secret' });
    const { capture, m } = await syncedThroughSentinel(url, master, destination, 200); // source-timeout-ms: the default 60 s
    const continues = capture.service.stats.continues;
    const fullSyncs = capture.service.stats.fullSyncs;

    const pid = Number(/process_id:(\d+)/.exec(await m.info('server'))?.[1]);
    m.disconnect();
    process.kill(pid, 'SIGSTOP'); // no FIN, no RST: the link's socket stays open
    cleanups.push(async () => void process.kill(pid, 'SIGCONT'));
    await until(async () => {
      const addr = (await s.call('SENTINEL', 'get-master-addr-by-name', 'mymaster').catch(() => null)) as [string, string] | null;
      return addr?.[1] === String(replica.port);
    }, 30_000, 'Sentinel promoting the replica');
    const switchedAt = Date.now();
    await until(() => capture.service.stats.continues > continues, 15_000, 'capture continuing on the new master');
    const movedMs = Date.now() - switchedAt;
    console.log(`capture continued on the new master ${movedMs} ms after Sentinel switched (source-timeout-ms 60,000)`);
    expect(movedMs).toBeLessThan(10_000);

    await workload(replica.url, 200, 100);
    await expectFollowedWithoutFullSync(replica.url, destination.url, () => capture.service.stats.fullSyncs, fullSyncs);
  });

  it('rediss+sentinel: Sentinel and servers over TLS, master killed: capture follows over TLS by PSYNC', async () => {
    const certs = certDir();
    cleanups.push(async () => certs.remove());
    certs.ca('ca');
    certs.cert('ca', 'server');
    const tls = async () => ({ 'tls-port': String(await freePort()), 'tls-cert-file': certs.file('server.crt'), 'tls-key-file': certs.file('server.key'), 'tls-ca-cert-file': certs.file('ca.crt'), 'tls-auth-clients': 'no' });
    // the plain ports load data and let the test look; everything replistream does goes over TLS
    const masterTls = await tls();
    const sentinelTls = await freePort();
    const { master, replica, destination, r } = await sentinelSource({
      master: masterTls,
      replica: async () => ({ ...(await tls()), replicaof: `127.0.0.1 ${masterTls['tls-port']}`, 'tls-replication': 'yes' }),
      sentinel: () => ({
        monitorPort: Number(masterTls['tls-port']),
        extra: [
          `tls-port ${sentinelTls}`, `tls-cert-file ${certs.file('server.crt')}`, `tls-key-file ${certs.file('server.key')}`, `tls-ca-cert-file ${certs.file('ca.crt')}`,
          'tls-auth-clients no', 'tls-replication yes',
        ],
      }),
    });

    const url = `rediss+sentinel://127.0.0.1:${sentinelTls}/mymaster`;
    // Without the CA the Sentinels' certificate is not trusted: the start names the setting.
    configureConnections({ source: url });
    cleanups.push(async () => resetConnections());
    await expect(runCapture(url, pipelineNames(), { dbs: [0] })).rejects.toThrow(/source-tls-ca/);
    configureConnections({ source: url, sourceTlsCa: certs.file('ca.crt') });
    const { capture } = await syncedThroughSentinel(url, master, destination, 200);
    const continues = capture.service.stats.continues;
    const fullSyncs = capture.service.stats.fullSyncs;

    await master.stop(); // SIGKILL
    await until(async () => /role:master/.test(await r.info('replication')), 30_000, 'Sentinel promoting the replica');
    await workload(replica.url, 200, 100);
    await until(() => capture.service.stats.continues > continues, 30_000, 'capture continuing on the new master');
    await expectFollowedWithoutFullSync(replica.url, destination.url, () => capture.service.stats.fullSyncs, fullSyncs);
  });
});
