import { afterAll, describe, expect, it } from 'vitest';
import { ReplistreamError } from '../../../services/common/errors.js';
import { precheckDestination } from '../../../services/destination/precheck.js';
import { verifyDatabases } from '../../../services/destination/verify.js';
import { client, fillEveryType, type RedisServer, snapshotEvents, startRedis, writer } from './helpers.js';

describe('precheck', () => {
  const servers: RedisServer[] = [];
  const server = async (cfg: Record<string, string> = {}) => {
    const s = await startRedis(cfg);
    servers.push(s);
    return s;
  };
  afterAll(async () => void (await Promise.all(servers.map((s) => s.stop()))));

  it('intercept: names the db and the first keys of a non-empty mapped db; ignores replistream keys and unmapped dbs', async () => {
    const d = await server({ 'maxmemory-policy': 'noeviction' });
    const c0 = client(d.url, 0);
    const c3 = client(d.url, 3);
    await c0.set('replistream:pos:g:t:0', '{}'); // our own keys do not count
    await c0.set('elsewhere', 'db 0 is not mapped here');
    let r = await precheckDestination(d.url, [3], 'intercept');
    expect(r.found).toEqual([{ db: 3, keys: [] }]);
    expect(r.warnings).toEqual([]);
    expect(r.maxmemoryPolicy).toBe('noeviction');
    for (let i = 0; i < 8; i++) await c3.set(`user:${i}`, 'x');
    const err = await precheckDestination(d.url, [0, 3], 'intercept').catch((e: unknown) => e as ReplistreamError);
    expect(err).toBeInstanceOf(ReplistreamError);
    expect((err as ReplistreamError).code).toBe('PRECHECK');
    expect((err as ReplistreamError).setting).toBe('conflict-mode');
    // db 0 first (elsewhere), up to 5 keys named
    expect((err as ReplistreamError).message).toMatch(/destination db 0 is not empty .*"elsewhere"/);
    await c0.del('elsewhere');
    const err3 = (await precheckDestination(d.url, [0, 3], 'intercept').catch((e: unknown) => e)) as ReplistreamError;
    expect(err3.message).toMatch(/db 3 is not empty/);
    expect((err3.details!.keys as string[]).length).toBe(5);
    expect(err3.message.match(/"user:\d"/g)).toHaveLength(5);
    // ignore mode passes and reports what it saw
    r = await precheckDestination(d.url, [0, 3], 'ignore');
    expect(r.found[1].keys).toHaveLength(5);
    c0.disconnect();
    c3.disconnect();
  });

  it('warns unless maxmemory-policy is noeviction, and checks versions for restore mode', async () => {
    const d = await server({ 'maxmemory-policy': 'allkeys-lru' });
    const r = await precheckDestination(d.url, [0], 'intercept', { sourceVersion: '7.0.0' });
    expect(r.warnings.join()).toMatch(/maxmemory-policy is allkeys-lru.*noeviction/);
    expect(r.version).toBe('7.0.15');
    const err = (await precheckDestination(d.url, [0], 'intercept', { sourceVersion: '7.2.4', writeMode: 'restore' }).catch((e: unknown) => e)) as ReplistreamError;
    expect(err.code).toBe('PRECHECK');
    expect(err.setting).toBe('write-mode');
    await precheckDestination(d.url, [0], 'intercept', { sourceVersion: '7.2.4', writeMode: 'commands' });
  });
});

describe('verify (the G1 oracle)', () => {
  const servers: RedisServer[] = [];
  afterAll(async () => void (await Promise.all(servers.map((s) => s.stop()))));

  const pair = async (destCfg: Record<string, string> = {}) => {
    const s = await startRedis();
    const d = await startRedis(destCfg);
    servers.push(s, d);
    const sc = client(s.url);
    await fillEveryType(sc);
    await sc.set('DTS_REDIS_TIMESTAMP_HEARTBEAT', String(Date.now()));
    const w = writer(d.url);
    await w.applyBatch('t:0', await snapshotEvents(sc, 0));
    await w.close();
    const dc = client(d.url);
    await dc.set('DTS_REDIS_TIMESTAMP_HEARTBEAT', 'older');
    return { s, d, sc, dc };
  };

  for (const debug of ['yes', 'no'] as const) {
    it(`reports each kind of difference (DEBUG ${debug === 'yes' ? 'available: digests' : 'disabled: values'})`, async () => {
      const { s, d, sc, dc } = await pair({ 'enable-debug-command': debug });
      let r = await verifyDatabases(s.url, d.url, [0], new Map());
      expect(r.differences).toEqual([]);
      expect(r.equal).toBe(true);
      await dc.hset('hash:big', 'field7', 'changed'); // one field
      await dc.pexpire('str:embstr', 50_000); // a TTL where there is none
      await dc.pexpire('str:ttl', 3_600_000 - 5_000); // a TTL 5 s off
      await dc.lset('list:small', 0, 'b'); // list order (a,b,a,3 → b,b,a,3)…
      await dc.lset('list:small', 1, 'a'); // …b,a,a,3: same elements, other order
      await dc.del('set:small'); // missing
      await dc.set('only-here', 'x'); // extra
      await dc.zadd('zset:small', 2.6, 'b'); // a score
      await dc.del('str:int');
      await dc.rpush('str:int', '12345'); // same bytes, other type
      await dc.xgroup('SETID', 'stream:groups', 'g2', '0'); // consumer group state (a digest does not see it)
      r = await verifyDatabases(s.url, d.url, [0], new Map());
      expect(r.equal).toBe(false);
      const byKey = Object.fromEntries(r.differences.map((x) => [x.key, x.reason]));
      expect(byKey).toEqual({
        'hash:big': expect.stringMatching(/^value differs/),
        'str:embstr': expect.stringMatching(/^ttl differs: source none, destination \d+ ms$/),
        'str:ttl': expect.stringMatching(/^ttl differs: source \d+ ms, destination \d+ ms$/),
        'list:small': expect.stringMatching(/^value differs/),
        'set:small': 'missing in destination',
        'only-here': 'extra in destination (absent from the source)',
        'zset:small': expect.stringMatching(/^value differs/),
        'str:int': 'type differs: source string, destination list',
        'stream:groups': expect.stringMatching(/^stream metadata differs/),
      });
      // sampling still finds a difference among few keys
      await dc.flushdb();
      await dc.set('str:int', 'other');
      r = await verifyDatabases(s.url, d.url, [0], new Map(), { sample: 3 });
      expect(r.equal).toBe(false);
      expect(r.compared).toBe(4); // 3 sampled at the source, 1 at the destination
      sc.disconnect();
      dc.disconnect();
    });
  }

  it('compares mapped dbs and ignores replistream keys and the heartbeat key', async () => {
    const s = await startRedis();
    const d = await startRedis();
    servers.push(s, d);
    const sc = client(s.url, 1);
    const dc = client(d.url, 4);
    await sc.set('a', '1');
    await dc.set('a', '1');
    await dc.set('replistream:pos:x:y', '{}');
    await dc.set('REPLISTREAM_TIMESTAMP_HEARTBEAT', '1');
    expect((await verifyDatabases(s.url, d.url, [1], new Map([[1, 4]]))).equal).toBe(true);
    expect((await verifyDatabases(s.url, d.url, [1], new Map([[1, 4]]), { ignorePrefixes: [] })).differences.map((x) => x.key)).toEqual(['replistream:pos:x:y']);
    expect((await verifyDatabases(s.url, d.url, [1], new Map([[1, 5]]))).differences).toEqual([{ db: 1, key: 'a', reason: 'missing in destination' }]);
    sc.disconnect();
    dc.disconnect();
  });
});
