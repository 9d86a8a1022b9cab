import { describe, expect, it } from 'vitest';
import { SnapshotTracker } from '../../../services/applier/snapshot-tracker.js';
import type { DecodedBatch } from '../../../services/transport/consumer.js';
import type { ChangeEvent } from '../../../services/events/model.js';

const pos = { epoch: 1, offset: 10, seq: 0, replid: 'a'.repeat(40) };
const begin: ChangeEvent = { kind: 'snapshot-begin', pos, db: 0 } as ChangeEvent;
const end: ChangeEvent = { kind: 'snapshot-end', pos, db: 0 } as ChangeEvent;

function batch(topic: string, partition: number, offset: number, events: ChangeEvent[]): DecodedBatch {
  return {
    topic, partition, highWatermark: String(offset + 1), lastOffset: String(offset),
    records: [{ offset: String(offset), timestamp: '0', bytes: 10, events, value: null }],
  };
}

function tracker() {
  const calls: string[] = [];
  const t = new SnapshotTracker(() => calls.push('start'), () => calls.push('end'));
  return { t, calls };
}

describe("the applier's snapshot tracker", () => {
  it('ends once the snapshot end of every partition that began one is committed', () => {
    const { t, calls } = tracker();
    t.received(batch('db0', 0, 0, [begin]));
    t.received(batch('db0', 1, 0, [begin]));
    expect(t.active).toBe(true);
    t.received(batch('db0', 0, 1, [end]));
    t.committed([{ topic: 'db0', partition: 0, offset: '2' }]);
    expect(t.active).toBe(true);
    t.received(batch('db0', 1, 1, [end]));
    t.committed([{ topic: 'db0', partition: 1, offset: '2' }]);
    expect(t.active).toBe(false);
    expect(calls).toEqual(['start', 'end']);
  });

  it('forgets the partitions a rebalance gave to another member: their snapshot is theirs to finish', () => {
    const { t, calls } = tracker();
    // joined first with two dbs, read their snapshots' beginnings, then left db1 to another member
    t.received(batch('db0', 0, 0, [begin]));
    t.received(batch('db1', 0, 0, [begin]));
    t.assigned([{ topic: 'db0', partitions: [0] }]);
    expect(t.active).toBe(true);
    t.received(batch('db0', 0, 1, [end]));
    t.committed([{ topic: 'db0', partition: 0, offset: '2' }]);
    expect(t.active).toBe(false);
    expect(calls).toEqual(['start', 'end']);
    // progress counts only what is still its own
    expect(t.records()).toEqual({ done: 2, total: 2 });
  });

  it('ends at once when a rebalance takes every snapshot partition away', () => {
    const { t, calls } = tracker();
    t.received(batch('db1', 2, 0, [begin]));
    t.assigned([{ topic: 'db2', partitions: [0, 1] }]);
    expect(t.active).toBe(false);
    expect(calls).toEqual(['start', 'end']);
  });

  it('keeps tracking when the rebalance leaves its partitions where they were', () => {
    const { t } = tracker();
    t.received(batch('db1', 2, 0, [begin]));
    t.assigned([{ topic: 'db1', partitions: [0, 1, 2, 3] }]);
    expect(t.active).toBe(true);
  });
});
