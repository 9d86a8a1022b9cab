/**
 * The replication link goes half-open (a proxy between capture and the source forwards nothing
 * and sends no RST) during the full sync and during streaming. Capture notices the silence after
 * source-timeout-ms, makes the link again once the network is back (PSYNC: +CONTINUE while
 * streaming, a new snapshot when the cut fell inside one), and the destination ends equal to the
 * source with exact counters.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configureConnections, resetConnections } from '../../services/common/connection-settings.js';
import { pipelineNames, runApplier, runCapture, waitConverged, until, syncStats } from '../helpers/pipeline.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { uniqueName } from '../helpers/stack-env.js';
import { cleanUpAfterEach, cleanups, expectExactCounters, fill, server, sleep, workload } from './helpers.js';

cleanUpAfterEach();
// Silence of 3 s drops the link (source-timeout-ms, 60 s by default); the sources below PING
// their replica every second so that a healthy idle link is never silent that long.
beforeAll(() => void configureConnections({ sourceTimeoutMs: 3000 }));
afterAll(() => resetConnections());

const SOURCE = { 'repl-ping-replica-period': 1, 'repl-diskless-sync-delay': 0 };

describe('source link black-holed (half-open, no RST)', () => {
  it('while streaming: dropped after the timeout, resumed by PSYNC (+CONTINUE), converges with exact counters', async () => {
    const source = await server(SOURCE);
    const destination = await server();
    const proxy = await startFaultProxy(`127.0.0.1:${source.port}`);
    cleanups.push(() => proxy.close());
    await fill(source.url, 2000);
    const names = pipelineNames();
    const capture = await runCapture(proxy.url(source.url), names, { dbs: [0] });
    cleanups.push(() => capture.stop());
    cleanups.push(() => proxy.restore());
    await until(() => capture.service.stats.state === 'synchronizing', 60_000, 'full sync captured');
    const applier = await runApplier(destination.url, names, uniqueName('g'));
    cleanups.push(() => applier.stop());

    const ops = 3000;
    const w = workload(source.url, ops, 2);
    await until(() => capture.service.stats.commands > 300, 30_000, 'commands streaming');
    const before = await syncStats(source.url);
    const continues = capture.service.stats.continues;
    proxy.blackhole();
    await sleep(7000); // the 3 s timeout, and reconnect attempts that meet the black hole too
    expect(capture.service.stats.state).not.toBe('failed');
    await proxy.restore();
    await until(() => capture.service.stats.continues > continues, 30_000, '+CONTINUE after the black hole');

    await w.done;
    const result = await waitConverged(source.url, destination.url, [0], 120_000);
    expect(result.differences).toEqual([]);
    await expectExactCounters(destination.url, ops);
    const after = await syncStats(source.url);
    expect(after.full).toBe(before.full); // no new snapshot
    expect(after.partialOk).toBeGreaterThan(before.partialOk);
  });

  it('during the full sync: the snapshot is dropped and taken again, converges with exact counters', async () => {
    const source = await server(SOURCE);
    const destination = await server();
    const proxy = await startFaultProxy(`127.0.0.1:${source.port}`);
    cleanups.push(() => proxy.close());
    await fill(source.url, 100_000);
    const names = pipelineNames();
    const before = await syncStats(source.url);
    // the snapshot (about 4 MB) crawls at 300 KB/s: the black hole surely falls inside it
    proxy.throttle(300_000);
    const capture = await runCapture(proxy.url(source.url), names, { dbs: [0] });
    cleanups.push(() => capture.stop());
    cleanups.push(() => proxy.restore());
    await until(() => capture.service.stats.snapshotBytes > 0, 60_000, 'the snapshot transfer started');
    expect(capture.service.stats.state).toBe('full-sync');
    const ops = 1000;
    const w = workload(source.url, ops, 1);
    proxy.blackhole();
    await sleep(6000);
    expect(capture.service.stats.state).not.toBe('failed');
    await proxy.restore();
    const applier = await runApplier(destination.url, names, uniqueName('g'));
    cleanups.push(() => applier.stop());
    await until(() => capture.service.stats.state === 'synchronizing', 120_000, 'the new full sync captured');

    await w.done;
    const result = await waitConverged(source.url, destination.url, [0], 150_000);
    expect(result.differences).toEqual([]);
    await expectExactCounters(destination.url, ops);
    expect((await syncStats(source.url)).full).toBeGreaterThanOrEqual(before.full + 2); // the cut snapshot and the new one
  });
});
