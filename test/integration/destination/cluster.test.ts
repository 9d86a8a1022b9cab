import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, type Redis } from 'ioredis';
import type { CommandEvent } from '../../../services/events/model.js';
import { ReplistreamError } from '../../../services/common/errors.js';
import { keySlot } from '../../../services/destination/connection.js';
import { precheckDestination } from '../../../services/destination/precheck.js';
import { verifyDatabases } from '../../../services/destination/verify.js';
import { batches, client, cmd, fillEveryType, pos, type RedisServer, snapshotEvents, startCluster, startRedis, type TestCluster, wholeEvents, writer } from './helpers.js';

type A = string | number;

/** Single-key writes all over the keyspace, multi-key commands inside hash tags, units spanning slots. */
function clusterOps(): A[][][] {
  const units: A[][][] = [];
  for (let i = 0; i < 200; i++) {
    units.push([['INCR', `counter:${i % 37}`]]);
    units.push([['RPUSH', `list:${i % 23}`, String(i)]]);
    if (i % 10 === 0) units.push([['APPEND', `log:${i % 7}`, 'x'], ['INCR', `counter:${i % 11}`], ['SADD', `set:${i % 5}`, String(i)]]); // a unit over several slots
  }
  units.push(
    [['SET', '{a}1', 'v']], [['RENAME', '{a}1', '{a}2']], [['SADD', '{s}1', 'a', 'b', 'c']], [['SADD', '{s}2', 'b', 'c', 'd']],
    [['SINTERSTORE', '{s}i', '{s}1', '{s}2']], [['SUNIONSTORE', '{s}u', '{s}1', '{s}2']], [['SMOVE', '{s}1', '{s}2', 'a']],
    [['ZADD', '{z}1', 1, 'a', 2, 'b']], [['ZADD', '{z}2', 3, 'b']], [['ZUNIONSTORE', '{z}u', 2, '{z}1', '{z}2']], [['ZINTERSTORE', '{z}i', 2, '{z}1', '{z}2', 'WEIGHTS', 2, 1]],
    [['SETBIT', '{b}1', 5, 1]], [['SETBIT', '{b}2', 9, 1]], [['BITOP', 'XOR', '{b}x', '{b}1', '{b}2']], [['PFADD', '{h}1', 'a']], [['PFADD', '{h}2', 'b']],
    [['PFMERGE', '{h}m', '{h}1', '{h}2']], [['RPUSH', '{l}1', 'a', 'b']], [['RPOPLPUSH', '{l}1', '{l}2']], [['COPY', '{a}2', '{a}3']],
    [['MSET', '{m}1', 'a', '{m}2', 'b']], [['EVAL', "redis.call('INCR', KEYS[1]) return redis.call('INCR', KEYS[2])", 2, '{e}1', '{e}2']],
    [['HSET', 'hash', 'f', 'v']], [['HINCRBYFLOAT', 'hash', 'n', '1.5']], [['GEOADD', 'geo', 13.361389, 38.115556, 'Palermo']], [['PUBLISH', 'chan', 'hello']],
    [['FUNCTION', 'LOAD', "#!lua name=clib\nredis.register_function('f1', function(k, a) return 1 end)"]],
    [['PEXPIREAT', 'counter:3', Date.now() + 1_000_000]] /* absolute, as a source propagates it */, [['PEXPIREAT', 'list:4', Date.now() + 5_000_000]], [['DEL', 'counter:5']],
  );
  return units;
}

describe('cluster destination', () => {
  let cluster: TestCluster;
  let source: RedisServer;
  let src: Redis;
  let events: CommandEvent[];
  const others: RedisServer[] = [];
  beforeAll(async () => {
    cluster = await startCluster(3);
    source = await startRedis();
    src = client(source.url);
    const units = clusterOps();
    events = [];
    let offset = 100;
    for (const u of units) {
      const m = src.multi();
      for (const c of u) m.call(String(c[0]), ...c.slice(1).map(String));
      await m.exec();
      events.push(cmd(pos((offset += 10)), 0, ...u));
    }
  });
  afterAll(async () => {
    src?.disconnect();
    await Promise.all([cluster?.stop(), source?.stop(), ...others.map((s) => s.stop())]);
  });

  const clearCluster = async () => {
    for (const n of cluster.nodes) {
      const c = client(n.url);
      await c.flushall();
      await c.call('FUNCTION', 'FLUSH');
      c.disconnect();
    }
  };

  it('applies command units slot by slot, exactly once, equal to the source', async () => {
    await clearCluster();
    const sub = new Cluster([{ host: '127.0.0.1', port: cluster.nodes[1].port }], { redisOptions: { protocol: 2 } });
    const got: string[] = [];
    await sub.subscribe('chan');
    sub.on('message', (_c, m) => got.push(m));
    const w = writer(cluster.url);
    for (const b of batches(events, 25)) await w.applyBatch('t.db0:0', b);
    expect(w.destination?.topology).toBe('cluster');
    for (const b of batches(events, 60)) expect((await w.applyBatch('t.db0:0', b)).applied).toBe(0);
    const r = await verifyDatabases(source.url, cluster.url, [0], new Map());
    expect(r.differences).toEqual([]);
    expect(r.compared).toBeGreaterThan(100);
    // positions are per slot, in their slot
    const slotsUsed = new Set(events.flatMap((e) => e.commands.map((c) => keySlot(c[1]))));
    let posKeys = 0;
    for (const n of cluster.nodes) {
      const c = client(n.url);
      for (const k of await c.keys('replistream:pos:test:t.db0:0:*')) {
        posKeys++;
        expect(String(await c.call('CLUSTER', 'KEYSLOT', k))).toBe(String(keySlot(k)));
      }
      expect(await c.call('FUNCTION', 'LIST')).toHaveLength(1); // on every master
      c.disconnect();
    }
    expect(posKeys).toBeGreaterThan(slotsUsed.size / 2);
    await new Promise((res) => setTimeout(res, 200));
    expect(got).toEqual(['hello']);
    sub.disconnect();
    await w.close();
  });

  it('survives a crash mid-run without doubling, per slot', async () => {
    await clearCluster();
    for (let round = 0; round < 4; round++) {
      const w = writer(cluster.url, { maxOpsPerTransaction: 5 });
      await w.start();
      const running = (async () => {
        for (const b of batches(events, 40)) await w.applyBatch('t.db0:0', b);
      })().then(
        () => null,
        (e: unknown) => e,
      );
      await new Promise((r) => setTimeout(r, 10 + Math.random() * 40));
      w.disconnect();
      const err = await running;
      if (err) expect(err).toBeInstanceOf(ReplistreamError);
    }
    const w = writer(cluster.url);
    for (const b of batches(events, 100)) await w.applyBatch('t.db0:0', b);
    await w.close();
    expect((await verifyDatabases(source.url, cluster.url, [0], new Map())).differences).toEqual([]);
  });

  for (const writeMode of ['restore', 'commands'] as const) {
    it(`receives snapshot keys (${writeMode}); a new epoch sweeps every slot; FLUSHDB clears it`, async () => {
      await clearCluster();
      const s = await startRedis();
      others.push(s);
      const sc = client(s.url);
      await fillEveryType(sc);
      for (let i = 0; i < 300; i++) await sc.set(`spread:${i}`, String(i));
      const w = writer(cluster.url, { writeMode });
      for (const b of batches(await wholeEvents(await snapshotEvents(sc, 0, { epoch: 1, recordBytes: 4096 })), 50)) await w.applyBatch('t.db0:0', b);
      expect((await verifyDatabases(s.url, cluster.url, [0], new Map())).differences).toEqual([]);
      // epoch 2: half the keys are gone at the source
      for (let i = 0; i < 300; i += 2) await sc.del(`spread:${i}`);
      await sc.del('list:big');
      for (const b of batches(await snapshotEvents(sc, 0, { epoch: 2 }), 50)) await w.applyBatch('t.db0:0', b);
      expect((await verifyDatabases(s.url, cluster.url, [0], new Map())).differences).toEqual([]);
      // FLUSHDB from the source, then writes after it
      await sc.flushdb();
      await sc.set('after-flush', '1');
      await w.applyBatch('t.db0:0', [cmd(pos(5000, 0, 2), 0, ['INCR', 'x'], ['FLUSHDB'], ['SET', 'after-flush', '1'])]);
      await w.applyBatch('t.db0:0', [cmd(pos(5000, 0, 2), 0, ['INCR', 'x'], ['FLUSHDB'], ['SET', 'after-flush', '1'])]); // again: nothing
      expect((await verifyDatabases(s.url, cluster.url, [0], new Map())).differences).toEqual([]);
      // the intercept precheck sees the cluster's keys, not replistream's
      const err = (await precheckDestination(cluster.url, [0], 'intercept').catch((e: unknown) => e)) as ReplistreamError;
      expect(err.message).toMatch(/db 0 is not empty .*"after-flush"/);
      sc.disconnect();
      await w.close();
    });
  }

  it('applies a command whose keys span slots (emulated) in either on-command-error mode, skipping nothing', async () => {
    await clearCluster();
    const ev = [cmd(pos(10), 0, ['SET', 'a', '1']), cmd(pos(20), 0, ['RENAME', 'a', 'b']), cmd(pos(30), 0, ['SET', 'c', '1'])];
    expect(keySlot('a')).not.toBe(keySlot('b'));
    const f = writer(cluster.url);
    await f.applyBatch('t:0', ev);
    await f.close();
    const at = async (k: string) => {
      const nc = new Cluster([{ host: '127.0.0.1', port: cluster.nodes[0].port }], { redisOptions: { protocol: 2 } });
      try {
        return await nc.get(k);
      } finally {
        nc.disconnect();
      }
    };
    expect([await at('a'), await at('b'), await at('c')]).toEqual([null, '1', '1']);
    await clearCluster();
    const w = writer(cluster.url, { onUnknownCommand: 'skip', positionKeyPrefix: 'replistream:pos:skip' });
    await w.applyBatch('t:0', ev);
    expect(w.stats.skipped).toEqual({});
    expect([await at('a'), await at('b')]).toEqual([null, '1']);
    await w.close();
  });
});
