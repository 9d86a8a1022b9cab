import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import type { ChangeEvent, SnapshotKey } from '../../../services/events/model.js';
import { verifyDatabases } from '../../../services/destination/verify.js';
import { batches, client, fillEveryType, positionKeys, type RedisServer, snapshotEvents, startRedis, wholeEvents, writer } from './helpers.js';

describe('snapshot keys', () => {
  let source: RedisServer;
  const dests: RedisServer[] = [];
  let src: Redis;
  beforeAll(async () => {
    source = await startRedis();
    src = client(source.url);
    await fillEveryType(src);
  });
  afterAll(async () => {
    src.disconnect();
    await Promise.all([source, ...dests].map((s) => s.stop()));
  });
  const dest = async () => {
    const d = await startRedis();
    dests.push(d);
    return d;
  };

  const variants = [
    { name: '', o: {} },
    // pieces are rebuilt by the applier's stream queue (as in production), then written whole
    { name: ', events split into 2 KB Kafka-record pieces and rebuilt', o: { recordBytes: 2048 } },
    { name: ', big keys in appended parts', o: { parts: 3 } },
  ];
  for (const mode of ['restore', 'commands'] as const) {
    for (const v of variants) {
      it(`writes every type in ${mode} mode${v.name}, equal to the source`, async () => {
        const d = await dest();
        let events = await snapshotEvents(src, 0, v.o);
        if (v.o.recordBytes) {
          expect(events.filter((e) => e.kind === 'snapshot-key' && e.piece).length).toBeGreaterThan(20);
          events = await wholeEvents(events);
          expect(events).toHaveLength((await snapshotEvents(src, 0)).length);
        }
        if (v.o.parts) expect(events.filter((e) => e.kind === 'snapshot-key' && e.append).length).toBeGreaterThan(20);
        const w = writer(d.url, { writeMode: mode });
        for (const batch of batches(events, 7)) await w.applyBatch('t.db0:0', batch);
        const r = await verifyDatabases(source.url, d.url, [0], new Map());
        expect(r.differences).toEqual([]);
        expect(r.equal).toBe(true);
        expect(r.compared).toBeGreaterThanOrEqual(40);
        const dc = client(d.url);
        expect(await positionKeys(dc)).toEqual(['replistream:pos:test:@epoch:db0', 'replistream:pos:test:t.db0:0']);
        dc.disconnect();
        await w.close();
      });
    }
  }

  it('maps dbs, skips expired keys and deletes them at the destination', async () => {
    const d = await dest();
    const now = Date.now();
    const events = await snapshotEvents(src, 0);
    const expired: SnapshotKey = { ...(events[1] as SnapshotKey), key: Buffer.from('gone'), expireAtMs: now - 1000, pos: { ...events[1].pos, seq: 9999 } };
    const dc = client(d.url, 5);
    await dc.set('gone', 'stale');
    const all: ChangeEvent[] = [...events.slice(0, -1), expired, events[events.length - 1]];
    const w = writer(d.url, { dbMap: new Map([[0, 5]]), writeMode: 'commands' });
    await w.applyBatch('t.db0:0', all);
    expect(await dc.exists('gone')).toBe(0);
    const r = await verifyDatabases(source.url, d.url, [0], new Map([[0, 5]]));
    expect(r.differences).toEqual([]);
    expect(await dc.dbsize()).toBe(r.compared / 2);
    dc.disconnect();
    await w.close();
  });
});
