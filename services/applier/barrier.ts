/**
 * Cross-partition barriers: how G3 holds however many appliers share a group, and the plan that
 * turns the partitions an applier holds into one ordered sequence of destination writes.
 *
 * Capture sends a unit whose keys live in several partitions (or databases) to each of them with
 * the list of participants (RENAME a b, MULTI…EXEC, FLUSHDB …). The unit must take effect after
 * every earlier write to any key it touches and before every later one. The first participant is
 * its *owner*: the owner's copy carries the writes, the others' copies only move their stream's
 * position past it.
 *
 * ## Settled in memory when this process holds every participant (the common case)
 * The plan walks the queues of the partitions this applier holds: plain events go straight into
 * the plan; a barrier waits until it is at the head of every participant's queue, then goes into
 * the plan once (the owner's writes, then a position-only copy for each other participant), and
 * every participant goes on after it. The plan is a single sequence that the destination writer
 * applies in as few transactions as its size allows, each stream's position stored with its
 * writes. A stream of barriers therefore costs no extra round trip and nothing is read twice.
 *
 * ## Coordinated through the destination when participants live in other processes
 * The only shared state is the stream positions stored in the destination with the writes, so the
 * protocol needs no key of its own and its bookkeeping stays bounded by the number of streams:
 * - a participant whose owner is elsewhere *arrives* by storing its position at the barrier (a
 *   position-only event), then waits until the owner's stored position reaches the barrier;
 * - the owner applies the unit once every participant has arrived: a local one is at the barrier
 *   in its queue, a remote one has stored a position at or past it;
 * - a barrier is *done* once the owner's position is at or past it, whoever looks and whenever:
 *   after a crash or a rebalance a participant that meets the barrier again finds it done and
 *   moves on, however far the owner has gone since. (On a cluster destination the owner's
 *   position is per slot, so the owner also stores a position-only copy in its home slot: the
 *   position that others read.)
 * No participant can pass a barrier before the owner applied it, so no committed offset passes
 * it either, and replaying is always safe.
 *
 * Deadlock freedom: every queue is a prefix of its partition in source order, and the barrier with
 * the lowest position among those waiting is at the head of each of its participants (anything
 * before it in a participant's partition is earlier still), so it can always be settled.
 *
 * ## Slot hand-offs (a cluster source resharded)
 * A `slot-handoff` event holds its partition until every partition it lists (the moved slots' old
 * shards, another replication stream) has applied the position given for it: a local one in this
 * plan's order, a remote one by its stored position. Then it moves its own stream's position past
 * itself, as a position-only event. It only ever waits for positions capture had already produced
 * when it wrote the hand-off, and a hand-off is never written into a shard's partitions while that
 * shard is itself a source of the move, so waits cannot form a cycle.
 */
import type { ChangeEvent, CommandEvent, SlotHandOff, SourcePosition } from '../events/model.js';
import { comparePositions } from '../events/model.js';

/** One whole event waiting in a partition's queue. */
export interface QueuedEvent {
  event: ChangeEvent;
  /** Offset of the record where the event begins (its first piece). */
  offset: string;
}

export interface PlanStream {
  /** Events not applied yet, in partition order. */
  items: readonly QueuedEvent[];
  /** The highest position applied for this stream (null: none yet). Must be known before planning. */
  applied: SourcePosition | null;
}

export interface PlanInput {
  /** The streams (topic:partition) this process holds, by id, in the order to visit them. */
  local: Map<string, PlanStream>;
  /** Stream id of a participant; null when this group does not consume its database. */
  streamOf(participant: { db: number; partition: number }): string | null;
  /** Last stored positions read for streams held by other processes. */
  remote: ReadonlyMap<string, SourcePosition | null>;
  /** Upper bound of events in one plan. */
  maxEvents: number;
  /** Also store a position-only copy in the owner's stream after the unit (cluster destination). */
  ownerMarker: boolean;
}

export interface PlanSegment {
  stream: string;
  events: ChangeEvent[];
}

export interface Plan {
  /** One sequence: apply in this order. */
  segments: PlanSegment[];
  /** Per stream: how many queued items the plan consumes from the head. */
  consumed: Map<string, number>;
  /** Per stream: its position once the plan is applied. */
  positions: Map<string, SourcePosition>;
  /** Streams of other processes whose stored positions are awaited. */
  awaiting: Set<string>;
  events: number;
  barriersApplied: number;
  barriersPassed: number;
  /** Barriers (and slot hand-offs) this plan had to stop at. */
  barriersWaiting: number;
  /** Slot hand-offs passed: every partition they waited for had applied its position. */
  handOffsPassed: number;
}

export function isBarrier(e: ChangeEvent): e is CommandEvent {
  return e.kind === 'command' && e.participants.length > 1;
}

/** A copy of `b` that only moves a stream's position past it. */
export function positionOnly(b: ChangeEvent, db: number): ChangeEvent {
  return { kind: 'heartbeat', pos: b.pos, db, timeMs: 0 };
}

function atOrPast(p: SourcePosition | null | undefined, b: SourcePosition): boolean {
  return !!p && comparePositions(p, b) >= 0;
}

/** The streams a barrier's participants are read from (the owner first) and the db of each. */
interface Participants {
  dbOf: Map<string, number>;
  members: string[];
  /** The mapping they were worked out with. */
  streamOf: PlanInput['streamOf'];
}

/**
 * Participants by barrier event: a barrier that waits for another stream is looked at again by
 * every plan until it settles (and every copy of a unit is a barrier), so they are worked out once
 * per mapping (the applier passes the same `streamOf` to every plan). Weak: an event applied and dropped from its queue takes its entry with it.
 */
const participantsCache = new WeakMap<CommandEvent, Participants>();

function participantsOf(b: CommandEvent, streamOf: PlanInput['streamOf']): Participants {
  let r = participantsCache.get(b);
  if (!r || r.streamOf !== streamOf) {
    const dbOf = new Map<string, number>();
    for (const p of b.participants) {
      const s = streamOf(p);
      if (s !== null && !dbOf.has(s)) dbOf.set(s, p.db);
    }
    r = { dbOf, members: [...dbOf.keys()], streamOf };
    participantsCache.set(b, r);
  }
  return r;
}

/**
 * Builds the next plan from the queues. Pure: the caller applies `segments`, then drops
 * `consumed` items and adopts `positions`.
 */
export function planApply(input: PlanInput): Plan {
  const plan: Plan = { segments: [], consumed: new Map(), positions: new Map(), awaiting: new Set(), events: 0, barriersApplied: 0, barriersPassed: 0, barriersWaiting: 0, handOffsPassed: 0 };
  const cursor = new Map<string, number>();
  const pos = new Map<string, SourcePosition | null>();
  for (const [id, s] of input.local) {
    cursor.set(id, 0);
    pos.set(id, s.applied);
  }
  const head = (id: string): QueuedEvent | undefined => input.local.get(id)!.items[cursor.get(id)!];
  const advance = (id: string) => cursor.set(id, cursor.get(id)! + 1);
  const push = (id: string, e: ChangeEvent) => {
    const last = plan.segments[plan.segments.length - 1];
    if (last && last.stream === id) last.events.push(e);
    else plan.segments.push({ stream: id, events: [e] });
    plan.events++;
    const cur = pos.get(id);
    if (!cur || comparePositions(e.pos, cur) > 0) pos.set(id, e.pos);
  };
  const positionOf = (id: string) => (input.local.has(id) ? pos.get(id) : input.remote.get(id));
  const waiting = new Set<string>();

  /** Settles the barrier at the head of `id`; true when `id` moved past it. */
  const settle = (id: string, b: CommandEvent): boolean => {
    const { dbOf, members } = participantsOf(b, input.streamOf);
    const owner = members[0];
    if (owner === undefined || members.length === 1) {
      // the others are not consumed by this group: an ordinary event of its one stream
      push(id, b);
      advance(id);
      return true;
    }
    const done = atOrPast(positionOf(owner), b.pos);
    if (id !== owner) {
      if (done) {
        if (!atOrPast(pos.get(id), b.pos)) push(id, positionOnly(b, dbOf.get(id)!));
        advance(id);
        plan.barriersPassed++;
        return true;
      }
      if (!input.local.has(owner)) {
        // arrive in the destination, then wait for the owner to apply the unit
        if (!atOrPast(pos.get(id), b.pos)) push(id, positionOnly(b, dbOf.get(id)!));
        plan.awaiting.add(owner);
      }
      waiting.add(`${b.pos.epoch}:${b.pos.offset}:${b.pos.seq}`);
      return false;
    }
    if (done) {
      // applied before (a replay after a restart): the owner moves on
      advance(id);
      return true;
    }
    const atBarrier: string[] = [];
    let ready = true;
    for (const m of members) {
      if (m === owner) continue;
      if (input.local.has(m)) {
        const h = head(m);
        if (h && h.event.kind === 'command' && comparePositions(h.event.pos, b.pos) === 0) atBarrier.push(m);
        else if (!atOrPast(pos.get(m), b.pos)) ready = false;
      } else if (!atOrPast(input.remote.get(m), b.pos)) {
        plan.awaiting.add(m);
        ready = false;
      }
    }
    if (!ready) {
      waiting.add(`${b.pos.epoch}:${b.pos.offset}:${b.pos.seq}`);
      return false;
    }
    push(id, b);
    if (input.ownerMarker) push(id, positionOnly(b, dbOf.get(id)!));
    advance(id);
    plan.barriersApplied++;
    for (const m of atBarrier) {
      // the participant's own copy of the unit: its position object carries what its reader
      // attached to it (the Kafka offset to resume that partition at), not the owner's
      if (!atOrPast(pos.get(m), b.pos)) push(m, positionOnly(head(m)!.event, dbOf.get(m)!));
      advance(m);
      plan.barriersPassed++;
    }
    return true;
  };

  /** Passes the hand-off at the head of `id` once every partition it waits for has applied its position. */
  const handOff = (id: string, h: SlotHandOff): boolean => {
    let ready = true;
    for (const a of h.after) {
      const s = input.streamOf({ db: h.db, partition: a.partition });
      if (s === null || s === id) continue;
      if (input.local.has(s)) {
        if (!atOrPast(pos.get(s), a.pos)) ready = false;
      } else if (!atOrPast(input.remote.get(s), a.pos)) {
        plan.awaiting.add(s);
        ready = false;
      }
    }
    if (!ready) {
      waiting.add(`handoff:${id}`);
      return false;
    }
    if (!atOrPast(pos.get(id), h.pos)) push(id, { kind: 'heartbeat', pos: h.pos, db: h.db, timeMs: 0 });
    advance(id);
    plan.handOffsPassed++;
    return true;
  };

  let progress = true;
  while (progress && plan.events < input.maxEvents) {
    progress = false;
    for (const id of input.local.keys()) {
      for (;;) {
        if (plan.events >= input.maxEvents) break;
        const h = head(id);
        if (!h) break;
        if (h.event.kind === 'slot-handoff') {
          if (!handOff(id, h.event)) break;
          progress = true;
          continue;
        }
        if (!isBarrier(h.event)) {
          push(id, h.event);
          advance(id);
          progress = true;
          continue;
        }
        if (!settle(id, h.event)) break;
        progress = true;
      }
    }
  }
  for (const [id, n] of cursor) {
    if (n > 0) plan.consumed.set(id, n);
    const p = pos.get(id);
    if (p && p !== input.local.get(id)!.applied) plan.positions.set(id, p);
  }
  plan.barriersWaiting = waiting.size;
  return plan;
}
