/**
 * Which shards hand slots to which when a cluster source was resharded (pure; cluster-follow.ts
 * runs the hand-off).
 *
 * A key's writes before a move are in its old shard's partitions, with that master's offsets; its
 * writes after it (starting with the RESTORE that MIGRATE propagates on the new master) in the new
 * shard's, with offsets of another replication stream. The hand-off orders the two: the old shard
 * puts a marker in its partitions after its last write to the moved slots, and the new shard puts
 * a `slot-handoff` event in front of its first write to them that makes its partitions wait until
 * every old shard's partitions have applied their marker (services/applier/barrier.ts). Nothing is
 * snapshotted again.
 *
 * It is refused (the follower then takes a new snapshot epoch, which is always correct) when:
 * - a shard both gives and takes slots in one move (slots moved by hand both ways; redis-cli's
 *   `rebalance` makes each master either a source or a target): each side's hand-off would wait
 *   for the other's marker, which comes after its own hand-off;
 * - a shard wrote a slot it does not own now (the slot moved on again, or a migration was
 *   abandoned), or a slot no live master served at the epoch's start.
 */

export interface HandOffPlan {
  /** By new owner: the shards its new slots come from. */
  sources: Map<number, Set<number>>;
  slots: number;
}

/**
 * @param before slot owners the shards' streams are filtered with so far (shard index, -1: none)
 * @param now slot owners now
 * @param foreign by shard: slots it wrote while not owning them
 */
export function planHandOff(before: Int16Array, now: Int16Array, foreign: ReadonlyMap<number, ReadonlySet<number>>): HandOffPlan | { refused: string } {
  const sources = new Map<number, Set<number>>();
  const add = (to: number, from: number) => {
    let s = sources.get(to);
    if (!s) sources.set(to, (s = new Set()));
    s.add(from);
  };
  let slots = 0;
  for (let slot = 0; slot < before.length; slot++) {
    const from = before[slot];
    const to = now[slot];
    if (from === to || to === -1) continue;
    if (from === -1) return { refused: `slot ${slot} had no owner when the epoch started` };
    add(to, from);
    slots++;
  }
  for (const [shard, written] of foreign) {
    for (const slot of written) {
      if (now[slot] !== shard) return { refused: `master ${shard} wrote slot ${slot}, which it does not own now` };
      if (before[slot] === -1) return { refused: `slot ${slot} had no owner when the epoch started` };
    }
  }
  for (const to of sources.keys()) {
    for (const from of sources.values()) {
      if (from.has(to)) return { refused: `master ${to} both gives and takes slots in this move` };
    }
  }
  return { sources, slots };
}
