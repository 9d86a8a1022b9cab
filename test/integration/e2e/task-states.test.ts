/**
 * Operating a task against the real stack: the states a capture and an applier go through
 * (prechecking, initializing, synchronizing, precheck failed, paused), their full-sync progress
 * against the totals the source announced, `replistream status` over several services, the
 * metrics, and pause/resume over HTTP.
 */
import { createServer } from 'node:http';
import { describe, expect, it } from 'vitest';
import { ReplistreamError } from '../../../services/common/errors.js';
import { ServiceStatus } from '../../../services/common/service-status.js';
import { applySettings, pipelineNames, redisClient, runApplier, runCapture, testLogger, until, postTo, statusOf, type ServiceBody } from '../../helpers/pipeline.js';
import { startService, runCli } from '../../helpers/processes.js';
import { freePort } from '../../helpers/redis-server.js';
import { uniqueName } from '../../helpers/stack-env.js';
import { useTeardown } from '../../helpers/teardown.js';
import { startApplier } from '../../../services/applier/service.js';

const { cleanups, server } = useTeardown();

async function fill(url: string, keys: number, valueBytes = 32): Promise<void> {
  const c = redisClient(url);
  const value = 'v'.repeat(valueBytes);
  for (let i = 0; i < keys; i += 1000) {
    const args: string[] = [];
    for (let j = i; j < Math.min(keys, i + 1000); j++) args.push(`key:${j}`, value);
    await c.mset(...args);
  }
  c.disconnect();
}

const states = (b: ServiceBody) => (b.history as Array<{ to: string }>).map((h) => h.to);

describe('task states', () => {
  it('capture and applier: prechecking → initializing → synchronizing with progress; status of the task; paused and resumed', async () => {
    const source = await server({ 'repl-diskless-sync': 'no' }); // disk-based: the RDB length is announced
    const destination = await server();
    const KEYS = 20_000;
    await fill(source.url, KEYS);

    const names = pipelineNames();
    const capPort = await freePort();
    const capture = await runCapture(source.url, names, { dbs: [0], httpPort: capPort });
    cleanups.push(() => capture.stop());
    await until(async () => (await statusOf(capPort)).state === 'synchronizing', 60_000, 'capture synchronizing');
    const cap = await statusOf(capPort);
    expect(states(cap)).toEqual(['prechecking', 'initializing', 'synchronizing']);
    expect(cap.progress).toMatchObject({ done: true, percent: 100, basis: 'bytes' });
    // INFO keyspace when the full sync began (the heartbeat key may already be there)
    expect(cap.progress.keysTotal).toBeGreaterThanOrEqual(KEYS);
    expect(cap.progress.keysDone).toBeGreaterThanOrEqual(KEYS);
    expect(cap.progress.bytesTotal).toBeGreaterThan(KEYS * 10); // key names at least (values compress)
    expect(cap.progress.bytesDone).toBe(cap.progress.bytesTotal);

    const appPort = await freePort();
    const group = uniqueName('g');
    const applier = await runApplier(destination.url, names, group, { httpPort: appPort });
    cleanups.push(() => applier.stop());
    await until(async () => (await statusOf(appPort)).state === 'synchronizing', 90_000, 'applier synchronizing');
    const app = await statusOf(appPort);
    expect(states(app)).toEqual(['prechecking', 'initializing', 'synchronizing']);
    expect((app.precheck as Array<{ result: string }>).map((i) => i.result)).toEqual(['pass', 'pass', 'pass', 'pass']);
    expect(app.progress).toMatchObject({ done: true, percent: 100 });
    expect(app.progress.keysDone).toBeGreaterThanOrEqual(KEYS);
    expect(await redisClient(destination.url).dbsize()).toBeGreaterThanOrEqual(KEYS);

    // the task as one: both services, a table, exit 0
    const r = await runCli(['status', '--http', `http://127.0.0.1:${capPort}`, '--http', `http://127.0.0.1:${appPort}`]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^task\s+synchronizing$/m);
    expect(r.out).toMatch(/^capture s1 /m);
    expect(r.out).toMatch(new RegExp(`^applier ${group} `, 'm'));
    expect(r.out).toMatch(/full sync\s+100\.0%/);
    const metrics = await (await fetch(`http://127.0.0.1:${appPort}/metrics`)).text();
    expect(metrics).toMatch(/replistream_task_state\{state="synchronizing",service="applier"\} 1/);
    expect(metrics).toMatch(/replistream_task_state\{state="initializing",service="applier"\} 0/);

    // paused: nothing more is written, the position is kept; resumed: it catches up
    const paused = await postTo(appPort, 'pause');
    expect(paused.code).toBe(200);
    expect(paused.body.state).toBe('paused');
    expect((await postTo(appPort, 'pause')).code).toBe(409);
    const again = await runCli(['pause', '--http', `http://127.0.0.1:${appPort}`]);
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/cannot pause an applier that is paused/);
    const src = redisClient(source.url);
    const dst = redisClient(destination.url);
    cleanups.push(async () => (src.disconnect(), dst.disconnect()));
    await src.set('after-pause', '1');
    const offset = Number(await src.info('replication').then((t) => /master_repl_offset:(\d+)/.exec(t)![1]));
    await until(() => capture.service.stats.durableOffset >= offset, 30_000, 'the write durable in Kafka');
    await new Promise((r) => setTimeout(r, 3000)); // well past a fetch and a plan of a running applier
    expect(await dst.get('after-pause')).toBeNull();
    expect((await statusOf(appPort)).state).toBe('paused');
    const resumed = await runCli(['resume', '--http', `http://127.0.0.1:${appPort}`]);
    expect(resumed.code).toBe(0);
    expect(resumed.out).toMatch(/: synchronizing$/m);
    await until(async () => (await dst.get('after-pause')) === '1', 30_000, 'the write applied after resume');
    expect(states(await statusOf(appPort)).slice(-2)).toEqual(['paused', 'synchronizing']);

    // a paused capture stops reading the source and keeps its position; resumed, the write flows
    const capPaused = await runCli(['pause', '--http', `http://127.0.0.1:${capPort}`]);
    expect(capPaused.code, capPaused.err).toBe(0);
    expect(capPaused.out).toMatch(/: paused$/m);
    await new Promise((r) => setTimeout(r, 300)); // a read in flight lands
    const heldAt = capture.service.stats.sourceOffset;
    await src.set('while-capture-paused', '1');
    await new Promise((r) => setTimeout(r, 2500)); // heartbeats and the write wait at the source
    expect(capture.service.stats.sourceOffset).toBe(heldAt);
    expect(await dst.get('while-capture-paused')).toBeNull();
    // more than half the source's backlog (1 MB by default) written meanwhile: the capture warns
    await src.set('big-while-paused', 'b'.repeat(700_000));
    await until(async () => (await statusOf(capPort)).backlogWhilePaused === 'at risk', 15_000, 'the backlog reported at risk');
    expect((await postTo(capPort, 'resume')).body.state).toBe('synchronizing');
    await until(async () => (await dst.get('while-capture-paused')) === '1', 30_000, 'the write captured and applied after the capture resumed');
    expect(capture.service.stats.fullSyncs).toBe(1); // resumed on the same link, no new snapshot

    // a second group on a destination that holds keys: precheck failed, shown on its port
    const other = await server();
    await redisClient(other.url).set('already-here', 'x');
    const failedPort = await freePort();
    const st = new ServiceStatus('applier', 'g-precheck', testLogger);
    cleanups.push(() => st.close());
    const err = await startApplier(applySettings(other.url, names, uniqueName('g'), { httpPort: failedPort }), testLogger, st).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ReplistreamError);
    expect((err as ReplistreamError).code).toBe('PRECHECK');
    const pf = await statusOf(failedPort);
    expect(pf.state).toBe('precheck-failed');
    expect(states(pf)).toEqual(['prechecking', 'precheck-failed']);
    expect(pf.failure.reason).toMatch(/already-here/);
    // every destination item was checked, the failing one among them
    const items = pf.precheck as Array<{ item: string; result: string }>;
    expect(items.find((i) => i.item === 'destination empty (intercept)')?.result).toBe('fail');
    expect(items.find((i) => i.item === 'destination maxmemory-policy')?.result).toBe('pass');
    expect(items.find((i) => i.item === 'db map')?.result).toBe('pass');
    const page = await (await fetch(`http://127.0.0.1:${failedPort}/`)).text();
    expect(page).toContain('precheck failed');
    expect(page).toContain('already-here');
    expect(page).toMatch(/<table id="precheck">.*destination empty \(intercept\)/s);
    const pfCli = await runCli(['status', '--http', `http://127.0.0.1:${failedPort}`]);
    expect(pfCli.code).toBe(1);
    expect(pfCli.out).toMatch(/state\s+precheck-failed/);

    // a migration: an applier told to stop when caught up completes and exits 0 by itself
    const third = await server();
    const migration = startService(['apply', '--destination', third.url, '--group', uniqueName('g'), '--source-id', names.sourceId, '--topic-prefix', names.topicPrefix, '--stop-when-caught-up']);
    const exitCode = await Promise.race([migration.exited(), new Promise((r) => setTimeout(() => r('still running after 90 s'), 90_000))]);
    expect(exitCode, migration.log().slice(-2000)).toBe(0);
    expect(migration.log()).toMatch(/task state: completed/);
    expect(await redisClient(third.url).get('after-pause')).toBe('1');
    expect(await redisClient(third.url).dbsize()).toBeGreaterThanOrEqual(KEYS);
  });

  it('status against a port that is not a replistream service exits non-zero naming it', async () => {
    const port = await freePort();
    const http = createServer((_, res) => {
      res.writeHead(404);
      res.end('no');
    });
    await new Promise<void>((r) => http.listen(port, '127.0.0.1', () => r()));
    cleanups.push(() => new Promise<void>((r) => http.close(() => r())));
    const r = await runCli(['status', '--http', `http://127.0.0.1:${port}`]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(new RegExp(`127\\.0\\.0\\.1:${port}/status answered HTTP 404`));
  });
});
