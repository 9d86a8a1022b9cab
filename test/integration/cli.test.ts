/**
 * The command line contract (docs/guarantees.md): exit codes 0 / 1 / 2, errors that name the problem,
 * secrets kept out of the output, and the small commands (precheck, verify, status, rdb inspect).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scratchDir } from '../helpers/scratch-dir.js';
import { pipelineNames, redisClient, runCapture, until } from '../helpers/pipeline.js';
import { runCli } from '../helpers/processes.js';
import { freePort } from '../helpers/redis-server.js';
import { useTeardown } from '../helpers/teardown.js';

const { cleanups, server } = useTeardown();

describe('replistream CLI', () => {
  it('exits 2 naming a bad or missing setting', async () => {
    const r = await runCli(['capture', '--source', 'redis://127.0.0.1:1', '--source-id', 's', '--partitions', 'zero']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/partitions: invalid value "zero" from --partitions/);
    const r2 = await runCli(['apply', '--group', 'g', '--source-id', 's'], { REPLISTREAM_DESTINATION: '' });
    expect(r2.code).toBe(2);
    expect(r2.err).toMatch(/destination: required for 'apply'/);
  });

  it('exits 1 naming an unreachable or auth-refusing server, never printing the password', async () => {
    const port = await freePort();
    const r = await runCli(['apply', '--destination', `redis://user:s3cr3t@127.0.0.1:${port}`, '--group', 'g', '--source-id', 's']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/127\.0\.0\.1/);
    expect(r.err).not.toContain('s3cr3t');
    const locked = await server({ requirepass: 'right-pass' });
    const r2 = await runCli(['capture', '--source', `redis://:wrong-pass@127.0.0.1:${locked.port}`, '--source-id', 's', '--dbs', '0']);
    expect(r2.code).toBe(1);
    expect(r2.err).toMatch(/WRONGPASS|invalid password|AUTH|auth/i);
    expect(r2.err).not.toContain('wrong-pass');
  });

  it('rdb inspect prints one JSON object per key, and a corrupt file fails naming the offset', async () => {
    const ok = await runCli(['rdb', 'inspect', 'test/fixtures/rdb/strings.rdb']);
    expect(ok.code).toBe(0);
    const lines = ok.out.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.length).toBeGreaterThan(3);
    expect(lines[0]).toHaveProperty('key');
    const dir = scratchDir('rdb');
    const bad = Buffer.from(readFileSync('test/fixtures/rdb/strings.rdb'));
    bad[bad.length - 3] ^= 0xff; // inside the checksum
    writeFileSync(join(dir, 'bad.rdb'), bad);
    const r = await runCli(['rdb', 'inspect', join(dir, 'bad.rdb')]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/offset \d+/);
  });

  it('precheck refuses a non-empty destination in intercept mode naming its keys; verify compares', async () => {
    const source = await server();
    const destination = await server();
    await redisClient(source.url).set('a', '1');
    await redisClient(destination.url).set('leftover:1', 'x');
    const r = await runCli(['precheck', '--source', source.url, '--destination', destination.url, '--db-map', '0:0']);
    expect(r.code).toBe(1);
    expect(r.err).toContain('leftover:1');
    const ignore = await runCli(['precheck', '--source', source.url, '--destination', destination.url, '--conflict-mode', 'ignore', '--db-map', '0:0']);
    expect(ignore.code).toBe(0);
    expect(ignore.out).toMatch(/precheck passed/);
    const differ = await runCli(['verify', '--source', source.url, '--destination', destination.url, '--dbs', '0']);
    expect(differ.code).toBe(1);
    await redisClient(destination.url).del('leftover:1');
    await redisClient(destination.url).set('a', '1');
    const same = await runCli(['verify', '--source', source.url, '--destination', destination.url, '--dbs', '0']);
    expect(same.out).toMatch(/equal/);
    expect(same.code).toBe(0);
  });

  it('status reads a running capture over HTTP', async () => {
    const source = await server();
    const port = await freePort();
    const capture = await runCapture(source.url, pipelineNames(), { dbs: [0], httpPort: port });
    cleanups.push(() => capture.stop());
    await until(() => capture.service.stats.state === 'synchronizing', 30_000, 'capture synchronizing');
    const r = await runCli(['status', '--http', `http://127.0.0.1:${port}`]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/state\s+synchronizing/);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toMatch(/replistream_capture_source_offset/);
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
  });
});
