/**
 * RESTORE payloads of a newer server on an older destination, with real servers on both sides:
 * Redis 7.0's (RDB 10) and Valkey 8.1's (RDB 11) into Redis 6.2 (reads up to 9), Valkey 8.1's
 * into Redis 7.0 (up to 10). Snapshot keys and RESTORE commands of the source's stream alike:
 * without restore-fallback the writer stops naming the key and the setting; with it, every type
 * arrives equal through typed writes of the value read out of the payload.
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { ChangeEvent } from '../../../services/events/model.js';
import { ReplistreamError } from '../../../services/common/errors.js';
import { serverVersionFromInfo } from '../../../services/common/server-version.js';
import { precheckDestination } from '../../../services/destination/precheck.js';
import { verifyDatabases } from '../../../services/destination/verify.js';
import type { ServerKind } from '../../../services/stack/servers.js';
import { client, cmd, fillEveryType, pos, type RedisServer, snapshotEvents, startRedis, writer } from './helpers.js';

async function caught(p: Promise<unknown>): Promise<ReplistreamError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(ReplistreamError);
  return e as ReplistreamError;
}

const servers: RedisServer[] = [];
async function server(kind: ServerKind): Promise<RedisServer> {
  const s = await startRedis({}, { server: kind });
  servers.push(s);
  return s;
}
afterAll(async () => void (await Promise.all(servers.map((s) => s.stop()))));

/** The source's keys as RESTORE commands, as a replica receives them after a client's RESTORE … ABSTTL. */
async function restoreCommands(url: string): Promise<ChangeEvent[]> {
  const c = client(url);
  const keys = ((await c.keysBuffer('*')) as Buffer[]).sort(Buffer.compare);
  const out: ChangeEvent[] = [];
  for (const [i, key] of keys.entries()) {
    const at = Number(await c.call('PEXPIRETIME', key));
    out.push(cmd(pos(5000 + i * 10), 0, ['RESTORE', key, String(at > 0 ? at : 0), (await c.dumpBuffer(key))!, 'REPLACE', 'ABSTTL']));
  }
  c.disconnect();
  return out;
}

describe.each([
  { source: 'redis-7.0', destination: 'redis-6.2', payload: 10, reads: 9 },
  { source: 'valkey-8.1', destination: 'redis-6.2', payload: 11, reads: 9 },
  { source: 'valkey-8.1', destination: 'redis-7.0', payload: 11, reads: 10 },
] as const)('RDB $payload payloads ($source) into $destination', ({ source, destination, payload, reads }) => {
  it('snapshot keys: refused naming the key without restore-fallback; equal with it', async () => {
    const s = await server(source);
    const sc = client(s.url);
    await fillEveryType(sc);
    const events = await snapshotEvents(sc, 0, { rdbVersion: payload });
    sc.disconnect();
    // the capture announces the snapshot's RDB version: refused before any key is written
    const d = await server(destination);
    let err = await caught(writer(d.url).applyBatch('t:0', events));
    expect(err.setting).toBe('write-mode');
    expect(err.message).toMatch(new RegExp(`snapshot .* has RDB version ${payload} .*reads RDB versions up to ${reads} .*restore-fallback`));
    // a snapshot announced as readable, then a key that is not: named
    const unannounced = events.map((e) => (e.kind === 'snapshot-begin' ? { ...e, rdbVersion: reads } : e));
    err = await caught(writer(d.url).applyBatch('t:0', unannounced));
    expect(err.message).toMatch(new RegExp(`RESTORE payload of key ".+" .*has RDB version ${payload}.*restore-fallback`));
    expect(await client(d.url).dbsize()).toBe(0);

    const w = writer(d.url, { allowRestoreFallback: true });
    await w.applyBatch('t:0', events);
    expect(w.stats.restoreFallbacks).toBeGreaterThan(15);
    expect((await verifyDatabases(s.url, d.url, [0], new Map())).differences).toEqual([]);
    await w.close();
  });

  it('RESTORE commands of the stream: refused naming the key and restore-fallback; typed writes with it (or in commands mode)', async () => {
    const s = await server(source);
    const sc = client(s.url);
    await fillEveryType(sc);
    sc.disconnect();
    const commands = await restoreCommands(s.url);
    const d = await server(destination);
    const err = await caught(writer(d.url).applyBatch('t:0', commands));
    expect(err.setting).toBe('restore-fallback');
    expect(err.message).toMatch(new RegExp(`RESTORE of key ".+": its payload has RDB version ${payload} .*up to ${reads} .*enable restore-fallback`));
    expect(err.message).toMatch(/event at epoch 1 offset 5000/);
    expect(await client(d.url).dbsize()).toBe(0);

    for (const opts of [{ allowRestoreFallback: true }, { writeMode: 'commands' as const }]) {
      const target = await server(destination);
      const w = writer(target.url, opts);
      await w.applyBatch('t:0', commands);
      expect((await verifyDatabases(s.url, target.url, [0], new Map())).differences).toEqual([]);
      await w.close();
    }
  });
});

describe('restore-mode precheck with the real servers', () => {
  it('compares the RDB versions the servers write, naming each by its own version (Valkey 8.1.8, not 7.2.4)', async () => {
    const [r62, r70, vk81] = await Promise.all([server('redis-6.2'), server('redis-7.0'), server('valkey-8.1')]);
    const versionOf = async (url: string) => {
      const c = client(url);
      const v = serverVersionFromInfo((await c.info('server')) as string);
      c.disconnect();
      return v;
    };
    const [v62, v70, v81] = await Promise.all([versionOf(r62.url), versionOf(r70.url), versionOf(vk81.url)]);
    expect([v62.label, v70.label, v81.label]).toEqual(['Redis 6.2.14', expect.stringMatching(/^Redis 7\.0\./), 'Valkey 8.1.8']);

    // older into newer, and 7.0 into Valkey 8.1: fine
    expect((await precheckDestination(r70.url, [0], 'intercept', { sourceVersion: v62, writeMode: 'restore' })).server.label).toBe(v70.label);
    expect((await precheckDestination(vk81.url, [0], 'intercept', { sourceVersion: v70, writeMode: 'restore' })).server.label).toBe('Valkey 8.1.8');
    // newer into older: refused, naming both servers and write-mode; fine in commands mode
    let err = await caught(precheckDestination(r62.url, [0], 'intercept', { sourceVersion: v70, writeMode: 'restore' }));
    expect(err.setting).toBe('write-mode');
    expect(err.message).toMatch(/source \(Redis 7\.0\.\d+\) writes RDB version 10, the destination \(Redis 6\.2\.14\) reads RDB versions up to 9/);
    err = await caught(precheckDestination(r70.url, [0], 'intercept', { sourceVersion: v81, writeMode: 'restore' }));
    expect(err.message).toMatch(/source \(Valkey 8\.1\.8\) writes RDB version 11, the destination \(Redis 7\.0\.\d+\) reads RDB versions up to 10/);
    await precheckDestination(r62.url, [0], 'intercept', { sourceVersion: v81, writeMode: 'commands' });
  });
});
