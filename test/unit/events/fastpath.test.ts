/**
 * The scratch-buffer encoder (codec.ts `EventScratch`, used by encodeEvent / encodeBatch /
 * splitEncoded / packEncoded) must write exactly what avsc's own `toBuffer` writes for the same
 * batch, byte for byte, for every event shape, and never hand out bytes that a later call reuses.
 */
import { describe, expect, it } from 'vitest';
import {
  decodeBatch,
  encodeBatch,
  encodeEvent,
  encodeEventWithin,
  encodedEventSize,
  eventFromAvro,
  eventToAvro,
  eventTypes,
} from '../../../services/events/codec.js';
import { maxEventBytes, packEncoded, splitEncoded, WIRE_HEADER_BYTES } from '../../../services/events/split.js';
import type { ChangeEvent, EventPiece, TypedValue } from '../../../services/events/model.js';
import { EncodedCommandEvent } from '../../../services/events/encoded-command.js';
import { encodeCommands } from '../../../services/destination/resp-codec.js';
import { b, bytes, command, everyEvent, expectSame, key, pos, rng, stream } from './fixtures.js';

/** Without the pieces too big for a record of `limit` (only whole events can be split). */
const packable = (events: ChangeEvent[], limit: number): ChangeEvent[] =>
  events.filter((e) => !('piece' in e && e.piece) || encodedEventSize(e) <= maxEventBytes(limit));

/** What avsc itself writes for a batch of `events`. */
const viaAvsc = (events: ChangeEvent[]): Buffer => eventTypes().batch.toBuffer({ events: events.map(eventToAvro) });

/** `n` random events of every kind and shape (deterministic); sizes from a few bytes to ~`big`. */
function randomEvents(n: number, seed: number, big = 2000): ChangeEvent[] {
  const r = rng(seed);
  const int = (max: number) => Math.floor(r() * max);
  const buf = (max: number) => bytes(int(max + 1), int(256));
  const bufs = (count: number, max: number) => Array.from({ length: int(count + 1) }, () => buf(max));
  // avsc writes longs up to ±(2^53 - 2), but reads -(2^53 - 2) back as +(2^53 - 2): keep negatives above -2^52
  const long = () => [0, 1, -1, 127, 128, -65, 2 ** 31, -(2 ** 31) - 1, 2 ** 53 - 2, -(2 ** 52), int(1e12)][int(11)];
  const piece = (): EventPiece | null => {
    const k = int(4);
    if (k < 2) return null;
    const p: EventPiece = { index: int(1000), last: r() < 0.5 };
    if (k === 3) p.continued = true; // (false is written as absent)
    return p;
  };
  const value = (): TypedValue | null => {
    switch (int(8)) {
      case 0:
        return null;
      case 1:
        return { type: 'string', value: buf(big) };
      case 2:
        return { type: 'list', items: bufs(8, big / 8) };
      case 3:
        return { type: 'set', members: bufs(8, big / 8) };
      case 4:
        return { type: 'zset', entries: bufs(6, 40).map((member) => ({ member, score: [r() * 1e9, -0, NaN, Infinity, -r(), 5e-324][int(6)] })) };
      case 5:
        return { type: 'hash', entries: bufs(6, 60).map((field) => ({ field, value: buf(big / 6), expireAtMs: r() < 0.5 ? null : long() })) };
      case 6:
        return { type: 'stream', stream: r() < 0.5 ? stream() : { entries: [], length: int(10), lastId: { ms: BigInt(int(1e9)) * 2n ** 20n, seq: 2n ** 64n - 1n }, groups: [] } };
      default:
        return { type: 'module', moduleId: ['ReJSON-RL', 'é-ünïcødé-模块', ''][int(3)] };
    }
  };
  const p = () => ({ ...pos(Math.abs(long()), int(1e6), int(100)), replid: r() < 0.9 ? '8de9b1b2c3d4e5f60718293a4b5c6d7e8f901234' : 'ü'.repeat(int(50)) });
  return Array.from({ length: n }, (): ChangeEvent => {
    switch (int(10)) {
      case 0:
        return { kind: 'snapshot-begin', pos: p(), db: int(16), rdbVersion: int(12), sourceVersion: r() < 0.5 ? null : '7.2.4' };
      case 1:
        return { kind: 'snapshot-end', pos: p(), db: int(16), keyCount: long() };
      case 2:
        return { kind: 'heartbeat', pos: p(), db: int(16), timeMs: long() };
      case 3:
      case 4:
      case 5: {
        const commands = Array.from({ length: 1 + int(4) }, () => [b('SET'), ...bufs(4, big / 8)]);
        const participants = r() < 0.8 ? [] : [{ db: int(16), partition: int(64) }, { db: 0, partition: 1 }];
        return command(commands, { pos: p(), db: int(16), participants, piece: piece() });
      }
      default: {
        const v = value();
        const extra: Partial<ReturnType<typeof key>> = { pos: p(), db: int(16), key: buf(40), type: v?.type ?? 'hash', expireAtMs: r() < 0.5 ? null : long(), payload: r() < 0.3 ? null : buf(big), piece: piece() };
        if (r() < 0.2) extra.append = r() < 0.5;
        return key(v, extra);
      }
    }
  });
}

describe('scratch-buffer encoding', () => {
  const events = [...everyEvent(), ...randomEvents(4000, 42)];

  it('encodeBatch equals avsc toBuffer of the same batch, byte for byte', () => {
    const fast = encodeBatch(events);
    expect(fast.equals(viaAvsc(events))).toBe(true);
    expectSame(decodeBatch(fast), events);
    // and in small batches (the scratch reused from call to call)
    for (let i = 0; i < events.length; i += 37) {
      const some = events.slice(i, i + 37);
      expect(encodeBatch(some).equals(viaAvsc(some))).toBe(true);
    }
  });

  it('encodeEvent equals avsc toBuffer of the event, and sizes are exact', () => {
    const { event } = eventTypes();
    for (const e of events) {
      const want = event.toBuffer(eventToAvro(e));
      expect(encodeEvent(e).equals(want)).toBe(true);
      expect(encodedEventSize(e)).toBe(want.length);
      expect((encodeEventWithin(e, want.length) as Buffer).equals(want)).toBe(true);
      expect(encodeEventWithin(e, want.length - 1)).toBe(want.length);
    }
  });

  it('packEncoded bodies equal avsc toBuffer of their events, under the limit, in order', () => {
    for (const [limit, maxEvents] of [
      [900_000, undefined],
      [20_000, undefined],
      [4_000, 7],
      [1_024, undefined],
    ] as const) {
      const some = packable(events, limit);
      const packed = packEncoded(some, limit, { maxEvents });
      for (const batch of packed) {
        expect(batch.body.equals(viaAvsc(batch.events))).toBe(true);
        expect(WIRE_HEADER_BYTES + batch.body.length).toBeLessThanOrEqual(limit);
        if (maxEvents) expect(batch.events.length).toBeLessThanOrEqual(maxEvents);
      }
      const flat = packed.flatMap((x) => x.events);
      // the same events in order, split ones as their pieces (exactly splitEncoded's)
      expectSame(flat, some.flatMap((e) => splitEncoded(e, limit).map((x) => x.event)));
      // records are full: the next record's first event would not have fitted
      for (let i = 0; i + 1 < packed.length; i++) {
        if (maxEvents && packed[i].events.length === maxEvents) continue;
        expect(WIRE_HEADER_BYTES + packed[i].body.length + encodeEvent(packed[i + 1].events[0]).length).toBeGreaterThan(limit);
      }
    }
  });

  it('events bigger than the scratch buffer (growth mid-batch) encode identically', () => {
    const large = packable([...randomEvents(30, 7, 300_000), key({ type: 'string', value: bytes(3_000_000) }), ...randomEvents(30, 8)], 200_000);
    const huge = large.findIndex((e) => encodedEventSize(e) > 3_000_000);
    expect(encodeBatch(large).equals(viaAvsc(large))).toBe(true);
    const packed = packEncoded(large, 8_000_000);
    expect(Buffer.concat(packed.map((x) => x.body)).equals(Buffer.concat(packed.map((x) => viaAvsc(x.events))))).toBe(true);
    // and split into pieces under a small limit
    for (const batch of packEncoded(large, 200_000)) {
      expect(batch.body.equals(viaAvsc(batch.events))).toBe(true);
      expect(WIRE_HEADER_BYTES + batch.body.length).toBeLessThanOrEqual(200_000);
    }
    expect(splitEncoded(large[huge], 200_000).every((x) => x.encoded.length <= maxEventBytes(200_000))).toBe(true);
  });

  it('returned buffers are not overwritten by later calls (copied out of the scratch)', () => {
    const a = randomEvents(500, 1);
    const bodies = packEncoded(a, 20_000).map((x) => x.body);
    const one = encodeEvent(a[3]);
    const batch = encodeBatch(a.slice(0, 50));
    const copies = [...bodies.map((x) => Buffer.from(x)), Buffer.from(one), Buffer.from(batch)];
    packEncoded(randomEvents(500, 2), 20_000);
    encodeBatch(randomEvents(200, 3));
    encodeEvent(randomEvents(1, 4)[0]);
    expect([...bodies, one, batch].every((x, i) => x.equals(copies[i]))).toBe(true);
  });

  it('a failed encode leaves the scratch usable', () => {
    const bad = { kind: 'heartbeat', pos: pos(2 ** 60), db: 0, timeMs: 1 } as ChangeEvent;
    const good = randomEvents(100, 5);
    expect(() => packEncoded([...good, bad], 10_000)).toThrow(/pos\.offset/);
    expect(() => encodeBatch([...good, bad])).toThrow(/pos\.offset/);
    expect(encodeBatch(good).equals(viaAvsc(good))).toBe(true);
    expect(packEncoded(good, 10_000).every((x) => x.body.equals(viaAvsc(x.events)))).toBe(true);
  });
});

describe('hand-written decoding (fast-reader.ts)', () => {
  /** What avsc itself reads from `body`, mapped to the model. */
  const readByAvsc = (body: Buffer): ChangeEvent[] => (eventTypes().batch.fromBuffer(body) as { events: object[] }).events.map((w) => eventFromAvro(w as never));
  /** True when every byte string of a snapshot key is a view of `body` (the fast reader's, not avsc's copies). */
  const viewsOf = (events: ChangeEvent[], body: Buffer) =>
    events.every((e) => e.kind !== 'snapshot-key' || (e.key.buffer === body.buffer && (e.payload === null || e.payload.buffer === body.buffer)));

  it('decodeBatch reads what avsc reads, for every event shape, one by one and together', () => {
    for (const e of everyEvent()) {
      const body = viaAvsc([e]);
      expect(decodeBatch(body)).toStrictEqual(readByAvsc(body));
    }
    for (let seed = 1; seed <= 40; seed++) {
      const events = randomEvents(60, seed);
      const body = viaAvsc(events);
      expect(decodeBatch(body)).toStrictEqual(readByAvsc(body));
    }
  });

  it('a replication id that changes inside a record is read anew, whichever of its bytes differ', () => {
    // ids of one length differing in a whole 4-byte word or only in the bytes after the last word
    const ids = ['abcdefghij', 'abcdXfghij', 'abcdefghiX', 'abcdefghij', 'Xbcdefghij', '8de9b1b2c3d4e5f60718293a4b5c6d7e8f901234', '8de9b1b2c3d4e5f60718293a4b5c6d7e8f90123X', 'ab'];
    const events = ids.map((replid, i) => command([[b('SET'), b(`k${i}`), b('v')]], { pos: { ...pos(100 + i), replid } }));
    const body = viaAvsc(events);
    expect(decodeBatch(body).map((e) => e.pos.replid)).toEqual(ids);
    expect(decodeBatch(body, undefined, { encodeCommands: true }).map((e) => e.pos.replid)).toEqual(ids);
  });

  it('snapshot keys, commands and heartbeats are read without copying; other kinds go through avsc', () => {
    const fastKinds = everyEvent().filter(
      (e) => e.kind === 'command' || e.kind === 'heartbeat' || (e.kind === 'snapshot-key' && (e.value === null || !['stream', 'module'].includes(e.value.type))),
    );
    expect(fastKinds.length).toBeGreaterThan(5);
    const body = Buffer.concat([Buffer.from('padding'), viaAvsc(fastKinds)]).subarray(7);
    const events = decodeBatch(body);
    expect(events).toStrictEqual(readByAvsc(body));
    expect(viewsOf(events, body)).toBe(true);
    const withBegin = viaAvsc([everyEvent().find((e) => e.kind === 'snapshot-begin')!, ...fastKinds]);
    expect(decodeBatch(withBegin)).toStrictEqual(readByAvsc(withBegin));
  });

  it('skipValuesUpToRdbVersion leaves out exactly the typed values of keys whose payload is that old or older', () => {
    const payloadVersion = (p: Buffer | null) => (p === null || p.length < 11 ? -1 : p.readUInt16LE(p.length - 10));
    let fastSeeds = 0;
    for (let seed = 1; seed <= 200; seed++) {
      // batches with snapshot begin/end, streams or modules go through avsc, which reads every value
      const events = randomEvents(6, seed).filter(
        (e) => e.kind === 'command' || e.kind === 'heartbeat' || (e.kind === 'snapshot-key' && (e.value === null || !['stream', 'module'].includes(e.value.type))),
      );
      const body = viaAvsc(events);
      if (!viewsOf(decodeBatch(body), body)) continue; // read by avsc (e.g. a long the reader leaves to it): every value kept
      fastSeeds++;
      for (const limit of [0, 20_000, 65_535]) {
        const expected = readByAvsc(body).map((e) => {
          if (e.kind !== 'snapshot-key' || e.append === true) return e;
          const v = payloadVersion(e.payload);
          return v >= 0 && v <= limit ? { ...e, value: null } : e;
        });
        expect(decodeBatch(body, undefined, { skipValuesUpToRdbVersion: limit })).toStrictEqual(expected);
      }
      expect(decodeBatch(body, undefined, { skipValuesUpToRdbVersion: null })).toStrictEqual(readByAvsc(body));
    }
    expect(fastSeeds).toBeGreaterThan(20);
  });

  it('encodeCommands: one-command events come as RESP of the same command; everything else as without it', () => {
    /** The event as the model has it (plain object), for comparing with what avsc reads. */
    const plain = (e: ChangeEvent): ChangeEvent =>
      e instanceof EncodedCommandEvent ? { kind: 'command', pos: e.pos, db: e.db, commands: e.commands, participants: e.participants, piece: null } : e;
    let encoded = 0;
    const check = (body: Buffer) => {
      const events = decodeBatch(body, undefined, { encodeCommands: true });
      expect(events.map(plain)).toStrictEqual(readByAvsc(body));
      // (a batch holding a kind the fast reader leaves to avsc is read by avsc, without RESP)
      const fast = decodeBatch(body).every((e) => e.kind !== 'snapshot-key' || viewsOf([e], body));
      for (const e of events) {
        const one = e.kind === 'command' && e.piece === null && e.commands.length === 1 && e.commands[0].length > 0;
        expect(e instanceof EncodedCommandEvent).toBe(one && fast);
        if (!(e instanceof EncodedCommandEvent)) continue;
        encoded++;
        // the bytes are the command in RESP, as the writer's encoder writes it
        expect(e.resp.subarray(e.respStart, e.respEnd)).toEqual(encodeCommands(e.commands));
        expect(e.name).toEqual(e.commands[0][0]);
        expect(e.keyStart < 0 ? null : e.resp.subarray(e.keyStart, e.keyEnd)).toEqual(e.commands[0][1] ?? null);
        // a spread copy is a plain event: it carries the commands only when given them
        expect({ ...e } instanceof EncodedCommandEvent).toBe(false);
      }
    };
    for (const e of everyEvent()) check(viaAvsc([e]));
    for (let seed = 1; seed <= 40; seed++) check(viaAvsc(randomEvents(60, seed)));
    // many tiny arguments take more room in RESP than in the record: the output buffer grows
    const tiny = Array.from({ length: 50 }, (_, i) => command([[b('DEL'), ...Array.from({ length: 300 }, () => Buffer.alloc(0))]], { pos: pos(i) }));
    check(viaAvsc(tiny));
    expect(encoded).toBeGreaterThan(50);
  });

  it('a truncated or padded batch is refused as avsc refuses it, never half read', () => {
    const body = viaAvsc(randomEvents(20, 7));
    for (const cut of [1, 2, 10, Math.floor(body.length / 2), body.length - 1]) {
      expect(() => decodeBatch(body.subarray(0, cut))).toThrow(/cannot decode an event batch/);
    }
    expect(() => decodeBatch(Buffer.concat([body, Buffer.from([0])]))).toThrow(/cannot decode an event batch/);
    expect(() => decodeBatch(body.subarray(0, body.length - 1), undefined, { encodeCommands: true })).toThrow(/cannot decode an event batch/);
  });
});
