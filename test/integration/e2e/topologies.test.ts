/**
 * One-to-many (two destinations, two groups, one stopped for a while and catching up), replay
 * of an empty third destination from the latest snapshot, and cascade (A → B → C).
 */
import { describe, expect, it } from 'vitest';
import { redisClient, referenceWorkload, runApplier, runCapture, pipelineNames, waitConverged } from '../../helpers/pipeline.js';
import { uniqueName } from '../../helpers/stack-env.js';
import { useTeardown } from '../../helpers/teardown.js';

const { cleanups, server } = useTeardown({ serverDefaults: { 'repl-backlog-size': '64mb' } });

describe('topologies', () => {
  it('one-to-many: two groups, one paused and catching up; then a replay from the latest snapshot', async () => {
    const source = await server();
    const [destA, destB, destC] = [await server(), await server(), await server()];
    const src = redisClient(source.url);
    cleanups.push(async () => src.disconnect());
    await src.call('DEBUG', 'POPULATE', 5000, 'k', 20);
    await referenceWorkload(source.url, 0);
    const names = pipelineNames();
    const capture = await runCapture(source.url, names, { dbs: [0, 1, 2] });
    cleanups.push(() => capture.stop());
    const a = await runApplier(destA.url, names, uniqueName('ga'));
    cleanups.push(() => a.stop());
    let b = await runApplier(destB.url, names, uniqueName('gb'));
    const groupB = b.consumer.groupId;
    expect((await waitConverged(source.url, destA.url, [0, 1, 2])).differences).toEqual([]);
    expect((await waitConverged(source.url, destB.url, [0, 1, 2])).differences).toEqual([]);

    await b.stop(); // group B stops for a while
    for (let r = 1; r <= 3; r++) await referenceWorkload(source.url, r);
    for (let i = 0; i < 300; i++) await src.incr('while-b-was-away');
    expect((await waitConverged(source.url, destA.url, [0, 1, 2])).differences).toEqual([]);
    b = await runApplier(destB.url, names, groupB);
    cleanups.push(() => b.stop());
    expect((await waitConverged(source.url, destB.url, [0, 1, 2])).differences).toEqual([]);

    // Replay: an empty destination and a new group reading from the latest snapshot.
    const c = await runApplier(destC.url, names, uniqueName('gc'), { from: 'latest-snapshot' });
    cleanups.push(() => c.stop());
    expect((await waitConverged(source.url, destC.url, [0, 1, 2])).differences).toEqual([]);
    const dc = redisClient(destC.url);
    expect(await dc.get('while-b-was-away')).toBe('300');
    dc.disconnect();
  });

  it('cascade: A → Kafka → B, and B → Kafka → C', async () => {
    const a = await server();
    const b = await server();
    const c = await server();
    const src = redisClient(a.url);
    cleanups.push(async () => src.disconnect());
    await referenceWorkload(a.url, 0);
    const n1 = pipelineNames();
    const n2 = { ...pipelineNames(), sourceId: 's2' };
    const cap1 = await runCapture(a.url, n1, { dbs: [0, 1, 2] });
    cleanups.push(() => cap1.stop());
    const app1 = await runApplier(b.url, n1, uniqueName('g1'));
    cleanups.push(() => app1.stop());
    // B's own heartbeat key would differ from A's: the second hop does not write one.
    const cap2 = await runCapture(b.url, n2, { dbs: [0, 1, 2], noHeartbeat: true });
    cleanups.push(() => cap2.stop());
    const app2 = await runApplier(c.url, n2, uniqueName('g2'));
    cleanups.push(() => app2.stop());
    await referenceWorkload(a.url, 1);
    expect((await waitConverged(a.url, c.url, [0, 1, 2])).differences).toEqual([]);
  });
});
