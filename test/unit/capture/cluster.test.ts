import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { assignRanges, decodeOwners, encodeOwners, EpochCoordinator, mastersFromSlots } from '../../../services/capture/cluster.js';
import type { CapturePosition } from '../../../services/capture/capture.js';

const log = pino({ level: 'silent' });
const pos = (epoch: number, state: 'snapshot' | 'streaming' = 'streaming'): CapturePosition => ({ epoch, state, replid: 'r', offset: 1, db: 0, updatedAt: 0 });

describe('cluster capture', () => {
  it('orders masters by their first slot, merging their ranges', () => {
    const m = mastersFromSlots([
      [10923, 16383, ['127.0.0.1', 7003, 'c']],
      [0, 5460, ['127.0.0.1', 7001, 'a']],
      [5461, 10922, ['127.0.0.1', 7002, 'b']],
      [16000, 16001, ['127.0.0.1', 7001, 'a']],
    ]);
    expect(m.map((x) => [x.index, x.port])).toEqual([[0, 7001], [1, 7002], [2, 7003]]);
  });

  it('a first start puts every master in epoch 1', () => {
    const forced: number[] = [];
    const c = new EpochCoordinator(3, [null, null, null], log, (i) => forced.push(i));
    expect(c.resume).toBe(false);
    expect([c.next(0), c.next(1), c.next(2)]).toEqual([1, 1, 1]);
    expect(forced).toEqual([]);
  });

  it('a master that must resync after its epoch began moves everyone to a new epoch', () => {
    const forced: number[] = [];
    const c = new EpochCoordinator(3, [pos(4), pos(4), pos(4)], log, (i) => forced.push(i));
    expect(c.resume).toBe(true);
    expect(c.next(1)).toBe(5);
    expect(forced).toEqual([1]);
    expect([c.next(0), c.next(2)]).toEqual([5, 5]);
  });

  it('a master added during the task (a new range) joins the renewed epoch with its first full sync', () => {
    const forced: number[] = [];
    const c = new EpochCoordinator(3, [pos(4), pos(4), pos(4)], log, (i) => forced.push(i));
    c.add(3);
    c.renew();
    expect(c.next(3)).toBe(5); // the new range's full sync starts the epoch
    expect(forced).toEqual([3]);
    expect([c.next(0), c.next(1), c.next(2)]).toEqual([5, 5, 5]);
  });

  it('mixed epochs or an unfinished snapshot start a new epoch for all', () => {
    expect(new EpochCoordinator(2, [pos(2), pos(3)], log, () => {}).resume).toBe(false);
    const c = new EpochCoordinator(2, [pos(3), pos(3, 'snapshot')], log, () => {});
    expect(c.resume).toBe(false);
    expect(c.next(0)).toBe(4);
    expect(c.next(1)).toBe(4);
  });

  it('masters resuming in ranges 0 and 2 (range 1 left without slots) stay in their epoch; a resync of range 2 moves both', () => {
    const forced: number[] = [];
    const c = new EpochCoordinator([0, 2], [pos(3), pos(3)], log, (i) => forced.push(i));
    expect(c.resume).toBe(true);
    expect(c.next(2)).toBe(4);
    expect(forced).toEqual([2]);
    expect(c.next(0)).toBe(4);
  });
});

describe('ranges of partitions after a restart', () => {
  const A = 'a'.repeat(40);
  const B = 'b'.repeat(40);
  const C = 'c'.repeat(40);
  const N = 'n'.repeat(40);
  it('a first start gives the masters ranges in slot order', () => {
    expect(assignRanges([[], [], []], [])).toEqual([0, 1, 2]);
  });
  it('each master continues the range its history wrote, whatever its slot order now', () => {
    // after a reshard the master of range 1 comes first; after a failover range 2 is served by a
    // promoted replica (the stored replid is its master_replid2)
    expect(assignRanges([[B], [A], [N, C]], [A, B, C])).toEqual([1, 0, 2]);
  });
  it('a range whose master left stays unused; a master of no known history takes a free range', () => {
    expect(assignRanges([[C], [A]], [A, B, C])).toEqual([2, 0]);
    expect(assignRanges([[N], [A]], [A, null, C])).toEqual([1, 0]);
  });
});

describe('slot owners of an epoch, as stored', () => {
  it('round-trip as runs of slots', () => {
    const owners = new Int16Array(16384).fill(0);
    owners.fill(1, 5461, 10923);
    owners.fill(2, 10923);
    owners[42] = -1;
    const runs = encodeOwners(owners);
    expect(runs).toEqual([[0, 41, 0], [42, 42, -1], [43, 5460, 0], [5461, 10922, 1], [10923, 16383, 2]]);
    expect(decodeOwners(JSON.parse(JSON.stringify({ owners: runs })))).toEqual(owners);
  });
  it('anything else is no stored map', () => {
    expect(decodeOwners(undefined)).toBeNull();
    expect(decodeOwners({ owners: [[0, 'x', 1]] })).toBeNull();
  });
});
