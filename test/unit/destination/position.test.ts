import { describe, expect, it } from 'vitest';
import calculateSlot from 'cluster-key-slot';
import { slotTag, SLOTS } from '../../../services/destination/connection.js';
import { PositionKeys, compareWriterPositions, decodePosition, encodePosition, setResumeToken, withPart } from '../../../services/destination/position.js';

describe('positions', () => {
  it('round-trips through the stored encoding, part included', () => {
    const p = { ...withPart({ epoch: 3, offset: 2 ** 52 + 1, seq: 7, replid: 'abc' }), part: 2 };
    expect(decodePosition(encodePosition(p))).toEqual(p);
    expect(decodePosition(encodePosition(withPart(p)))).toEqual({ ...p, part: 0 });
    expect(decodePosition(null)).toBeNull();
    expect(() => decodePosition('garbage')).toThrow(/not a replistream position/);
    // a resume token goes with the position object it was attached to, and back
    const q = { epoch: 1, offset: 5, seq: 0, replid: 'r' };
    expect(JSON.parse(encodePosition(q)).resume).toBeUndefined();
    setResumeToken(q, '42');
    expect(decodePosition(encodePosition(q))).toEqual({ ...q, part: 0, resume: '42' });
    expect(compareWriterPositions(decodePosition(encodePosition(q))!, withPart(q))).toBe(0);
  });

  it('orders by epoch, offset, seq, part', () => {
    const a = withPart({ epoch: 1, offset: 100, seq: 5, replid: '' });
    expect(compareWriterPositions(a, { ...a, epoch: 2, offset: 0 })).toBeLessThan(0);
    expect(compareWriterPositions(a, { ...a, offset: 101, seq: 0 })).toBeLessThan(0);
    expect(compareWriterPositions(a, { ...a, seq: 6 })).toBeLessThan(0);
    expect(compareWriterPositions(a, { ...a, part: 1 })).toBeLessThan(0);
    expect(compareWriterPositions(a, { ...a })).toBe(0);
  });
});

describe('slot tags', () => {
  it('gives every slot a tag that hashes to it', () => {
    for (let s = 0; s < SLOTS; s++) expect(calculateSlot(`{${slotTag(s)}}`)).toBe(s);
  });

  it('names cluster keys inside their slot', () => {
    const k = new PositionKeys('replistream:pos:g', true);
    for (const s of [0, 1, 5000, 16383]) {
      expect(calculateSlot(k.position('topic.db0:3', s))).toBe(s);
      expect(calculateSlot(k.marker(s))).toBe(s);
    }
    expect(calculateSlot(k.error('t:1'))).toBe(k.homeSlot('t:1'));
    expect(() => new PositionKeys('bad{prefix', true)).toThrow(/must not contain/);
    const sa = new PositionKeys('replistream:pos:g', false);
    expect(sa.position('t:0')).toBe('replistream:pos:g:t:0');
    expect(sa.marker(3)).toBe('replistream:pos:g:@epoch:db3');
  });
});
