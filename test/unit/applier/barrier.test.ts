import { describe, expect, it } from 'vitest';
import { isBarrier, planApply, type PlanStream, type QueuedEvent } from '../../../services/applier/barrier.js';
import { comparePositions, type ChangeEvent, type CommandEvent, type SourcePosition } from '../../../services/events/model.js';
import { prng } from '../../helpers/prng.js';

const TOPIC = 't.s1.db0';
const sid = (p: number) => `${TOPIC}:${p}`;
const pos = (offset: number): SourcePosition => ({ epoch: 1, offset, seq: 0, replid: 'r' });

function unit(offset: number, partitions: number[]): CommandEvent {
  return {
    kind: 'command',
    pos: pos(offset),
    db: 0,
    commands: [[Buffer.from('SET'), Buffer.from(`u${offset}`), Buffer.from('x')]],
    participants: partitions.length > 1 ? partitions.map((partition) => ({ db: 0, partition })) : [],
    piece: null,
  };
}

/** A source: units in source order, each listed in the partitions it touches. */
function source(seed: number, units: number, partitions: number, multiShare: number) {
  const rnd = prng(seed);
  const logs: QueuedEvent[][] = Array.from({ length: partitions }, () => []);
  const touches: number[][] = [];
  for (let i = 1; i <= units; i++) {
    let parts = [Math.floor(rnd() * partitions)];
    if (rnd() < multiShare) {
      const n = 2 + Math.floor(rnd() * (partitions - 1));
      parts = [...new Set(Array.from({ length: n }, () => Math.floor(rnd() * partitions)))];
    }
    touches.push(parts);
    const ev = unit(i, parts);
    for (const p of parts) logs[p].push({ event: ev, offset: String(logs[p].length) });
  }
  return { logs, touches, rnd };
}

interface Written {
  stream: string;
  offset: number;
  writes: boolean;
}

/** Applies plans like the applier does, revealing records a few at a time; returns what was written, in order. */
function drive(logs: QueuedEvent[][], owned: number[][], rnd: () => number, maxEvents = 50): Written[] {
  const stored = new Map<string, SourcePosition | null>();
  const written: Written[] = [];
  const procs = owned.map((parts) => ({ parts, fetched: new Map(parts.map((p) => [p, 0])), consumed: new Map(parts.map((p) => [p, 0])) }));
  for (let round = 0; round < 100_000; round++) {
    let allDone = true;
    for (const proc of procs) {
      for (const p of proc.parts) {
        // fetch a few more records
        proc.fetched.set(p, Math.min(logs[p].length, proc.fetched.get(p)! + Math.floor(rnd() * 4)));
        if (proc.consumed.get(p)! < logs[p].length) allDone = false;
      }
      const local = new Map<string, PlanStream>();
      for (const p of proc.parts) local.set(sid(p), { items: logs[p].slice(proc.consumed.get(p)!, proc.fetched.get(p)!), applied: stored.get(sid(p)) ?? null });
      const remote = new Map([...stored].filter(([s]) => !local.has(s)));
      const plan = planApply({ local, remote, streamOf: (x) => sid(x.partition), maxEvents, ownerMarker: false });
      for (const seg of plan.segments) {
        for (const e of seg.events) {
          const cur = stored.get(seg.stream);
          if (cur && comparePositions(e.pos, cur) <= 0) continue; // the writer skips what is applied
          stored.set(seg.stream, e.pos);
          written.push({ stream: seg.stream, offset: e.pos.offset, writes: e.kind === 'command' });
        }
      }
      for (const [s, n] of plan.consumed) {
        const p = Number(s.split(':').pop());
        proc.consumed.set(p, proc.consumed.get(p)! + n);
      }
    }
    if (allDone) return written;
  }
  throw new Error('did not finish: a barrier never settled');
}

function checkOrder(touches: number[][], written: Written[]): void {
  const applied = written.filter((w) => w.writes).map((w) => w.offset);
  // every unit exactly once
  expect([...applied].sort((a, b) => a - b)).toEqual(touches.map((_, i) => i + 1));
  // units sharing a partition are applied in source order
  const at = new Map(applied.map((o, i) => [o, i]));
  const lastIn = new Map<number, number>();
  touches.forEach((parts, i) => {
    const o = i + 1;
    for (const p of parts) {
      const prev = lastIn.get(p);
      if (prev !== undefined) expect(at.get(prev)! < at.get(o)!, `unit ${prev} before unit ${o} (partition ${p})`).toBe(true);
      lastIn.set(p, o);
    }
  });
}

describe('planApply', () => {
  it('one process holding every partition: each unit once, per-partition order kept, no round trip per barrier', () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const { logs, touches, rnd } = source(seed, 400, 4, 0.3);
      const written = drive(logs, [[0, 1, 2, 3]], rnd);
      checkOrder(touches, written);
    }
  });

  it('a plan carries many barriers at once when the queues hold them', () => {
    const { logs } = source(7, 300, 4, 0.5);
    const local = new Map<string, PlanStream>(logs.map((l, p) => [sid(p), { items: l, applied: null }]));
    const plan = planApply({ local, remote: new Map(), streamOf: (x) => sid(x.partition), maxEvents: 100_000, ownerMarker: false });
    const barriers = new Set(logs.flat().filter((q) => isBarrier(q.event)).map((q) => q.event.pos.offset));
    expect(barriers.size).toBeGreaterThan(50);
    expect(plan.barriersApplied).toBe(barriers.size);
    expect([...plan.consumed.values()].reduce((a, b) => a + b, 0)).toBe(logs.flat().length);
    expect(plan.awaiting.size).toBe(0);
  });

  it('partitions spread over processes: coordinated through stored positions only', () => {
    for (const seed of [11, 12, 13]) {
      const { logs, touches, rnd } = source(seed, 300, 4, 0.3);
      checkOrder(touches, drive(logs, [[0, 2], [1], [3]], rnd));
    }
  });

  it('a replayed barrier whose owner already moved past it is passed without waiting', () => {
    const b = unit(10, [0, 1]);
    const local = new Map<string, PlanStream>([
      [sid(0), { items: [{ event: unit(12, [0]), offset: '5' }], applied: pos(12) }],
      [sid(1), { items: [{ event: b, offset: '3' }, { event: unit(11, [1]), offset: '4' }], applied: pos(9) }],
    ]);
    const plan = planApply({ local, remote: new Map(), streamOf: (x) => sid(x.partition), maxEvents: 100, ownerMarker: false });
    expect(plan.consumed.get(sid(1))).toBe(2);
    const seg1 = plan.segments.filter((s) => s.stream === sid(1)).flatMap((s) => s.events);
    expect(seg1.map((e) => e.kind)).toEqual(['heartbeat', 'command']);
  });

  it('a participant whose owner is in another process arrives by position and waits for the owner', () => {
    const b = unit(10, [0, 1]);
    const local = new Map<string, PlanStream>([[sid(1), { items: [{ event: b, offset: '3' }, { event: unit(11, [1]), offset: '4' }], applied: pos(9) }]]);
    const first = planApply({ local, remote: new Map([[sid(0), pos(8)]]), streamOf: (x) => sid(x.partition), maxEvents: 100, ownerMarker: false });
    expect(first.segments).toEqual([{ stream: sid(1), events: [{ kind: 'heartbeat', pos: pos(10), db: 0, timeMs: 0 }] }]);
    expect(first.consumed.size).toBe(0);
    expect([...first.awaiting]).toEqual([sid(0)]);
    // arrived (position stored), owner not done: nothing to write, still waiting
    local.set(sid(1), { ...local.get(sid(1))!, applied: pos(10) });
    const second = planApply({ local, remote: new Map([[sid(0), pos(8)]]), streamOf: (x) => sid(x.partition), maxEvents: 100, ownerMarker: false });
    expect(second.events).toBe(0);
    // the owner applied it: move on
    const third = planApply({ local, remote: new Map([[sid(0), pos(10)]]), streamOf: (x) => sid(x.partition), maxEvents: 100, ownerMarker: false });
    expect(third.consumed.get(sid(1))).toBe(2);
  });

  it('a participant passed with its owner stores its own copy\'s position object (what its reader attached to it)', () => {
    const owner = unit(10, [0, 1]);
    const copy = unit(10, [0, 1]);
    const local = new Map<string, PlanStream>([
      [sid(0), { items: [{ event: owner, offset: '3' }], applied: pos(9) }],
      [sid(1), { items: [{ event: copy, offset: '7' }], applied: pos(8) }],
    ]);
    const plan = planApply({ local, remote: new Map(), streamOf: (x) => sid(x.partition), maxEvents: 100, ownerMarker: false });
    expect(plan.barriersApplied).toBe(1);
    expect(plan.positions.get(sid(0))).toBe(owner.pos);
    expect(plan.positions.get(sid(1))).toBe(copy.pos);
    const seg1 = plan.segments.filter((s) => s.stream === sid(1)).flatMap((s) => s.events);
    expect(seg1).toHaveLength(1);
    expect(seg1[0].pos).toBe(copy.pos);
  });

  it('participants in databases this group does not consume are left out', () => {
    const b: ChangeEvent = { ...unit(5, [0]), participants: [{ db: 0, partition: 0 }, { db: 3, partition: 1 }] };
    const local = new Map<string, PlanStream>([[sid(0), { items: [{ event: b, offset: '0' }], applied: null }]]);
    const plan = planApply({ local, remote: new Map(), streamOf: (x) => (x.db === 0 ? sid(x.partition) : null), maxEvents: 100, ownerMarker: false });
    expect(plan.consumed.get(sid(0))).toBe(1);
    expect(plan.barriersWaiting).toBe(0);
  });

  describe('slot hand-off (a cluster source resharded)', () => {
    // partitions 0-1: the old owner's shard (its stream's positions); 2-3: the new owner's (another stream)
    const other = (offset: number, seq = 0): SourcePosition => ({ epoch: 1, offset, seq, replid: 'other' });
    const handOff = (offset: number, marker: SourcePosition): ChangeEvent => ({
      kind: 'slot-handoff', pos: other(offset, 2 ** 52), db: 0, after: [{ partition: 0, pos: marker }, { partition: 1, pos: marker }],
    });
    const marker = (offset: number): ChangeEvent => ({ kind: 'heartbeat', pos: { ...pos(offset), seq: 2 ** 52 }, db: 0, timeMs: 0 });
    const streamOf = (x: { partition: number }) => sid(x.partition);

    it('holds its partition until every old-owner partition applied its marker, in the same plan when local', () => {
      const h = handOff(500, marker(40).pos);
      const local = new Map<string, PlanStream>([
        [sid(2), { items: [{ event: h, offset: '0' }, { event: { ...unit(501, [2]), pos: other(501) }, offset: '1' }], applied: other(400) }],
        [sid(0), { items: [{ event: unit(30, [0]), offset: '0' }, { event: marker(40), offset: '1' }], applied: pos(10) }],
        [sid(1), { items: [{ event: marker(40), offset: '0' }], applied: pos(10) }],
      ]);
      const plan = planApply({ local, remote: new Map(), streamOf, maxEvents: 100, ownerMarker: false });
      expect(plan.handOffsPassed).toBe(1);
      expect(plan.consumed.get(sid(2))).toBe(2);
      // the new owner's write comes after both old-owner markers in the one sequence
      const order = plan.segments.flatMap((s) => s.events.map((e) => `${s.stream}:${e.kind}:${e.pos.offset}`));
      const at = (x: string) => order.indexOf(x);
      expect(at(`${sid(2)}:command:501`)).toBeGreaterThan(at(`${sid(0)}:heartbeat:40`));
      expect(at(`${sid(2)}:command:501`)).toBeGreaterThan(at(`${sid(1)}:heartbeat:40`));
      // it moves its own stream's position (a position-only event), writes nothing
      expect(order).toContain(`${sid(2)}:heartbeat:500`);
    });

    it('waits while one old-owner partition has not applied its marker yet', () => {
      const h = handOff(500, marker(40).pos);
      const local = new Map<string, PlanStream>([
        [sid(2), { items: [{ event: h, offset: '0' }, { event: { ...unit(501, [2]), pos: other(501) }, offset: '1' }], applied: other(400) }],
        [sid(0), { items: [{ event: marker(40), offset: '0' }], applied: pos(10) }],
        [sid(1), { items: [{ event: unit(20, [1]), offset: '0' }], applied: pos(10) }],
      ]);
      const plan = planApply({ local, remote: new Map(), streamOf, maxEvents: 100, ownerMarker: false });
      expect(plan.handOffsPassed).toBe(0);
      expect(plan.consumed.get(sid(2))).toBeUndefined();
      expect(plan.barriersWaiting).toBe(1);
    });

    it('old-owner partitions held by other processes: waits on their stored positions', () => {
      const h = handOff(500, marker(40).pos);
      const local = new Map<string, PlanStream>([[sid(2), { items: [{ event: h, offset: '0' }], applied: other(400) }]]);
      const first = planApply({ local, remote: new Map([[sid(0), marker(40).pos], [sid(1), pos(39)]]), streamOf, maxEvents: 100, ownerMarker: false });
      expect(first.consumed.size).toBe(0);
      expect([...first.awaiting]).toEqual([sid(1)]);
      const second = planApply({ local, remote: new Map([[sid(0), marker(40).pos], [sid(1), pos(41)]]), streamOf, maxEvents: 100, ownerMarker: false });
      expect(second.consumed.get(sid(2))).toBe(1);
      expect(second.awaiting.size).toBe(0);
    });

    it('a replayed hand-off already applied moves on without writing', () => {
      const h = handOff(500, marker(40).pos);
      const local = new Map<string, PlanStream>([[sid(2), { items: [{ event: h, offset: '0' }], applied: other(600) }]]);
      const plan = planApply({ local, remote: new Map([[sid(0), pos(50)], [sid(1), pos(50)]]), streamOf, maxEvents: 100, ownerMarker: false });
      expect(plan.consumed.get(sid(2))).toBe(1);
      expect(plan.events).toBe(0);
    });
  });
});
