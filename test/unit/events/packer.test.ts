/**
 * RecordPacker (split.ts): the streaming form of packEncoded that capture uses. Pushing events one
 * by one and sealing where packEncoded's input ends must give the very same records, byte for
 * byte, with the first snapshot-begin of each record named for the producer's snapshot index.
 */
import { describe, expect, it } from 'vitest';
import { decodeBatch } from '../../../services/events/codec.js';
import { packEncoded, RecordPacker, WIRE_HEADER_BYTES, type SealedRecord } from '../../../services/events/split.js';
import type { ChangeEvent } from '../../../services/events/model.js';
import { b, bytes, command, everyEvent, key, pos, rng } from './fixtures.js';

const begin = (epoch: number, db = 0): ChangeEvent => ({ kind: 'snapshot-begin', pos: pos(0, 0, epoch), db, rdbVersion: 11, sourceVersion: '7.2.4' });

function events(n: number, seed: number): ChangeEvent[] {
  const r = rng(seed);
  const out: ChangeEvent[] = [];
  for (let i = 0; i < n; i++) {
    const k = r();
    if (k < 0.02) out.push(begin(1 + Math.floor(r() * 5), Math.floor(r() * 3)));
    else if (k < 0.05) out.push(key({ type: 'string', value: bytes(Math.floor(r() * 60_000), i) }, { pos: pos(99, i) })); // some over a small limit
    else if (k < 0.5) out.push(key({ type: 'list', items: [b(`a${i}`), b(`bb${i}`)] }, { key: b(`list:${i}`), pos: pos(99, i) }));
    else out.push(command([[b('SET'), b(`k${i}`), bytes(Math.floor(r() * 200), i)]], { pos: pos(1000 + i, 0) }));
  }
  return [...everyEvent(), ...out];
}

function packAll(list: ChangeEvent[], limit: number, maxEvents?: number, sealEvery = 0): SealedRecord[] {
  const p = new RecordPacker(limit, { maxEvents });
  const out: SealedRecord[] = [];
  list.forEach((e, i) => {
    p.push(e, out);
    if (sealEvery && (i + 1) % sealEvery === 0) p.seal(out);
  });
  p.seal(out);
  return out;
}

describe('RecordPacker', () => {
  it('gives the records packEncoded gives, byte for byte, whatever the limit', () => {
    const list = events(3000, 7);
    for (const [limit, maxEvents] of [
      [900_000, undefined],
      [40_000, undefined],
      [4_000, 7],
    ] as const) {
      const want = packEncoded(list, limit, { maxEvents });
      const got = packAll(list, limit, maxEvents);
      expect(got.length).toBe(want.length);
      got.forEach((r, i) => {
        expect(r.body.equals(want[i].body)).toBe(true);
        expect(r.count).toBe(want[i].events.length);
        const sb = want[i].events.find((e) => e.kind === 'snapshot-begin');
        expect(r.snapshotBegin).toEqual(sb ? { epoch: sb.pos.epoch, db: sb.db } : null);
        expect(WIRE_HEADER_BYTES + r.body.length).toBeLessThanOrEqual(limit);
      });
    }
  });

  it('sealing between pushes equals packEncoded over each segment', () => {
    const list = events(1000, 11);
    const got = packAll(list, 20_000, undefined, 97);
    const want: Buffer[] = [];
    for (let i = 0; i < list.length; i += 97) want.push(...packEncoded(list.slice(i, i + 97), 20_000).map((x) => x.body));
    expect(got.map((r) => r.body.toString('hex'))).toEqual(want.map((x) => x.toString('hex')));
    // every event is there, in order
    expect(got.flatMap((r) => decodeBatch(r.body)).length).toBe(want.flatMap((x) => decodeBatch(x)).length);
  });

  it('reports its open record, seals nothing when empty, and lets a grown buffer go', () => {
    const p = new RecordPacker(900_000);
    const out: SealedRecord[] = [];
    expect(p.seal(out)).toBe(0);
    expect(out).toEqual([]);
    expect(p.push(key({ type: 'string', value: bytes(500_000) }), out)).toBe(0); // fits: stays open
    expect(p.openCount).toBe(1);
    expect(p.openBytes).toBeGreaterThan(500_000);
    p.trim(); // a record is open: kept
    expect(p.openCount).toBe(1);
    const sealed = p.push(key({ type: 'string', value: bytes(500_000, 1) }), out); // does not fit: the first is sealed
    expect(out).toHaveLength(1);
    expect(sealed).toBe(out[0].body.length);
    expect(p.seal(out)).toBeGreaterThan(500_000);
    expect(p.openBytes).toBe(0);
    p.trim();
    p.push(command([[b('SET'), b('k'), b('v')]]), out);
    p.seal(out);
    expect(decodeBatch(out[2].body)).toHaveLength(1);
  });

  it('pushOrPieces encodes what fits a record alone, and returns the pieces of what does not, encoding nothing', () => {
    const list = events(600, 5).filter((e) => e.kind === 'command');
    list.splice(100, 0, command([[b('SET'), b('big'), bytes(150_000, 3)]], { pos: pos(5000, 0) }));
    const viaPieces = new RecordPacker(40_000);
    const out: SealedRecord[] = [];
    let split = 0;
    for (const e of list) {
      const before = viaPieces.openBytes;
      const pieces = viaPieces.pushOrPieces(e, out);
      if (pieces === null) continue;
      split++;
      expect(viaPieces.openBytes).toBe(before); // nothing of it was encoded
      expect(pieces.length).toBeGreaterThan(3);
      for (const p of pieces) viaPieces.push(p, out);
    }
    viaPieces.seal(out);
    expect(split).toBe(1);
    const want = packAll(list, 40_000);
    expect(out.map((r) => r.body.toString('hex'))).toEqual(want.map((r) => r.body.toString('hex')));
  });
});
