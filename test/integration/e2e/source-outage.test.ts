/**
 * Link health: the source goes away under a running capture. The link is shown disconnected
 * (since when, attempts) at once, /readyz fails once source-down-grace-ms has passed, and when the
 * source is back on its port capture goes on (PSYNC) and the destination converges with exact
 * counters. A source that stays away past source-down-timeout-ms ends the capture with exit 1 and
 * an error naming the source and the setting.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { pipelineNames, redisClient, runApplier, runCapture, until, waitConverged } from '../../helpers/pipeline.js';
import { killAll, startService, waitForLog } from '../../helpers/processes.js';
import { freePort, REDIS_SERVER_BIN, startRedis } from '../../helpers/redis-server.js';
import { uniqueName } from '../../helpers/stack-env.js';
import { serverArgs } from '../../../services/stack/servers.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  await killAll();
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

/** A redis-server that can be stopped and started again on the same port and directory. */
async function restartableRedis(): Promise<{ url: string; start(): Promise<void>; stop(signal: NodeJS.Signals): Promise<void> }> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'replistream-outage-'));
  let child: ChildProcess | null = null;
  const url = `redis://127.0.0.1:${port}`;
  const stop = async (signal: NodeJS.Signals) => {
    const c = child;
    child = null;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill(signal);
    await exited;
  };
  const start = async () => {
    // an RDB saved at shutdown keeps the data, and the replication id and offset with it
    child = spawn(REDIS_SERVER_BIN, ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '3600 1', '--appendonly', 'no', '--repl-diskless-sync-delay', '0', '--logfile', join(dir, 'redis.log'), ...serverArgs('redis-7.0')], { stdio: 'ignore' });
    const c = redisClient(url);
    try {
      await until(async () => (await c.ping().catch(() => '')) === 'PONG', 10_000, `redis-server on ${port}`);
    } finally {
      c.disconnect();
    }
  };
  cleanups.push(async () => {
    await stop('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  await start();
  return { url, start, stop };
}

async function getJson(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('source link health', () => {
  it('down: shown disconnected, not ready after the grace; back on its port: resumes and converges', async () => {
    const source = await restartableRedis();
    const destination = await startRedis();
    cleanups.push(() => destination.stop());
    const src = redisClient(source.url);
    cleanups.push(async () => src.disconnect());
    await src.call('DEBUG', 'POPULATE', 1000, 'k', 10);
    const names = pipelineNames();
    const httpPort = await freePort();
    const capture = await runCapture(source.url, names, { dbs: [0], httpPort, sourceDownGraceMs: 1500, sourceDownTimeoutMs: 120_000 });
    cleanups.push(() => capture.stop());
    const applier = await runApplier(destination.url, names, uniqueName('g'));
    cleanups.push(() => applier.stop());
    for (let i = 0; i < 200; i++) await src.incr('counter');
    expect((await waitConverged(source.url, destination.url, [0])).differences).toEqual([]);
    const base = `http://127.0.0.1:${httpPort}`;
    expect((await getJson(`${base}/readyz`)).status).toBe(200);
    const before = await src.info('replication');
    const fullSyncs = capture.service.stats.fullSyncs;

    await source.stop('SIGTERM'); // saves its RDB on the way out
    await until(async () => ((await getJson(`${base}/status`)).body.sourceLink as { state: string }).state === 'disconnected', 10_000, 'link shown disconnected');
    const down = (await getJson(`${base}/status`)).body;
    expect(down.state).toBe('synchronizing'); // the task goes on; the link is what is down
    expect((down.sourceLink as { since: number }).since).toBeGreaterThan(Date.now() - 10_000);
    await until(async () => (await getJson(`${base}/readyz`)).status === 503, 10_000, '/readyz failing after the grace');
    await until(async () => ((await getJson(`${base}/status`)).body.sourceLink as { retries: number }).retries >= 2, 20_000, 'attempts counted');

    await source.start();
    await until(async () => ((await getJson(`${base}/status`)).body.sourceLink as { state: string }).state === 'connected', 60_000, 'link connected again');
    await until(async () => (await getJson(`${base}/readyz`)).status === 200, 30_000, '/readyz ready again');
    const src2 = redisClient(source.url);
    cleanups.push(async () => src2.disconnect());
    for (let i = 0; i < 200; i++) await src2.incr('counter');
    await src2.set('after-outage', 'yes');
    expect((await waitConverged(source.url, destination.url, [0])).differences).toEqual([]);
    const dst = redisClient(destination.url);
    cleanups.push(async () => dst.disconnect());
    expect(await dst.get('counter')).toBe('400');

    // The restarted server loaded its RDB and keeps the old replication id as master_replid2: the
    // capture continued by PSYNC (+CONTINUE <new id>), no new snapshot.
    const after = await src2.info('replication');
    expect(/master_replid2:(\w+)/.exec(after)?.[1]).toBe(/master_replid:(\w+)/.exec(before)?.[1]);
    expect(capture.service.stats.fullSyncs).toBe(fullSyncs);
    expect(Number(/sync_partial_ok:(\d+)/.exec(await src2.info('stats'))?.[1])).toBeGreaterThanOrEqual(1);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/^replistream_capture_source_reconnects_total\{service="capture"\} 1$/m);
    expect(metrics).toMatch(/^replistream_capture_source_link_up\{service="capture"\} 1$/m);
  });

  it('down past source-down-timeout-ms: capture exits 1 naming the source and the setting', async () => {
    const source = await startRedis({ 'repl-diskless-sync-delay': 0 });
    const names = pipelineNames();
    const capture = startService(['capture', '--source', source.url, '--source-id', names.sourceId, '--topic-prefix', names.topicPrefix, '--dbs', '0', '--source-down-timeout-ms', '3000']);
    await waitForLog(capture, /full sync captured/, 90_000);
    const downAt = Date.now();
    await source.stop();
    const code = await capture.exited();
    const elapsed = Date.now() - downAt;
    expect(code).toBe(1);
    expect(elapsed).toBeGreaterThanOrEqual(3000);
    expect(elapsed).toBeLessThan(20_000);
    const log = capture.log();
    expect(log).toContain(`the source redis://127.0.0.1:${source.port} has been unreachable`);
    expect(log).toContain('source-down-timeout-ms');
  });
});
