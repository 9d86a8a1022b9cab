/**
 * The status page in a real browser: headless Chromium (Debian's `chromium`) loads an applier's
 * page in the middle of a full sync and must show the state and the progress; a screenshot is
 * kept in test-artifacts/ for a human to look at.
 *
 * To hold the applier inside its full sync long enough for a browser to start, the destination's
 * writes are paused (CLIENT PAUSE WRITE) once the applier has written part of the snapshot: the
 * applier waits on the destination exactly as it would on a slow one.
 */
import { execFile, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { pipelineNames, redisClient, runApplier, runCapture, until } from '../../helpers/pipeline.js';
import { freePort, startRedis, type RedisServer } from '../../helpers/redis-server.js';
import { uniqueName } from '../../helpers/stack-env.js';

const CHROMIUM = process.env.REPLISTREAM_CHROMIUM ?? 'chromium';
const hasChromium = spawnSync(CHROMIUM, ['--version'], { encoding: 'utf8' }).status === 0;
if (!hasChromium) console.warn(`status page test skipped: no ${CHROMIUM} on this machine (apt-get install chromium, or set REPLISTREAM_CHROMIUM)`);

const ARTIFACTS = resolve('test-artifacts');
const run = promisify(execFile);

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

async function server(config: Record<string, string | number> = {}): Promise<RedisServer> {
  const s = await startRedis(config);
  cleanups.push(() => s.stop());
  return s;
}

/** Headless Chromium with its own profile; as root (CI containers) it needs --no-sandbox. */
async function chromium(args: string[]): Promise<string> {
  const profile = mkdtempSync(join(tmpdir(), 'replistream-chromium-'));
  try {
    const { stdout } = await run(
      CHROMIUM,
      ['--headless', '--disable-gpu', '--no-sandbox', '--no-first-run', '--disable-dev-shm-usage', `--user-data-dir=${profile}`, ...args],
      { timeout: 90_000, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 },
    );
    return stdout;
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}

type Body = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

describe('status page', () => {
  it.skipIf(!hasChromium)('headless Chromium shows the state and progress of a running full sync', async () => {
    const source = await server({ 'repl-diskless-sync': 'no' });
    const destination = await server();
    const KEYS = 200_000;
    const src = redisClient(source.url);
    cleanups.push(async () => src.disconnect());
    for (let i = 0; i < KEYS; i += 2000) {
      const args: string[] = [];
      for (let j = i; j < i + 2000; j++) args.push(`key:${j}`, `value-${j}-${'x'.repeat(40)}`);
      await src.mset(...args);
    }

    const names = pipelineNames();
    const capture = await runCapture(source.url, names, { dbs: [0] });
    cleanups.push(() => capture.stop());
    await until(() => capture.service.stats.state === 'synchronizing', 120_000, 'capture synchronizing');

    const port = await freePort();
    const dst = redisClient(destination.url);
    cleanups.push(async () => {
      await dst.call('CLIENT', 'UNPAUSE').catch(() => undefined);
      dst.disconnect();
    });
    const applier = await runApplier(destination.url, names, uniqueName('g'), { httpPort: port });
    cleanups.push(() => applier.stop());
    const read = async () => (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as Body;
    // part of the snapshot written: hold the destination's writes while the browser looks
    for (const deadline = Date.now() + 120_000; ; ) {
      const b = await read();
      if (b.state === 'initializing' && b.progress?.keysDone > 0) break;
      if (b.state === 'synchronizing') throw new Error('the applier finished its full sync before the destination could be paused: make the data set bigger');
      if (Date.now() > deadline) throw new Error(`applier never wrote part of its full sync (state ${b.state})`);
      await new Promise((r) => setTimeout(r, 5));
    }
    await dst.call('CLIENT', 'PAUSE', '120000', 'WRITE');
    const during = await read();
    expect(during.state).toBe('initializing');

    const url = `http://127.0.0.1:${port}/`;
    const dom = await chromium(['--dump-dom', url]);
    expect(dom).toMatch(/id="state"[^>]*data-state="initializing"/);
    expect(dom).toContain('initializing (full sync)');
    const percent = Number(/id="progress-percent">([\d.]+)%/.exec(dom)?.[1]);
    expect(percent).toBeGreaterThan(0);
    expect(percent).toBeLessThan(100);
    expect(dom).toMatch(/id="progress-keys">\d+ of [\d?]+ keys/);
    expect(dom).toContain('id="lag-graph"');

    mkdirSync(ARTIFACTS, { recursive: true });
    const shot = join(ARTIFACTS, 'status-page-full-sync.png');
    rmSync(shot, { force: true });
    await chromium(['--hide-scrollbars', '--window-size=1100,1300', `--screenshot=${shot}`, url]);
    expect(statSync(shot).size).toBeGreaterThan(10_000);

    // released, the same page ends synchronizing at 100 %
    await dst.call('CLIENT', 'UNPAUSE');
    await until(async () => (await read()).state === 'synchronizing', 120_000, 'applier synchronizing');
    const after = await chromium(['--dump-dom', url]);
    expect(after).toMatch(/data-state="synchronizing"/);
    expect(after).toContain('id="progress-percent">100.0%');
  });
});
