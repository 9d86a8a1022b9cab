import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import type { CommandEvent } from '../../../services/events/model.js';
import { verifyDatabases } from '../../../services/destination/verify.js';
import { decodeBatch, encodeBatch } from '../../../services/events/codec.js';
import { EncodedCommandEvent } from '../../../services/events/encoded-command.js';
import { aofCommands, batches, client, cmd, commandEventsFrom, pos, type RedisServer, startRedis, startSource, writer } from './helpers.js';

type A = string | number | Buffer;

/** Every operation of the reference's list (and a few more), deterministic, as run on db 0/1. */
export function opsList(nowMs: number, dump: Buffer): A[][] {
  const nowS = Math.floor(nowMs / 1000);
  return [
    ['SET', 's', 'hello'], ['APPEND', 's', ' world'], ['SETRANGE', 's', 0, 'J'], ['SETBIT', 'bits', 7, 1], ['SETBIT', 'bits2', 3, 1],
    ['BITOP', 'OR', 'bitsor', 'bits', 'bits2'], ['SET', 'n', '10'], ['INCR', 'n'], ['INCRBY', 'n', 5], ['DECR', 'n'], ['DECRBY', 'n', 3],
    ['INCRBYFLOAT', 'f', '1.5'], ['GETSET', 'gs', 'v1'], ['GETSET', 'gs', 'v2'], ['SETEX', 'ex', 1000, 'v'], ['PSETEX', 'pex', 1_000_000, 'v'],
    ['SETNX', 'nx', '1'], ['SETNX', 'nx', '2'], ['MSET', 'm1', 'a', 'm2', 'b'], ['MSETNX', 'm3', 'c', 'm1', 'z'], ['MSETNX', 'm4', 'c', 'm5', 'z'],
    ['EXPIRE', 'm1', 1000], ['PEXPIRE', 'm2', 2_000_000], ['EXPIREAT', 'm4', nowS + 3000], ['PEXPIREAT', 's', nowMs + 5_000_000], ['PERSIST', 's'],
    ['LPUSH', 'l', 'a', 'b', 'c'], ['RPUSH', 'l', 'd', 'e'], ['LPUSHX', 'l', 'x'], ['RPUSHX', 'l', 'y'], ['LPUSHX', 'nolist', 'x'],
    ['LINSERT', 'l', 'BEFORE', 'd', 'ins'], ['LSET', 'l', 0, 'first'], ['LREM', 'l', 1, 'a'], ['LTRIM', 'l', 0, 6], ['LPOP', 'l'], ['RPOP', 'l'],
    ['RPUSH', 'l2', 'q', 'w', 'e', 'r'], ['RPOPLPUSH', 'l2', 'l'], ['BRPOPLPUSH', 'l2', 'l', 1], ['BLPOP', 'l2', 1], ['BRPOP', 'l', 1], ['LMOVE', 'l', 'l2', 'LEFT', 'RIGHT'],
    ['SADD', 's1', 'a', 'b', 'c', 'd'], ['SADD', 's2', 'c', 'd', 'e'], ['SREM', 's1', 'a'], ['SMOVE', 's1', 's2', 'b'], ['SINTERSTORE', 'si', 's1', 's2'],
    ['SUNIONSTORE', 'su', 's1', 's2'], ['SDIFFSTORE', 'sd', 's2', 's1'], ['SADD', 'one', 'only', 'two'], ['SPOP', 'one', 2],
    ['ZADD', 'z1', 1, 'a', 2, 'b', 3, 'c', 4, 'd'], ['ZADD', 'z2', 1, 'a', 5, 'e'], ['ZINCRBY', 'z1', 10, 'a'], ['ZREM', 'z1', 'b'],
    ['ZINTERSTORE', 'zi', 2, 'z1', 'z2'], ['ZUNIONSTORE', 'zu', 2, 'z1', 'z2', 'WEIGHTS', 1, 2], ['ZADD', 'zl', 0, 'a', 0, 'b', 0, 'c', 0, 'd'],
    ['ZREMRANGEBYLEX', 'zl', '[b', '[c'], ['ZREMRANGEBYRANK', 'zu', 0, 0], ['ZREMRANGEBYSCORE', 'z1', 0, 3.5],
    ['HSET', 'h', 'f1', 'v1', 'f2', 'v2'], ['HMSET', 'h', 'f3', 'v3'], ['HSETNX', 'h', 'f1', 'x'], ['HSETNX', 'h', 'f4', 'v4'], ['HINCRBY', 'h', 'cnt', 3],
    ['HINCRBYFLOAT', 'h', 'flt', '2.5'], ['HDEL', 'h', 'f2'], ['GEOADD', 'geo', 13.361389, 38.115556, 'Palermo', 15.087269, 37.502669, 'Catania'],
    ['PFADD', 'hll1', 'a', 'b', 'c'], ['PFADD', 'hll2', 'c', 'd'], ['PFMERGE', 'hllm', 'hll1', 'hll2'],
    ['SET', 'r1', 'v'], ['RENAME', 'r1', 'r2'], ['SET', 'r3', 'v3'], ['RENAMENX', 'r3', 'r2'], ['RENAMENX', 'r3', 'r4'], ['DEL', 'm2'], ['UNLINK', 'gs'],
    ['COPY', 'h', 'hcopy'], ['RESTORE', 'restored', 0, dump], ['XADD', 'xs', '1-1', 'a', 'b'], ['XADD', 'xs', '2-1', 'c', 'd'], ['XDEL', 'xs', '1-1'],
    ['XGROUP', 'CREATE', 'xs', 'grp', '0'], ['EVAL', "redis.call('SET', KEYS[1], ARGV[1]) return 1", 1, 'ev', 'val'],
    ['SET', 'mv', 'x'], ['MOVE', 'mv', 1], ['SELECT', 1], ['SET', 'in1', 'one'], ['SET', 'gone1', 'x'], ['SELECT', 0],
    ['COPY', 'n', 'ncopy', 'DB', 1], ['SWAPDB', 0, 1], ['SET', 'after-swap', 'yes'], ['PUBLISH', 'chan', 'msg'],
  ];
}

async function runOnSource(c: Redis, ops: A[][]): Promise<CommandEvent[]> {
  const events: CommandEvent[] = [];
  let db = 0;
  let offset = 100;
  for (const op of ops) {
    const name = String(op[0]).toUpperCase();
    if (name === 'SELECT') {
      db = Number(op[1]);
      await c.select(db);
      continue;
    }
    await c.callBuffer(String(op[0]), ...op.slice(1));
    events.push(cmd(pos((offset += 10)), db, op));
  }
  return events;
}

describe('command events', () => {
  let source: RedisServer;
  const servers: RedisServer[] = [];
  let src: Redis;
  let events: CommandEvent[];
  beforeAll(async () => {
    source = await startRedis();
    servers.push(source);
    src = client(source.url);
    await src.set('to-dump', 'dumped value');
    const dump = (await src.dumpBuffer('to-dump'))!;
    await src.del('to-dump');
    events = await runOnSource(src, opsList(Date.now(), dump));
    // a MULTI unit run the same way on both sides
    const unit: A[][] = [['INCR', 'u:counter'], ['LPUSH', 'u:list', 'x'], ['SELECT', 1], ['APPEND', 'u:s1', 'ab'], ['SELECT', 0], ['SET', 'u:done', '1']];
    await src.select(0);
    const m = src.multi();
    for (const c of unit) m.call(String(c[0]), ...c.slice(1).map(String));
    await m.exec();
    await src.select(0);
    events.push(cmd(pos(90_000), 0, ...unit));
  });
  afterAll(async () => {
    src.disconnect();
    await Promise.all(servers.map((s) => s.stop()));
  });

  // encoded: the events as the applier reads them for a standalone destination, one-command events
  // already in RESP (events/encoded-command.ts)
  for (const [dbMap, encoded] of [[new Map([[0, 0], [1, 1]]), false], [new Map([[0, 2], [1, 3]]), false], [new Map([[0, 2], [1, 3]]), true]] as const) {
    it(`applies every operation of the reference's list (db map ${[...dbMap].map((e) => e.join(':')).join(',')}${encoded ? ', read in RESP' : ''}), equal to the source`, async () => {
      const evs = encoded ? (decodeBatch(encodeBatch(events), undefined, { encodeCommands: true }) as CommandEvent[]) : events;
      if (encoded) expect(evs.filter((e) => e instanceof EncodedCommandEvent).length).toBeGreaterThan(80);
      const d = await startRedis();
      servers.push(d);
      const sub = client(d.url);
      const got: string[] = [];
      await sub.subscribe('chan');
      sub.on('message', (_c, m) => got.push(m));
      const w = writer(d.url, { dbMap: new Map(dbMap) });
      for (const b of batches(evs, 5)) await w.applyBatch('t.db0:0', b);
      // the same events again: nothing doubles (INCR, LPUSH, APPEND, PUBLISH…)
      for (const b of batches(evs, 11)) expect((await w.applyBatch('t.db0:0', b)).applied).toBe(0);
      const r = await verifyDatabases(source.url, d.url, [0, 1], dbMap);
      expect(r.differences).toEqual([]);
      expect(r.compared).toBeGreaterThan(80);
      await new Promise((res) => setTimeout(res, 100));
      expect(got).toEqual(['msg']);
      // user keys of unmapped dbs and replistream's own keys survive SWAPDB
      const dc = client(d.url);
      expect(await dc.keys('replistream:*')).toEqual(expect.arrayContaining(['replistream:pos:test:t.db0:0']));
      dc.disconnect();
      sub.disconnect();
      await w.close();
    });
  }

  it('applies what the source itself propagates (AOF = replication stream), random commands included', async () => {
    const s = await startSource();
    const d = await startRedis();
    servers.push(s, d);
    const c = client(s.url);
    await c.set('to-dump', 'dumped value');
    const dump = (await c.dumpBuffer('to-dump'))!;
    await runOnSource(c, opsList(Date.now(), dump));
    await c.select(0);
    // non-deterministic or rewritten on propagation
    await c.sadd('rand', ...Array.from({ length: 50 }, (_, i) => `m${i}`));
    await c.spop('rand', 7);
    await c.srandmember('rand', 3);
    await c.set('ttl', 'x', 'EX', 500);
    await c.incrbyfloat('flt', 0.1);
    await c.lpush('bl', 'a', 'b');
    await c.blmove('bl', 'bl2', 'LEFT', 'RIGHT', 1);
    await c.call('EVAL', "redis.call('SET', KEYS[1], tostring(math.random())) return 1", 1, 'rnd');
    await c.call('FUNCTION', 'LOAD', "#!lua name=lib\nredis.register_function('setit', function(k, a) return redis.call('SET', k[1], a[1]) end)");
    await c.call('FCALL', 'setit', 1, 'via-function', 'ok');
    await c.getex('ttl', 'PX', 900_000);
    const m = c.multi();
    m.incr('mx');
    m.rpush('mxl', 'a');
    m.expire('mxl', 1000);
    await m.exec();
    await c.select(4);
    await c.set('in4', 'x');
    await c.flushdb();
    await c.set('in4b', 'y');
    const propagated = aofCommands(s);
    expect(propagated.some((x) => x[0].toString().toUpperCase() === 'SREM')).toBe(true); // SPOP was rewritten
    const evs = commandEventsFrom(propagated);
    const w = writer(d.url);
    for (const b of batches(evs, 13)) await w.applyBatch('t.db0:0', b);
    for (const b of batches(evs, 6)) await w.applyBatch('t.db0:0', b);
    const r = await verifyDatabases(s.url, d.url, [0, 1, 4], new Map());
    expect(r.differences).toEqual([]);
    const dc = client(d.url);
    expect(await dc.call('FUNCTION', 'LIST')).toHaveLength(1);
    dc.disconnect();
    c.disconnect();
    await w.close();
  });
});
