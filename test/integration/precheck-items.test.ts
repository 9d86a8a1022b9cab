/**
 * `replistream precheck` reports every item (pass / warn / fail) in one run, so an operator fixes
 * everything at once; the first failure is still the command's one-line error and exit code.
 */
import { describe, expect, it } from 'vitest';
import { redisClient } from '../helpers/pipeline.js';
import { runCli } from '../helpers/processes.js';
import { stack } from '../helpers/stack-env.js';
import { useTeardown } from '../helpers/teardown.js';

const { cleanups, server } = useTeardown();

const errorLines = (err: string) => err.split('\n').filter((l) => l.startsWith('replistream: ') && !l.includes('TypeScript sources'));
const row = (out: string, item: string) => out.split('\n').find((l) => l.slice(6).startsWith(item)) ?? `(no ${item} row)`;

describe('precheck items', () => {
  it('reports every item at once: small backlog, evicting and too small destination that holds keys', async () => {
    const source = await server({ 'repl-backlog-size': '1mb' });
    const destination = await server({ maxmemory: '3mb', 'maxmemory-policy': 'allkeys-lru' });
    const src = redisClient(source.url);
    const dst = redisClient(destination.url);
    cleanups.push(async () => (src.disconnect(), dst.disconnect()));
    const big = 'x'.repeat(10_000);
    for (let i = 0; i < 400; i++) await src.set(`big:${i}`, big); // ~4 MB
    await dst.set('leftover:1', 'x');

    const r = await runCli(['precheck', '--source', source.url, '--destination', destination.url]);
    expect(r.code).toBe(1);
    expect(row(r.out, 'source reachable and authenticated')).toMatch(/^pass /);
    expect(row(r.out, 'source user may replicate')).toMatch(/^pass /);
    expect(row(r.out, 'source repl-backlog-size')).toMatch(/^warn .*1\.0 MiB.*repl-backlog-size 256mb/);
    expect(row(r.out, 'destination maxmemory-policy')).toMatch(/^warn .*allkeys-lru.*noeviction/);
    expect(row(r.out, 'destination memory')).toMatch(/^fail .*raise the destination's maxmemory/);
    expect(row(r.out, 'destination empty (intercept)')).toMatch(/^fail .*leftover:1/);
    expect(r.out).toMatch(/^precheck failed: 2 of \d+ items$/m);
    // the first failure is the command's error line
    expect(errorLines(r.err)).toEqual([expect.stringMatching(/^replistream: the source uses .* raise the destination's maxmemory/)]);

    const json = await runCli(['precheck', '--source', source.url, '--destination', destination.url, '--conflict-mode', 'ignore', '--json']);
    const body = JSON.parse(json.out) as { passed: boolean; items: Array<{ item: string; result: string; setting?: string }> };
    expect(body.passed).toBe(false);
    expect(body.items.find((i) => i.item === 'destination empty (ignore)')?.result).toBe('warn');
    expect(body.items.find((i) => i.item === 'destination memory')).toMatchObject({ result: 'fail', setting: 'destination' });
  });

  it('a cluster destination without db-map: says the cluster has db 0 only and which map to give', async () => {
    const cluster = stack().cluster[0];
    if (!cluster) throw new Error('the local stack has no cluster: npm run stack -- up --cluster');
    const source = await server();
    await redisClient(source.url, 0).set('a', '1');
    await redisClient(source.url, 2).set('b', '1');
    const r = await runCli(['precheck', '--source', source.url, '--destination', cluster, '--conflict-mode', 'ignore']);
    expect(r.code).toBe(2);
    expect(row(r.out, 'destination reachable and authenticated')).toMatch(/^pass .*cluster/);
    expect(row(r.out, 'db map')).toMatch(/^fail .*cluster, which has db 0 only.*db 2.*--db-map 0:0,2:0/);
    expect(row(r.out, 'destination empty (ignore)')).toMatch(/^skip /);
    const mapped = await runCli(['precheck', '--source', source.url, '--destination', cluster, '--conflict-mode', 'ignore', '--db-map', '0:0,2:0']);
    expect(row(mapped.out, 'db map')).toMatch(/^pass .*0→0, 2→0/);
    expect(mapped.code).toBe(0);
  });
});
