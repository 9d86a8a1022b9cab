/**
 * The per-partition queue (pure): pieces are rebuilt into whole events, a series being rebuilt
 * never counts toward backpressure, and a piece read without its beginning is kept aside with the
 * offset reading must go back to — never dropped, never committed past.
 */
import { describe, expect, it } from 'vitest';
import { StreamQueue, seriesStartOffset } from '../../../services/applier/stream-queue.js';
import { splitForRecordLimit } from '../../../services/events/split.js';
import type { ChangeEvent, CommandEvent } from '../../../services/events/model.js';
import { decodePosition, encodePosition } from '../../../services/destination/position.js';

const decodeAll = async (q: StreamQueue) => q.fill(Number.MAX_SAFE_INTEGER, async (r) => r.events);
const pos = (offset: number, seq = 0) => ({ epoch: 1, offset, seq, replid: 'r'.repeat(40) });
const cmd = (offset: number, args: string[]): CommandEvent => ({
  kind: 'command',
  pos: pos(offset),
  db: 0,
  commands: [args.map((a) => Buffer.from(a))],
  participants: [],
  piece: null,
});

/** A big RPUSH split into pieces, one record each from `firstOffset`, then a SET in the next record. */
function records(firstOffset: number) {
  const big = cmd(100, ['RPUSH', 'l', ...Array.from({ length: 5000 }, (_, i) => `element-${i}`)]);
  const pieces = splitForRecordLimit(big, 4096);
  const recs = pieces.map((p, i) => ({ offset: String(firstOffset + i), bytes: 4000, events: [p as ChangeEvent] }));
  recs.push({ offset: String(firstOffset + pieces.length), bytes: 50, events: [cmd(200, ['SET', 'a', 'b'])] });
  return { big, pieces, recs };
}

describe('StreamQueue', () => {
  it('rebuilds a series; its pieces do not count as queued whole events until it is whole', async () => {
    const { big, pieces, recs } = records(10);
    expect(pieces.length).toBeGreaterThan(10);
    const q = new StreamQueue('t', 0, () => undefined);
    q.push(recs.slice(0, -2));
    expect(q.items).toHaveLength(0);
    expect(q.undecodedRecords).toBe(recs.length - 2);
    await decodeAll(q);
    expect(q.items).toHaveLength(0);
    expect(q.wholeBytes).toBe(0); // nothing to pause on: the rest of the series must be read
    expect(q.bytes).toBeGreaterThan(30_000);
    expect(q.commitOffset()).toBe('10');
    q.push(recs.slice(-2));
    await decodeAll(q);
    expect(q.items.map((i) => i.offset)).toEqual(['10', String(10 + pieces.length)]);
    expect((q.items[0].event as CommandEvent).commands[0]).toHaveLength(big.commands[0].length);
    expect(q.wholeBytes).toBe(q.bytes);
  });

  it('keeps a piece read without its beginning aside, with the offset of its first piece', async () => {
    const { pieces, recs } = records(10);
    const q = new StreamQueue('t', 0, () => {
      throw new Error('an orphan piece is not a discarded series');
    });
    q.push(recs.slice(3));
    await decodeAll(q);
    expect(q.orphans.length).toBe(pieces.length - 3);
    expect(q.orphans[0]).toMatchObject({ offset: '13', index: 3, eventPos: pos(100) });
    expect(seriesStartOffset(q.orphans[0])).toBe('10');
    expect(q.items.map((i) => i.offset)).toEqual([String(10 + pieces.length)]);
    // the commit never passes the series' first record while the orphans are not settled
    expect(q.commitOffset()).toBe('10');
  });

  it('drops records delivered again by offset', async () => {
    const { recs } = records(0);
    const q = new StreamQueue('t', 0, () => undefined);
    expect(q.push(recs)).toEqual({ accepted: recs.length, reread: 0 });
    expect(q.push(recs.slice(-3))).toEqual({ accepted: 0, reread: 3 });
    await decodeAll(q);
    expect(q.items).toHaveLength(2);
  });

  it('marks the last event of a record that ends no series with the offset after that record, stored with its position', async () => {
    const { pieces, recs } = records(10);
    const q = new StreamQueue('t', 0, () => undefined);
    recs[recs.length - 1].events.unshift(cmd(150, ['SET', 'x', 'y'])); // the last record holds two events
    q.push(recs);
    await decodeAll(q);
    const [rebuilt, first, last] = q.items.map((i) => i.event);
    // a rebuilt series and an event followed by another in its record carry no offset
    expect(decodePosition(encodePosition(rebuilt.pos))?.resume).toBeUndefined();
    expect(decodePosition(encodePosition(first.pos))?.resume).toBeUndefined();
    expect(decodePosition(encodePosition(last.pos))?.resume).toBe(String(10 + pieces.length + 1));
  });
});
