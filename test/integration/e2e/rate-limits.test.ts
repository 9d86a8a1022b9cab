/**
 * Rate limits against the real stack: an applier's full sync throttled by max-ops-per-second
 * writes at the limit (measured as keys counted at the destination over a window, within 10 %),
 * capture's snapshot read throttled by snapshot-max-bytes-per-second reads at its limit, and both
 * limits shown in /status and `replistream status`, and changed at run time through POST /limits
 * and `replistream limits`.
 */
import { describe, expect, it } from 'vitest';
import { pipelineNames, redisClient, runApplier, runCapture, until, waitConverged, postTo, statusOf } from '../../helpers/pipeline.js';
import { runCli } from '../../helpers/processes.js';
import { freePort } from '../../helpers/redis-server.js';
import { uniqueName } from '../../helpers/stack-env.js';
import { useTeardown } from '../../helpers/teardown.js';

const { cleanups, server } = useTeardown();

async function fill(url: string, keys: number, valueBytes: number): Promise<void> {
  const c = redisClient(url);
  for (let i = 0; i < keys; i += 1000) {
    const args: string[] = [];
    // distinct values: the RDB carries them as they are (no run of one letter compressed away)
    for (let j = i; j < Math.min(keys, i + 1000); j++) args.push(`key:${j}`, `${j}:`.padEnd(valueBytes, String.fromCharCode(97 + (j % 26))));
    await c.mset(...args);
  }
  c.disconnect();
}

/**
 * Samples `read` every 50 ms until it reaches `total`; the rate is measured between the samples
 * that first pass 10 % and 90 % of it (start-up and the last plan left out).
 */
async function measureRate(read: () => Promise<number> | number, total: number, timeoutMs: number): Promise<{ rate: number; seconds: number; samples: number }> {
  const samples: Array<[number, number]> = [];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const n = await read();
    samples.push([performance.now(), n]);
    if (n >= total) break;
    if (Date.now() > deadline) throw new Error(`only ${n} of ${total} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const from = samples.find(([, n]) => n >= total * 0.1)!;
  const to = samples.find(([, n]) => n >= total * 0.9)!;
  const seconds = (to[0] - from[0]) / 1000;
  return { rate: (to[1] - from[1]) / seconds, seconds, samples: samples.length };
}

/**
 * A source of `keys` keys of 32 bytes captured to the end of its full sync, and an applier
 * throttled to `maxOpsPerSecond` writing them to an empty destination, its HTTP port on `port`;
 * `dst` is a client of that destination.
 */
async function throttledApplier(keys: number, maxOpsPerSecond: number) {
  const source = await server();
  const destination = await server();
  await fill(source.url, keys, 32);
  const names = pipelineNames();
  const capture = await runCapture(source.url, names, { dbs: [0] });
  cleanups.push(() => capture.stop());
  await until(() => capture.service.stats.state === 'synchronizing', 60_000, 'capture synchronizing');

  const port = await freePort();
  const applier = await runApplier(destination.url, names, uniqueName('g'), { httpPort: port, maxOpsPerSecond });
  cleanups.push(() => applier.stop());
  const dst = redisClient(destination.url);
  cleanups.push(async () => void dst.disconnect());
  return { source, destination, port, dst };
}

describe('rate limits', () => {
  it('a full sync throttled by max-ops-per-second writes at the limit (within 10 %), shown in status', async () => {
    const KEYS = 20_000;
    const LIMIT = 4000; // keys per second: ~5 s for the full sync
    const { port, dst } = await throttledApplier(KEYS, LIMIT);
    const userKeys = async () => (await dst.dbsize()) - ((await dst.exists('REPLISTREAM_TIMESTAMP_HEARTBEAT')) ? 1 : 0) - (await dst.keys('replistream:*')).length;
    const m = await measureRate(userKeys, KEYS, 60_000);
    process.stdout.write(`throttled full sync: ${Math.round(m.rate)} keys/s over ${m.seconds.toFixed(2)} s (limit ${LIMIT}/s, ${m.samples} samples)\n`);
    expect(m.rate).toBeGreaterThan(LIMIT * 0.9);
    expect(m.rate).toBeLessThan(LIMIT * 1.1);

    const body = await statusOf(port);
    expect(body.limits).toMatchObject({ maxOpsPerSecond: LIMIT, maxBytesPerSecond: null });
    expect(body.limits.throttledMs).toBeGreaterThan(2000); // it did wait for the limit
    const r = await runCli(['status', '--http', `http://127.0.0.1:${port}`]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/rate limits\s+max-ops-per-second 4000, max-bytes-per-second none, throttled \d+\.\d s/);
    expect(await (await fetch(`http://127.0.0.1:${port}/`)).text()).toMatch(/<h2>Rate limits<\/h2>.*max-ops-per-second.*4000\/s/s);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toMatch(/^replistream_rate_limit\{setting="max-ops-per-second",service="applier"\} 4000$/m);
    expect(metrics).toMatch(/^replistream_rate_limit\{setting="max-bytes-per-second",service="applier"\} -1$/m);
    expect(Number(/^replistream_throttled_seconds\{service="applier"\} ([\d.]+)$/m.exec(metrics)?.[1])).toBeGreaterThan(2);
  }, 120_000);

  it('limits change at run time: POST /limits and replistream limits, reflected in status; a wrong one names the setting', async () => {
    const KEYS = 20_000;
    const { source, destination, port, dst } = await throttledApplier(KEYS, 500);
    const url = `http://127.0.0.1:${port}`;
    await until(async () => (await dst.dbsize()) > 200, 30_000, 'the first keys written');
    await new Promise((r) => setTimeout(r, 2000));
    expect(await dst.dbsize()).toBeLessThan(3000); // 500/s: about 1,250 by now

    // refused whole, naming what is wrong
    const wrong = await postTo(port, 'limits', { maxOpsPerSecond: 100, snapshotMaxBytesPerSecond: 5 });
    expect(wrong.code).toBe(400);
    expect(wrong.body.error).toMatch(/snapshot-max-bytes-per-second: not a limit of this service/);
    expect((await postTo(port, 'limits', { maxBytesPerSecond: -1 })).body.error).toMatch(/max-bytes-per-second: must be a whole number ≥ 0/);
    expect((await statusOf(port)).limits.maxOpsPerSecond).toBe(500);

    const changed = await postTo(port, 'limits', { maxBytesPerSecond: 10_000_000 });
    expect(changed.code).toBe(200);
    expect(changed.body.limits).toMatchObject({ maxOpsPerSecond: 500, maxBytesPerSecond: 10_000_000 });

    // the CLI: a limit the applier has not (capture's) is refused, exit 2; 0 removes the limits
    const notMine = await runCli(['limits', '--http', url, '--snapshot-max-bytes-per-second', '1000']);
    expect(notMine.code).toBe(2);
    expect(notMine.err).toMatch(/snapshot-max-bytes-per-second: no service given with --http has this limit/);
    const before = await dst.dbsize();
    const lifting = Date.now();
    const lifted = await runCli(['limits', '--http', url, '--max-ops-per-second', '0', '--max-bytes-per-second', '0']);
    expect(lifted.code).toBe(0);
    expect(lifted.out).toMatch(new RegExp(`^${url}: applier max-ops-per-second none, max-bytes-per-second none`, 'm'));
    expect((await statusOf(port)).limits).toMatchObject({ maxOpsPerSecond: null, maxBytesPerSecond: null });
    // unthrottled, the rest of the full sync is written quickly (36 s more at 500/s)
    expect(KEYS - before).toBeGreaterThan(5000); // still throttled until the CLI lifted the limit
    await until(async () => (await dst.dbsize()) >= KEYS, 20_000, 'every key written');
    const took = (Date.now() - lifting) / 1000;
    process.stdout.write(`${KEYS - before} keys left at 500/s (${(KEYS - before) / 500} s more): written ${took.toFixed(1)} s after running replistream limits (process start included)\n`);
    expect(took).toBeLessThan((KEYS - before) / 500 / 2);
    expect((await waitConverged(source.url, destination.url, [0], 20_000)).equal).toBe(true);
    const shown = await runCli(['limits', '--http', url]);
    expect(shown.out).toMatch(/applier max-ops-per-second none/);
  }, 120_000);

  it("capture's snapshot read throttled by snapshot-max-bytes-per-second reads at the limit, and the limit is lifted at run time", async () => {
    const source = await server({ rdbcompression: 'no', 'repl-diskless-sync': 'no' });
    const LIMIT = 500_000; // bytes per second: the ~4.4 MB snapshot would take ~9 s
    await fill(source.url, 20_000, 200);
    const names = pipelineNames();
    const port = await freePort();
    const capture = await runCapture(source.url, names, { dbs: [0], httpPort: port, snapshotMaxBytesPerSecond: LIMIT });
    cleanups.push(() => capture.stop());
    await until(() => capture.service.stats.snapshotBytesTotal !== null, 30_000, 'the snapshot length announced');
    const total = capture.service.stats.snapshotBytesTotal!;
    expect(total).toBeGreaterThan(4_000_000);
    const m = await measureRate(() => capture.service.stats.snapshotBytes, total * 0.5, 60_000);
    process.stdout.write(`throttled snapshot read: ${Math.round(m.rate)} B/s over ${m.seconds.toFixed(2)} s (limit ${LIMIT} B/s)\n`);
    expect(m.rate).toBeGreaterThan(LIMIT * 0.9);
    expect(m.rate).toBeLessThan(LIMIT * 1.1);
    expect((await statusOf(port)).limits).toMatchObject({ snapshotMaxBytesPerSecond: LIMIT });
    // lifted: the other half (~4 s at the limit) is read at the pipeline's own pace, well above it
    const liftedAt = performance.now();
    const readBefore = capture.service.stats.snapshotBytes;
    expect((await postTo(port, 'limits', { snapshotMaxBytesPerSecond: 0 })).code).toBe(200);
    await until(() => capture.service.stats.snapshotBytes >= total, 10_000, 'the snapshot read to its end');
    const after = (capture.service.stats.snapshotBytes - readBefore) / ((performance.now() - liftedAt) / 1000);
    process.stdout.write(`after the limit was lifted: ${Math.round(after)} B/s\n`);
    expect(after).toBeGreaterThan(LIMIT * 1.5);
    await until(() => capture.service.stats.state === 'synchronizing', 10_000, 'capture synchronizing');
    expect((await statusOf(port)).limits.snapshotMaxBytesPerSecond).toBeNull();
  }, 120_000);
});
