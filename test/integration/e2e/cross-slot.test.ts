/**
 * Standalone source → the stack's 3-master cluster, through Kafka, with a workload made of
 * commands whose keys fall in different slots (every kind, and MULTI/EXEC units spanning slots),
 * in both write modes, the applier (a real process) `kill -9`'d mid-run and restarted: the
 * cluster ends equal to the source key by key, INCR counters exact, nothing skipped.
 *
 * The cluster is shared with other tests: keys live under a prefix of their own (verify compares
 * only those), the applier's conflict mode is `ignore` (the cluster is not empty), and the test
 * deletes what it wrote.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster } from 'ioredis';
import { redisClient, runCapture, pipelineNames, until, waitConverged } from '../../helpers/pipeline.js';
import { killAll, startService, type ServiceProcess } from '../../helpers/processes.js';
import { startRedis } from '../../helpers/redis-server.js';
import { stack, uniqueName } from '../../helpers/stack-env.js';
import { crossSlotUnits } from '../../helpers/cross-slot-workload.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  await killAll();
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

function clusterClient(url: string): Cluster {
  const u = new URL(url);
  const c = new Cluster([{ host: u.hostname, port: Number(u.port) }], { redisOptions: { protocol: 2 } as never });
  c.on('error', () => undefined);
  return c;
}

/** Deletes the keys matching `pattern` on every master of the shared cluster. */
async function deleteKeys(cluster: Cluster, pattern: string): Promise<void> {
  await Promise.all(
    cluster.nodes('master').map(async (node) => {
      let cursor = '0';
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
        cursor = next;
        if (keys.length) await node.pipeline(keys.map((k) => ['unlink', k])).exec(); // one by one: the keys of a page are in many slots
      } while (cursor !== '0');
    }),
  );
}

describe.each(['restore', 'commands'] as const)('cross-slot commands into the stack cluster, write mode %s', (writeMode) => {
  it('destination equals source with the applier kill -9ed mid-run; counters exact', async () => {
    const clusterUrl = stack().cluster[0];
    expect(clusterUrl, 'REPLISTREAM_CLUSTER (npm run stack -- env)').toBeTruthy();
    const prefix = `${uniqueName('xs')}:`;
    const group = uniqueName('g');
    const cluster = clusterClient(clusterUrl);
    cleanups.push(async () => {
      await deleteKeys(cluster, `${prefix}*`);
      await deleteKeys(cluster, `replistream:pos:${group}*`);
      cluster.disconnect();
    });
    const source = await startRedis();
    cleanups.push(() => source.stop());
    const src = redisClient(source.url);
    cleanups.push(async () => src.disconnect());

    // a snapshot with keys the stream will rename, move and merge across slots
    const run = async (units: Array<Array<Array<string | number>>>) => {
      for (const u of units) {
        const m = src.multi();
        for (const c of u) m.call(String(c[0]), ...c.slice(1).map(String));
        await m.exec();
      }
    };
    await run(crossSlotUnits(`${prefix}snap:`, Date.now()));

    const names = pipelineNames();
    const capture = await runCapture(source.url, names, { dbs: [0] });
    cleanups.push(() => capture.stop());
    const applier = (): ServiceProcess =>
      startService([
        'apply', '--destination', clusterUrl, '--group', group, '--source-id', names.sourceId, '--topic-prefix', names.topicPrefix,
        '--write-mode', writeMode, '--conflict-mode', 'ignore',
      ]);
    let app = applier();

    const rounds = 20;
    const counters = 5;
    const t0 = Date.now();
    let restarted: () => void = () => undefined;
    const afterRestart = new Promise<void>((res) => (restarted = res));
    const workload = (async () => {
      for (let r = 0; r < rounds; r++) {
        if (r === rounds / 2) await afterRestart; // the second half is written while the applier restarts and catches up
        await run(crossSlotUnits(`${prefix}r${r}:`, Date.now()));
        // counters, also moved across slots inside units: a lost or doubled command shows in their values
        await run([
          [['INCR', `${prefix}ctr:${r % counters}`]],
          [['INCR', `${prefix}ctr:all`], ['RENAME', `${prefix}ctr:all`, `${prefix}ctr:moved`], ['RENAME', `${prefix}ctr:moved`, `${prefix}ctr:all`], ['INCR', `${prefix}ctr:all`]],
        ]);
        await new Promise((res) => setTimeout(res, 100));
      }
    })();
    // kill -9 once the applier is writing the stream, while the source keeps going
    await until(async () => (await cluster.exists(`${prefix}ctr:all`)) > 0, 60_000, 'the applier writing the stream');
    await app.kill9();
    const killedAt = Date.now() - t0;
    app = applier();
    restarted();
    await workload;
    const wroteIn = Date.now() - t0;

    const result = await waitConverged(source.url, clusterUrl, [0], 60_000, new Map(), { onlyPrefix: prefix });
    console.log(`write mode ${writeMode}: applier killed at ${killedAt} ms, source done at ${wroteIn} ms, converged at ${Date.now() - t0} ms`);
    expect(result.differences).toEqual([]);
    expect(result.compared).toBeGreaterThan(rounds * 50);
    expect(await cluster.get(`${prefix}ctr:all`)).toBe(String(2 * rounds));
    for (let i = 0; i < counters; i++) expect(await cluster.get(`${prefix}ctr:${i}`)).toBe(String(rounds / counters));
    expect(app.log()).not.toMatch(/skipped .* refused by the destination/);
  }, 120_000);
});
