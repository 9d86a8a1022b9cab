/**
 * Commands whose keys fall in different slots of a cluster destination, applied by the writer:
 * every kind the source propagates (split per slot or emulated), with TTLs, missing inputs, RENAME
 * onto an existing key, MSETNX with an existing key, and units (MULTI/EXEC) spanning slots. The
 * same commands run on a real source; the cluster must end equal to it, key by key. A run cut
 * between two slot transactions of one command is completed, not applied twice.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import type { CommandEvent } from '../../../services/events/model.js';
import { keySlot } from '../../../services/destination/connection.js';
import { encodePosition, withPart } from '../../../services/destination/position.js';
import { verifyDatabases } from '../../../services/destination/verify.js';
import { batches, client, cmd, pos, type RedisServer, startCluster, startRedis, type TestCluster, writer } from './helpers.js';
import { type A, crossSlotUnits } from '../../helpers/cross-slot-workload.js';

/** Runs each unit on the source (in a MULTI) and returns the events a capture would send. */
async function sourceEvents(src: Redis, units: A[][][], firstOffset: number): Promise<CommandEvent[]> {
  const events: CommandEvent[] = [];
  let offset = firstOffset;
  for (const u of units) {
    const m = src.multi();
    for (const c of u) m.call(String(c[0]), ...c.slice(1).map(String));
    const res = (await m.exec()) ?? [];
    for (const [e] of res) if (e) throw new Error(`the source refused ${u.map((c) => c[0]).join(',')}: ${e.message}`);
    events.push(cmd(pos((offset += 10)), 0, ...u));
  }
  return events;
}

describe('cross-slot commands into a cluster destination', () => {
  let cluster: TestCluster;
  let source: RedisServer;
  let src: Redis;
  beforeAll(async () => {
    cluster = await startCluster(3);
    source = await startRedis();
    src = client(source.url);
  });
  afterAll(async () => {
    src?.disconnect();
    await Promise.all([cluster?.stop(), source?.stop()]);
  });

  it.each(['restore', 'commands'] as const)('every kind, once, equal to the source (write mode %s)', async (writeMode) => {
    const units = crossSlotUnits(`${writeMode}:`, Date.now());
    const events = await sourceEvents(src, units, 1000);
    const w = writer(cluster.url, { writeMode, positionKeyPrefix: `replistream:pos:${writeMode}` });
    try {
      for (const b of batches(events, 7)) await w.applyBatch('t.db0:0', b);
      // re-delivered: nothing applied again
      for (const b of batches(events, 20)) expect((await w.applyBatch('t.db0:0', b)).applied).toBe(0);
      expect(w.stats.skipped).toEqual({});
    } finally {
      await w.close();
    }
    const r = await verifyDatabases(source.url, cluster.url, [0], new Map());
    expect(r.differences).toEqual([]);
    expect(r.compared).toBeGreaterThan(60);
  });

  it('a RENAME cut after its first slot transaction is completed, not applied twice', async () => {
    const p = 'cut:';
    const events = await sourceEvents(src, [[['SET', `${p}a`, 'v']], [['PEXPIREAT', `${p}a`, Date.now() + 600_000]], [['RENAME', `${p}a`, `${p}b`]], [['INCR', `${p}a`]]], 5000);
    expect(keySlot(`${p}a`)).not.toBe(keySlot(`${p}b`));
    const stream = 't.db0:1';
    const prefix = 'replistream:pos:cut';
    const w1 = writer(cluster.url, { positionKeyPrefix: prefix });
    await w1.applyBatch(stream, events.slice(0, 2));
    await w1.close();
    // the first step of the RENAME (write the new name in its slot, with the position) as a crashed writer left it
    const c = client(cluster.url);
    const { Cluster } = await import('ioredis');
    const cc = new Cluster([{ host: '127.0.0.1', port: cluster.nodes[0].port }]);
    try {
      const dump = await cc.dumpBuffer(`${p}a`);
      const pttl = await cc.pttl(`${p}a`);
      const slotB = keySlot(`${p}b`);
      const { PositionKeys } = await import('../../../services/destination/position.js');
      const keys = new PositionKeys(prefix, true);
      await cc.restore(`${p}b`, pttl, dump!, 'REPLACE');
      await cc.set(keys.position(stream, slotB), encodePosition(withPart(events[2].pos, 1)));
      const w2 = writer(cluster.url, { positionKeyPrefix: prefix });
      await w2.applyBatch(stream, events);
      await w2.close();
      expect(await cc.get(`${p}a`)).toBe('1'); // deleted by the rename, then INCR
      expect(await cc.get(`${p}b`)).toBe('v');
      expect(await cc.pttl(`${p}b`)).toBeGreaterThan(500_000);
    } finally {
      c.disconnect();
      cc.disconnect();
    }
    const r = await verifyDatabases(source.url, cluster.url, [0], new Map());
    expect(r.differences).toEqual([]);
  });

  it('an MSETNX cut after its first slot is completed, though its keys there now exist', async () => {
    const p = 'cutnx:';
    const names = ['k1', 'k2', 'k3', 'k4'].map((n) => `${p}${n}`);
    const events = await sourceEvents(src, [[['MSETNX', ...names.flatMap((k, i) => [k, `v${i}`])]]], 7000);
    const slots = [...new Set(names.map((k) => keySlot(k)))].sort((a, b) => a - b);
    expect(slots.length).toBeGreaterThan(1);
    const stream = 't.db0:3';
    const prefix = 'replistream:pos:cutnx';
    const { Cluster } = await import('ioredis');
    const { PositionKeys } = await import('../../../services/destination/position.js');
    const cc = new Cluster([{ host: '127.0.0.1', port: cluster.nodes[0].port }]);
    try {
      // the first slot's transaction, as a crashed writer left it: its keys set, its position at the command
      for (const [i, k] of names.entries()) if (keySlot(k) === slots[0]) await cc.set(k, `v${i}`);
      await cc.set(new PositionKeys(prefix, true).position(stream, slots[0]), encodePosition(withPart(events[0].pos, 1)));
      const w = writer(cluster.url, { positionKeyPrefix: prefix });
      await w.applyBatch(stream, events);
      await w.close();
      expect(await Promise.all(names.map((k) => cc.get(k)))).toEqual(['v0', 'v1', 'v2', 'v3']);
    } finally {
      cc.disconnect();
    }
  });

  it('refuses what it cannot emulate, naming the command, unless on-command-error is skip', async () => {
    const ev = cmd(pos(9000), 0, ['EVAL', "redis.call('SET', KEYS[1], 1) redis.call('SET', KEYS[2], 1)", 2, 'ev:a', 'ev:b']);
    const w = writer(cluster.url, { positionKeyPrefix: 'replistream:pos:eval' });
    await expect(w.applyBatch('t.db0:2', [ev])).rejects.toThrow(/EVAL .*cannot be emulated across slots/);
    await w.close();
    const s = writer(cluster.url, { positionKeyPrefix: 'replistream:pos:eval', onUnknownCommand: 'skip' });
    await s.applyBatch('t.db0:2', [ev]);
    expect(s.stats.skipped).toEqual({ EVAL: 1 });
    await s.close();
  });
});
