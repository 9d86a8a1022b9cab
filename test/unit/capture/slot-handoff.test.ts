import { describe, expect, it } from 'vitest';
import { planHandOff } from '../../../services/capture/slot-handoff.js';
import { SLOTS } from '../../../services/capture/topology.js';

/** Slot owners: [first, last, shard] ranges, the rest -1. */
function owners(...ranges: Array<[number, number, number]>): Int16Array {
  const o = new Int16Array(SLOTS).fill(-1);
  for (const [a, b, shard] of ranges) o.fill(shard, a, b + 1);
  return o;
}
const three = () => owners([0, 5460, 0], [5461, 10922, 1], [10923, 16383, 2]);

describe('planHandOff', () => {
  it('a reshard from one master to another: the taker waits for the giver', () => {
    const now = owners([0, 4999, 0], [5000, 10922, 1], [10923, 16383, 2]);
    const plan = planHandOff(three(), now, new Map([[1, new Set([5000])]]));
    expect(plan).toEqual({ sources: new Map([[1, new Set([0])]]), slots: 461 });
  });

  it('slots from every other master to one (--cluster-from all)', () => {
    const now = owners([0, 5000, 0], [5001, 10922, 1], [10923, 16000, 2], [16001, 16383, 1]);
    expect(planHandOff(three(), now, new Map())).toEqual({ sources: new Map([[1, new Set([0, 2])]]), slots: 460 + 383 });
  });

  it('refuses a master that gives and takes slots in one move', () => {
    const now = owners([0, 5000, 0], [5001, 5460, 1], [5461, 6000, 0], [6001, 10922, 1], [10923, 16383, 2]);
    expect(planHandOff(three(), now, new Map())).toEqual({ refused: expect.stringContaining('both gives and takes') });
  });

  it('refuses writes to a slot the writer does not own now (the slot moved on, or the move was abandoned)', () => {
    expect(planHandOff(three(), three(), new Map([[1, new Set([0])]]))).toEqual({ refused: expect.stringContaining('does not own now') });
  });

  it('refuses slots that had no owner at the epoch\'s start', () => {
    const before = owners([0, 5460, 0], [5461, 10922, 1]);
    expect(planHandOff(before, three(), new Map())).toEqual({ refused: expect.stringContaining('no owner') });
  });

  it('nothing moved: an empty plan', () => {
    expect(planHandOff(three(), three(), new Map())).toEqual({ sources: new Map(), slots: 0 });
  });
});
