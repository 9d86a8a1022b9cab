import { afterAll, describe, expect, it } from 'vitest';
import type { ChangeEvent, SnapshotKey } from '../../../services/events/model.js';
import { ReplistreamError } from '../../../services/common/errors.js';
import { verifyDatabases } from '../../../services/destination/verify.js';
import { decodeBatch, encodeBatch } from '../../../services/events/codec.js';
import { EncodedCommandEvent } from '../../../services/events/encoded-command.js';
import { crc64WriteLE } from '../../../services/replication/rdb/crc64.js';
import { client, cmd, pos, type RedisServer, snapshotEvents, startRedis, writer } from './helpers.js';

async function caught(p: Promise<unknown>): Promise<ReplistreamError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(ReplistreamError);
  return e as ReplistreamError;
}

/** The same DUMP payload, claiming a newer RDB version (CRC left stale: it must never be sent). */
/** The same payload as a newer server would write it: another RDB version, its CRC recomputed. */
function bumpVersion(payload: Buffer, v: number): Buffer {
  const b = Buffer.from(payload);
  b.writeUInt16LE(v, b.length - 10);
  crc64WriteLE(b, 0, b.length - 8, b, b.length - 8);
  return b;
}

describe('destination errors', () => {
  const servers: RedisServer[] = [];
  const server = async (cfg: Record<string, string> = {}) => {
    const s = await startRedis(cfg);
    servers.push(s);
    return s;
  };
  afterAll(async () => void (await Promise.all(servers.map((s) => s.stop()))));

  it('refuses a RESTORE payload newer than the destination, naming both versions and write-mode', async () => {
    const s = await server();
    const d = await server();
    const sc = client(s.url);
    await sc.hset('h', 'a', '1', 'b', '2');
    await sc.set('s', 'x');
    const evs = await snapshotEvents(sc, 0);
    const newer = evs.map((e) => (e.kind === 'snapshot-key' ? { ...e, payload: bumpVersion(e.payload!, 12) } : e));
    // announced at snapshot-begin
    let err = await caught(writer(d.url).applyBatch('t:0', newer.map((e) => (e.kind === 'snapshot-begin' ? { ...e, rdbVersion: 12 } : e))));
    expect(err.setting).toBe('write-mode');
    expect(err.message).toMatch(/RDB version 12.*up to 10/);
    // found on the key itself
    err = await caught(writer(d.url).applyBatch('t:0', newer));
    expect(err.message).toMatch(/key "h".*RDB version 12 \(Redis 7\.4\).*Redis 7\.0\.15.*up to 10 \(Redis 7\.0\).*write-mode/);
    expect(await client(d.url).dbsize()).toBe(0);
    // with restore-fallback, the typed values are written instead
    const w = writer(d.url, { allowRestoreFallback: true });
    await w.applyBatch('t:0', newer);
    expect(w.stats.restoreFallbacks).toBe(2);
    expect((await verifyDatabases(s.url, d.url, [0], new Map())).differences).toEqual([]);
    // payload-only keys (snapshot-format restore): refused without restore-fallback; with it, the
    // typed values are read out of the payloads
    const payloadOnly = newer.map((e) => (e.kind === 'snapshot-key' ? { ...e, value: null } : e));
    const d2 = await server();
    err = await caught(writer(d2.url).applyBatch('t:0', payloadOnly));
    expect(err.setting).toBe('write-mode');
    const w2 = writer(d2.url, { allowRestoreFallback: true });
    await w2.applyBatch('t:0', payloadOnly);
    expect(w2.stats.restoreFallbacks).toBe(2);
    expect((await verifyDatabases(s.url, d2.url, [0], new Map())).differences).toEqual([]);
    await w2.close();
    sc.disconnect();
    await w.close();
  });

  it('refuses FLUSHDB/FLUSHALL with refuse-flush, naming the position', async () => {
    const d = await server();
    const w = writer(d.url, { refuseFlush: true });
    await w.applyBatch('t:0', [cmd(pos(10), 0, ['SET', 'a', '1'])]);
    for (const f of [['FLUSHDB'], ['FLUSHALL', 'ASYNC']]) {
      const err = await caught(w.applyBatch('t:0', [cmd(pos(20), 0, ['SET', 'b', '1']), cmd(pos(30), 0, f)]));
      expect(err.setting).toBe('refuse-flush');
      expect(err.message).toContain(`${f[0]} at epoch 1 offset 30 seq 0`);
    }
    const c = client(d.url);
    expect(await c.get('a')).toBe('1');
    expect(await c.exists('b')).toBe(0); // nothing of the batch was applied
    c.disconnect();
    await w.close();
  });

  it('stops on a command the destination does not know, or skips and counts it', async () => {
    const d = await server();
    const evs: ChangeEvent[] = [cmd(pos(10), 0, ['INCR', 'n']), cmd(pos(20), 0, ['INCR', 'n'], ['NOSUCHCMD', 'x']), cmd(pos(30), 0, ['INCR', 'n'])];
    const w = writer(d.url);
    const err = await caught(w.applyBatch('t:0', evs));
    expect(err.code).toBe('DESTINATION');
    expect(err.setting).toBe('on-command-error');
    expect(err.message).toMatch(/NOSUCHCMD of the event at epoch 1 offset 20 seq 0.*nothing of its transaction was applied/);
    const c = client(d.url);
    expect(await c.get('n')).toBeNull(); // the whole transaction was discarded, position unchanged
    const ws = writer(d.url, { onUnknownCommand: 'skip' });
    expect(await ws.applyBatch('t:0', evs)).toEqual({ applied: 3, skipped: 0 });
    expect(ws.stats.skipped).toEqual({ NOSUCHCMD: 1 });
    expect(await c.get('n')).toBe('3');
    c.disconnect();
    await Promise.all([w.close(), ws.close()]);
  });

  it('one-command events read in RESP: a refused command and a run-time error are named, stop, or are skipped and counted', async () => {
    const d = await server();
    const c = client(d.url);
    await c.set('l', 'a string, not a list');
    const inResp = (evs: ChangeEvent[]) => {
      const read = decodeBatch(encodeBatch(evs), undefined, { encodeCommands: true });
      expect(read.every((e) => e instanceof EncodedCommandEvent)).toBe(true);
      return read;
    };
    const unknown = inResp([cmd(pos(10), 0, ['INCR', 'n']), cmd(pos(20), 0, ['NOSUCHCMD', 'x']), cmd(pos(30), 0, ['INCR', 'n'])]);
    const err = await caught(writer(d.url).applyBatch('t:0', unknown));
    expect(err.message).toMatch(/NOSUCHCMD of the event at epoch 1 offset 20 seq 0.*nothing of its transaction was applied/);
    expect(await c.get('n')).toBeNull();
    const ws = writer(d.url, { onUnknownCommand: 'skip' });
    expect(await ws.applyBatch('t:0', unknown)).toEqual({ applied: 3, skipped: 0 });
    expect(ws.stats.skipped).toEqual({ NOSUCHCMD: 1 });
    expect(await c.get('n')).toBe('2');
    const wrongType = inResp([cmd(pos(10), 0, ['INCR', 'm']), cmd(pos(20), 0, ['LPUSH', 'l', 'x']), cmd(pos(30), 0, ['INCR', 'm'])]);
    const err2 = await caught(writer(d.url).applyBatch('t:1', wrongType));
    expect(err2.message).toMatch(/LPUSH of the event at epoch 1 offset 20.*WRONGTYPE/);
    expect(await c.get('replistream:pos:test:@error:t:1')).toContain('LPUSH');
    c.disconnect();
    await ws.close();
  });

  it('a run-time error (WRONGTYPE) stops the stream, is recorded, and a restart does not forget it', async () => {
    const d = await server();
    const c = client(d.url);
    await c.set('l', 'a string, not a list');
    const evs: ChangeEvent[] = [cmd(pos(10), 0, ['INCR', 'n'], ['LPUSH', 'l', 'x'], ['INCR', 'm'])];
    const w = writer(d.url);
    const err = await caught(w.applyBatch('t:0', evs));
    expect(err.message).toMatch(/LPUSH of the event at epoch 1 offset 10.*WRONGTYPE.*other commands of its transaction were applied/);
    expect([await c.get('n'), await c.get('m')]).toEqual(['1', '1']); // MULTI does not roll back
    const marker = await c.get('replistream:pos:test:@error:t:0');
    expect(marker).toContain('LPUSH');
    // a restarted writer refuses the stream until someone looks at it
    const err2 = await caught(writer(d.url).applyBatch('t:0', [cmd(pos(20), 0, ['INCR', 'n'])]));
    expect(err2.message).toContain('delete the key replistream:pos:test:@error:t:0');
    expect(await c.get('n')).toBe('1');
    await c.del('replistream:pos:test:@error:t:0');
    const w2 = writer(d.url);
    await w2.applyBatch('t:0', [...evs, cmd(pos(20), 0, ['INCR', 'n'])]);
    expect(await c.get('n')).toBe('2'); // the failed event was not re-applied
    // skip mode: counted, never silent
    const ws = writer(d.url, { onUnknownCommand: 'skip' });
    await ws.applyBatch('t:1', evs);
    expect(ws.stats.skipped).toEqual({ LPUSH: 1 });
    c.disconnect();
    await Promise.all([w.close(), w2.close(), ws.close()]);
  });

  it('fails clearly on an unreachable destination and on refused credentials', async () => {
    const d = await server();
    const admin = client(d.url);
    await admin.config('SET', 'requirepass', 'secret'); // (the helper's readiness PING needs no password)
    admin.disconnect();
    let err = await caught(writer(d.url.replace('redis://', 'redis://:s3cret-pw@')).applyBatch('t:0', [cmd(pos(1), 0, ['SET', 'a', '1'])]));
    expect(err.code).toBe('AUTH');
    expect(err.message).not.toContain('s3cret-pw');
    const w = writer(d.url.replace('redis://', 'redis://:secret@'));
    await w.applyBatch('t:0', [cmd(pos(1), 0, ['SET', 'a', '1'])]);
    await w.close();
    err = await caught(writer('redis://127.0.0.1:1').start());
    expect(err.code).toBe('CONNECTION');
    expect(err.retriable).toBe(true);
  });

  // Gaps, replays and re-sent series of pieces are the applier's (test/integration/destination/pieces.test.ts).
  it('refuses a record piece: the writer takes whole events, nothing of the batch is written', async () => {
    const s = await server();
    const d = await server();
    const sc = client(s.url);
    await sc.rpush('big', ...Array.from({ length: 500 }, (_, i) => `e${i}`));
    const evs = await snapshotEvents(sc, 0, { recordBytes: 2048 });
    const pieces = evs.filter((e): e is SnapshotKey => e.kind === 'snapshot-key');
    expect(pieces.length).toBeGreaterThanOrEqual(3);
    const w = writer(d.url);
    const err = await caught(w.applyBatch('t:0', [evs[0], ...pieces]));
    expect(err.code).toBe('INTERNAL');
    expect(err.retriable).toBe(false);
    expect(err.message).toMatch(/stream t:0: piece 0 of the event at epoch 1 offset 1000 seq 1 reached the writer; the writer takes whole events; record pieces are rebuilt by the applier's stream queue/);
    const dc = client(d.url);
    expect(await dc.dbsize()).toBe(0); // not even the snapshot-begin before it, nor a position
    dc.disconnect();
    await w.close();
    sc.disconnect();
  });

  it('hash field TTLs need HPEXPIREAT (Redis 7.4): on 7.0 the write stops, or is skipped and counted', async () => {
    const d = await server();
    const key: SnapshotKey = {
      kind: 'snapshot-key',
      pos: pos(10),
      db: 0,
      key: Buffer.from('h'),
      type: 'hash',
      expireAtMs: null,
      payload: null,
      value: { type: 'hash', entries: [{ field: Buffer.from('f'), value: Buffer.from('v'), expireAtMs: Date.now() + 60_000 }] },
      piece: null,
    };
    const err = await caught(writer(d.url, { writeMode: 'commands' }).applyBatch('t:0', [key]));
    expect(err.message).toMatch(/HPEXPIREAT of the event at epoch 1 offset 10/);
    const w = writer(d.url, { writeMode: 'commands', onUnknownCommand: 'skip' });
    await w.applyBatch('t:0', [key]);
    expect(w.stats.skipped).toEqual({ HPEXPIREAT: 1 });
    const c = client(d.url);
    expect(await c.hget('h', 'f')).toBe('v');
    c.disconnect();
    await w.close();
  });
});

describe('heartbeats', () => {
  it('write nothing but the position, and give the lag', async () => {
    const d = await startRedis();
    try {
      const w = writer(d.url, { dbMap: new Map([[0, 1]]) });
      expect(w.latestHeartbeatMs()).toBeNull();
      const t = Date.now() - 1500;
      await w.applyBatch('t:0', [{ kind: 'heartbeat', pos: pos(10), db: 0, timeMs: t }]);
      expect(w.latestHeartbeatMs()).toBe(t);
      expect(w.lagMs(t + 1500)).toBe(1500);
      // a position-only heartbeat (time 0: the applier passing a barrier) leaves the lag alone
      await w.applyBatch('t:0', [{ kind: 'heartbeat', pos: pos(20), db: 0, timeMs: 0 }]);
      expect(w.latestHeartbeatMs()).toBe(t);
      const c1 = client(d.url, 1);
      const c0 = client(d.url, 0);
      expect(await c1.dbsize()).toBe(0);
      expect(await c0.keys('*')).toEqual(expect.arrayContaining(['replistream:pos:test:t:0']));
      expect(await w.storedPosition('t:0')).toMatchObject({ offset: 20 });
      c0.disconnect();
      c1.disconnect();
      await w.close();
    } finally {
      await d.stop();
    }
  });
});
