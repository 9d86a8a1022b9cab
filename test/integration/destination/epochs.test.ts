import { afterAll, describe, expect, it } from 'vitest';
import type { ChangeEvent } from '../../../services/events/model.js';
import { verifyDatabases } from '../../../services/destination/verify.js';
import { batches, client, cmd, type RedisServer, snapshotEvents, startRedis, writer } from './helpers.js';

describe('snapshot epochs (G6)', () => {
  const servers: RedisServer[] = [];
  const server = async () => {
    const s = await startRedis();
    servers.push(s);
    return s;
  };
  afterAll(async () => void (await Promise.all(servers.map((s) => s.stop()))));

  for (const writeMode of ['restore', 'commands'] as const) {
    it(`a new snapshot leaves the mapped db equal to it, deleted keys included (${writeMode})`, async () => {
      const s = await server();
      const d = await server();
      const sc = client(s.url);
      await sc.set('keep', 'v1');
      await sc.set('deleted-later', 'x');
      await sc.rpush('list', 'a', 'b');
      const dbMap = new Map([[0, 2]]);
      const w = writer(d.url, { writeMode, dbMap });
      const e1 = await snapshotEvents(sc, 0, { epoch: 1, offset: 100 });
      await w.applyBatch('t.db0:0', e1);
      // epoch 1 commands
      await sc.rpush('list', 'c');
      await w.applyBatch('t.db0:0', [cmd({ epoch: 1, offset: 200, seq: 0, replid: 'r' }, 0, ['RPUSH', 'list', 'c'])]);
      // user data outside the mapped db, and in the position db
      const dc0 = client(d.url, 0);
      const dc9 = client(d.url, 9);
      await dc9.set('user-key', 'mine');
      await dc0.set('user-key-db0', 'mine too');
      // the source changes while nobody listens; a full resync follows (epoch 2)
      await sc.del('deleted-later');
      await sc.set('keep', 'v2');
      await sc.set('new', 'n');
      const e2 = await snapshotEvents(sc, 0, { epoch: 2, offset: 50 }); // offsets restart: epochs order first
      for (const b of batches(e2, 2)) await w.applyBatch('t.db0:0', b);
      expect(w.stats.epochFlushes).toBe(1);
      const r = await verifyDatabases(s.url, d.url, [0], dbMap);
      expect(r.differences).toEqual([]);
      expect(await dc9.get('user-key')).toBe('mine');
      expect(await dc0.get('user-key-db0')).toBe('mine too');
      // a lagging stream still delivering epoch-1 commands writes nothing now
      const late: ChangeEvent[] = [cmd({ epoch: 1, offset: 900, seq: 0, replid: 'r' }, 0, ['SET', 'deleted-later', 'stale'], ['RPUSH', 'list', 'zzz'])];
      expect(await w.applyBatch('t.db0:1', late)).toEqual({ applied: 0, skipped: 1 });
      const w2 = writer(d.url, { writeMode, dbMap }); // another applier instance, fresh memory
      expect(await w2.applyBatch('t.db0:3', late)).toEqual({ applied: 0, skipped: 1 });
      expect((await verifyDatabases(s.url, d.url, [0], dbMap)).differences).toEqual([]);
      // replaying the whole history changes nothing
      const w3 = writer(d.url, { writeMode, dbMap });
      await w3.applyBatch('t.db0:0', [...e1, ...e2]);
      expect((await verifyDatabases(s.url, d.url, [0], dbMap)).differences).toEqual([]);
      expect(w3.stats.epochFlushes).toBe(0);
      for (const c of [sc, dc0, dc9]) c.disconnect();
      await Promise.all([w.close(), w2.close(), w3.close()]);
    });
  }

  it('the first stream that sees a new epoch empties the db once; other streams do not empty it again', async () => {
    const s = await server();
    const d = await server();
    const sc = client(s.url);
    for (let i = 0; i < 20; i++) await sc.set(`k${i}`, `v${i}`);
    const w = writer(d.url);
    await w.applyBatch('t.db0:0', await snapshotEvents(sc, 0, { epoch: 1 }));
    await sc.flushall();
    for (let i = 0; i < 20; i += 2) await sc.set(`k${i}`, `new${i}`);
    const e2 = await snapshotEvents(sc, 0, { epoch: 2 });
    // the epoch-2 keys are spread over two partitions; only partition 0 carries snapshot-begin
    const keys = e2.filter((e) => e.kind === 'snapshot-key');
    const p0 = [e2[0], ...keys.filter((_, i) => i % 2 === 0)];
    const p1 = keys.filter((_, i) => i % 2 === 1);
    const w1 = writer(d.url);
    await w1.applyBatch('t.db0:1', p1); // partition 1 first: it enters epoch 2 and empties the db
    await w.applyBatch('t.db0:0', p0); // partition 0 then: its snapshot-begin must not empty it again
    expect((await verifyDatabases(s.url, d.url, [0], new Map())).differences).toEqual([]);
    expect(w.stats.epochFlushes + w1.stats.epochFlushes).toBe(1);
    sc.disconnect();
    await Promise.all([w.close(), w1.close()]);
  });
});
