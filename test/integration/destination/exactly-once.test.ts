import { afterAll, describe, expect, it } from 'vitest';
import type { ChangeEvent, CommandEvent } from '../../../services/events/model.js';
import { ReplistreamError } from '../../../services/common/errors.js';
import { verifyDatabases } from '../../../services/destination/verify.js';
import { batches, client, cmd, pos, type RedisServer, snapshotEvents, startRedis, writer } from './helpers.js';

/** A workload of non-idempotent commands: counters, list pushes, appends, one MULTI unit every 10. */
function workload(n: number, start = 1000): CommandEvent[] {
  const out: CommandEvent[] = [];
  for (let i = 0; i < n; i++) {
    const p = pos(start + i * 10);
    if (i % 10 === 9) out.push(cmd(p, 0, ['INCR', 'unit'], ['RPUSH', 'unitlist', String(i)], ['APPEND', 'unitlog', '.']));
    else if (i % 3 === 0) out.push(cmd(p, 0, ['INCR', 'counter']));
    else if (i % 3 === 1) out.push(cmd(p, 0, ['LPUSH', 'list', String(i)]));
    else out.push(cmd(p, 0, ['APPEND', 'log', 'x'], ['HINCRBY', 'h', 'n', 1]));
  }
  return out;
}

async function expectExact(url: string, n: number): Promise<void> {
  const c = client(url);
  const units = Math.floor(n / 10);
  let counter = 0;
  let list = 0;
  let log = 0;
  for (let i = 0; i < n; i++) {
    if (i % 10 === 9) continue;
    if (i % 3 === 0) counter++;
    else if (i % 3 === 1) list++;
    else log++;
  }
  expect(Number(await c.get('counter'))).toBe(counter);
  expect(await c.llen('list')).toBe(list);
  expect((await c.get('log'))?.length ?? 0).toBe(log);
  expect(Number(await c.hget('h', 'n'))).toBe(log);
  expect(Number(await c.get('unit'))).toBe(units);
  expect(await c.llen('unitlist')).toBe(units);
  expect((await c.get('unitlog'))?.length ?? 0).toBe(units);
  // list order is the source's
  const l = await c.lrange('list', 0, -1);
  expect(l.map(Number)).toEqual([...l.map(Number)].sort((a, b) => b - a));
  c.disconnect();
}

describe('exactly once', () => {
  const servers: RedisServer[] = [];
  const server = async () => {
    const s = await startRedis();
    servers.push(s);
    return s;
  };
  afterAll(async () => void (await Promise.all(servers.map((s) => s.stop()))));

  it('applies the same batch twice and overlapping batches once', async () => {
    const d = await server();
    const evs = workload(300);
    const w = writer(d.url);
    expect(await w.applyBatch('s:0', evs.slice(0, 100))).toEqual({ applied: 100, skipped: 0 });
    expect(await w.applyBatch('s:0', evs.slice(0, 100))).toEqual({ applied: 0, skipped: 100 });
    expect(await w.applyBatch('s:0', evs.slice(50, 200))).toEqual({ applied: 100, skipped: 50 });
    await w.applyBatch('s:0', evs.slice(150, 300));
    await w.close();
    // a new writer (a restarted applier) re-delivered everything
    const w2 = writer(d.url);
    for (const b of batches(evs, 37)) await w2.applyBatch('s:0', b);
    expect(w2.stats.applied).toBe(0);
    expect(w2.stats.duplicates).toBe(300);
    await w2.close();
    await expectExact(d.url, 300);
  });

  it('keeps streams apart: each stream has its own position', async () => {
    const d = await server();
    const w = writer(d.url);
    await w.applyBatch('s:0', [cmd(pos(10), 0, ['INCR', 'a'])]);
    await w.applyBatch('s:1', [cmd(pos(10), 0, ['INCR', 'b'])]);
    await w.applyBatch('s:1', [cmd(pos(10), 0, ['INCR', 'b'])]);
    const c = client(d.url);
    expect([await c.get('a'), await c.get('b')]).toEqual(['1', '1']);
    expect(await w.storedPosition('s:1')).toMatchObject({ epoch: 1, offset: 10, seq: 0 });
    c.disconnect();
    await w.close();
  });

  for (const how of ['client disconnect', 'server-side CLIENT KILL'] as const) {
    it(`survives a crash mid-run (${how}) without doubling anything`, async () => {
      const d = await server();
      const n = 3000;
      const evs = workload(n);
      const killer = client(d.url);
      let crashes = 0;
      // the writer may finish a run before the crash lands: go on until at least one crash hit it
      for (let round = 0; round < 30 && (round < 6 || crashes === 0); round++) {
        const w = writer(d.url, { maxOpsPerTransaction: 40 });
        await w.start();
        const running = (async () => {
          for (const b of batches(evs, 250)) await w.applyBatch('s:0', b);
        })().then(
          () => null,
          (e: unknown) => e,
        );
        // the crash lands after a random number of the run's 75 transactions (a fast writer
        // finished whole runs inside a fixed delay); the writer either fails with a
        // ReplistreamError or (a server-side kill between two transactions) reconnects on its own
        let finished = false;
        void running.then(() => (finished = true));
        const after = 1 + Math.floor(Math.random() * 40);
        for (const until = Date.now() + 2000; !finished && w.stats.transactions < after && Date.now() < until; ) await new Promise((r) => setImmediate(r));
        await Promise.resolve();
        const midRun = !finished;
        if (how === 'client disconnect') w.disconnect();
        else await killer.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
        const err = await running;
        if (err) expect(err).toBeInstanceOf(ReplistreamError);
        if (err || midRun) crashes++;
        w.disconnect();
      }
      expect(crashes).toBeGreaterThan(0);
      const w = writer(d.url);
      for (const b of batches(evs, 500)) await w.applyBatch('s:0', b);
      await w.close();
      killer.disconnect();
      await expectExact(d.url, n);
    });
  }

  it('refuses to interleave with a second writer of the same stream (zombie applier)', async () => {
    const d = await server();
    const evs = workload(1000);
    const w1 = writer(d.url, { maxOpsPerTransaction: 20 });
    const w2 = writer(d.url, { maxOpsPerTransaction: 20 });
    const errors: unknown[] = [];
    // each writer behaves like an applier: a failed batch is delivered again, never skipped
    const go = async (w: typeof w1) => {
      for (const b of batches(evs, 100)) {
        for (let attempt = 0; attempt < 50; attempt++) {
          try {
            await w.applyBatch('s:0', b);
            break;
          } catch (e) {
            errors.push(e);
          }
        }
      }
    };
    await Promise.all([go(w1), go(w2)]);
    expect(errors.length).toBeGreaterThan(0); // they did collide
    await Promise.all([w1.close(), w2.close()]);
    for (const e of errors) expect((e as ReplistreamError).retriable).toBe(true);
    await expectExact(d.url, 1000);
  });

  it('a batch of many transactions (each built while the destination runs the one before) writes what event-by-event writing does', async () => {
    // applied event by event, no transaction is ever built ahead: the reference
    const ahead = await server();
    const reference = await server();
    const events = (stream: string, n: number, start: number, db: number, epoch = 1, refuseAt = -1): { stream: string; events: ChangeEvent[] } => ({
      stream,
      events: Array.from({ length: n }, (_, i) => {
        const p = pos(start + i * 10, 0, epoch);
        if (i === refuseAt) return cmd(p, db, ['INCR', `${stream}:n`], ['NOSUCHCMD', 'x']);
        return i % 4 === 3 ? cmd(p, db, ['INCR', `${stream}:n`], ['RPUSH', `${stream}:l`, `${epoch}.${i}`]) : cmd(p, db, ['INCR', `${stream}:n`]);
      }),
    });
    const segments = [
      events('s:0', 60, 1000, 1, 1, 30), // a refused command (skipped) in the fifth transaction
      events('s:1', 25, 1000, 0),
      events('s:0', 40, 5000, 1, 2), // a new epoch of db 1: emptied in the middle of the batch
      events('s:1', 25, 2000, 0),
    ];
    const wa = writer(ahead.url, { maxOpsPerTransaction: 7, onUnknownCommand: 'skip' });
    const wr = writer(reference.url, { onUnknownCommand: 'skip' });
    const got = await wa.applyStreams(segments);
    for (const seg of segments) for (const ev of seg.events) await wr.applyStreams([{ stream: seg.stream, events: [ev] }]);
    expect(got).toEqual({ applied: 150, skipped: 0 });
    expect(wa.stats.transactions).toBeGreaterThan(20);
    expect(wa.stats).toMatchObject({ applied: wr.stats.applied, skipped: wr.stats.skipped, epochFlushes: wr.stats.epochFlushes });
    expect(wa.stats.skipped).toEqual({ NOSUCHCMD: 1 });
    expect(wa.stats.epochFlushes).toBe(1);
    expect((await verifyDatabases(reference.url, ahead.url, [0, 1], new Map())).differences).toEqual([]);
    const c = client(ahead.url, 1);
    expect(Number(await c.get('s:0:n'))).toBe(40); // only the new epoch's
    c.disconnect();
    expect(await wa.storedPositions(['s:0', 's:1'])).toEqual(await wr.storedPositions(['s:0', 's:1']));
    // and again: everything is a duplicate, nothing moves
    expect(await wa.applyStreams(segments)).toEqual({ applied: 0, skipped: 150 });
    expect((await verifyDatabases(reference.url, ahead.url, [0, 1], new Map())).differences).toEqual([]);
    await Promise.all([wa.close(), wr.close()]);
  });

  it('calls queued behind one another (the first transaction of each built while the destination runs the last of the one before) write what event-by-event writing does; a call queued behind one that fails is refused', async () => {
    const ahead = await server();
    const reference = await server();
    const events = (stream: string, n: number, start: number, db: number, epoch = 1): { stream: string; events: ChangeEvent[] } => ({
      stream,
      events: Array.from({ length: n }, (_, i) => {
        const p = pos(start + i * 10, 0, epoch);
        return i % 4 === 3 ? cmd(p, db, ['INCR', `${stream}:n`], ['RPUSH', `${stream}:l`, `${epoch}.${i}`]) : cmd(p, db, ['INCR', `${stream}:n`]);
      }),
    });
    // one call each, handed over at once, as an applier does while the writer works
    const calls = [
      [events('s:0', 20, 1000, 1), events('s:1', 10, 1000, 0)],
      [events('s:1', 12, 2000, 0), events('s:0', 9, 3000, 1)],
      [events('s:0', 3, 5000, 1, 2)], // a new epoch of db 1, in a call of one transaction: the next call's is built before it commits
      [events('s:0', 8, 9000, 1, 2), events('s:1', 15, 3000, 0)],
    ];
    const wa = writer(ahead.url, { maxOpsPerTransaction: 7 });
    const wr = writer(reference.url);
    await wa.applyStreams([events('s:0', 1, 100, 1), events('s:1', 1, 100, 0)]); // both streams and db markers known
    await wr.applyStreams([events('s:0', 1, 100, 1), events('s:1', 1, 100, 0)]);
    const ticket = wa.writeFailures();
    const got = await Promise.all(calls.map((segments) => wa.applyStreams(segments, { unlessFailedSince: ticket })));
    for (const segments of calls) for (const seg of segments) for (const ev of seg.events) await wr.applyStreams([{ stream: seg.stream, events: [ev] }]);
    expect(got.map((r) => r.applied)).toEqual([30, 21, 3, 23]);
    expect(wa.stats).toMatchObject({ applied: wr.stats.applied, epochFlushes: 1 });
    expect(wr.stats.epochFlushes).toBe(1);
    expect((await verifyDatabases(reference.url, ahead.url, [0, 1], new Map())).differences).toEqual([]);
    expect(await wa.storedPositions(['s:0', 's:1'])).toEqual(await wr.storedPositions(['s:0', 's:1']));

    // a call refused by the destination fails; the one queued behind it is refused before writing
    const bad = { stream: 's:0', events: [cmd(pos(20_000, 0, 2), 1, ['NOSUCHCMD', 'x'])] };
    const after = events('s:1', 5, 30_000, 0);
    const before = await wa.storedPositions(['s:1']);
    const t2 = wa.writeFailures();
    const first = wa.applyStreams([bad], { unlessFailedSince: t2 });
    const second = wa.applyStreams([after], { unlessFailedSince: t2 });
    await expect(first).rejects.toThrow(/NOSUCHCMD/);
    const refused = await second.catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ReplistreamError);
    expect((refused as ReplistreamError).retriable).toBe(true);
    expect(await wa.storedPositions(['s:1'])).toEqual(before);
    expect(wa.writeFailures()).toBe(t2 + 1);
    await Promise.all([wa.close(), wr.close()]);
  });

  // Events split into record pieces (across batches, replays from inside a series, a crash
  // mid-series) go through the applier's stream queue: test/integration/destination/pieces.test.ts.

  it('big keys in appended parts: each part once, even when replayed', async () => {
    const s = await server();
    const d = await server();
    const sc = client(s.url);
    await sc.rpush('big', ...Array.from({ length: 1000 }, (_, i) => `e${i}`));
    await sc.sadd('bigset', ...Array.from({ length: 1000 }, (_, i) => `m${i}`));
    await sc.set('bigstr', 'x'.repeat(5000));
    const evs = await snapshotEvents(sc, 0, { parts: 5 });
    expect(evs.filter((e) => e.kind === 'snapshot-key' && e.append).length).toBe(12);
    const w = writer(d.url);
    for (const b of batches(evs, 3)) await w.applyBatch('s:0', b);
    for (const b of batches(evs, 4)) await w.applyBatch('s:0', b);
    await w.close();
    const w2 = writer(d.url);
    await w2.applyBatch('s:0', evs.slice(5)); // a restart re-delivering from the middle of a key
    await w2.close();
    expect((await verifyDatabases(s.url, d.url, [0], new Map())).differences).toEqual([]);
    sc.disconnect();
  });

  it('applies list snapshot keys idempotently (never doubled) in both write modes', async () => {
    const s = await server();
    const sc = client(s.url);
    await sc.rpush('l', 'a', 'b', 'c');
    for (const writeMode of ['restore', 'commands'] as const) {
      const d = await server();
      const evs: ChangeEvent[] = await snapshotEvents(sc, 0);
      const dc = client(d.url);
      await dc.rpush('l', 'pre-existing');
      const w = writer(d.url, { writeMode });
      await w.applyBatch('s:0', evs);
      await w.close();
      // a fresh writer with forgotten positions (another group on the same destination)
      const w2 = writer(d.url, { writeMode, positionKeyPrefix: 'replistream:pos:other' });
      await w2.applyBatch('s:0', evs);
      await w2.close();
      expect(await dc.lrange('l', 0, -1)).toEqual(['a', 'b', 'c']);
      dc.disconnect();
    }
    sc.disconnect();
  });
});
