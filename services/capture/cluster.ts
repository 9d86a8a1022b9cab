/**
 * Capture of a Redis Cluster source: one replica link per shard (a master and its replicas), all
 * composed into one set of topics. Two rules keep the applier's guarantees:
 *
 * - Each shard gets its own range of partitions (shard i: partitions i·P … i·P+P−1), so every
 *   partition holds exactly one replication stream and its positions (that shard's offsets) are
 *   comparable. A key's partition is its slot's, inside its shard's range, so per-slot order
 *   holds. A failover keeps the shard (the promoted replica continues the same offsets); slots
 *   moved between shards start a new epoch (cluster-follow.ts says why).
 * - The snapshot epoch is shared. A new snapshot of one master (its backlog overrun, say) would
 *   leave the other masters' keys of the old epoch in place, or be wiped by the flush that starts
 *   a new epoch at the destination; so when a master that already holds data of the current epoch
 *   has to resync, the epoch grows and every other master is asked for a new full sync too.
 */
import type { Logger } from '../common/log.js';
import type { CapturePosition } from './capture.js';
import { parseClusterSlots } from '../common/cluster-slots.js';

export interface ClusterMaster {
  index: number;
  host: string;
  port: number;
  id: string;
  /** First slot it serves, for a stable order. */
  firstSlot: number;
}

/** Masters from `CLUSTER SLOTS` output, ordered by their first slot. */
export function mastersFromSlots(slots: unknown[]): ClusterMaster[] {
  const byId = new Map<string, ClusterMaster>();
  for (const range of parseClusterSlots(slots)) {
    const id = range.id ?? `${range.host}:${range.port}`;
    const m = byId.get(id);
    if (!m) byId.set(id, { index: 0, host: range.host, port: range.port, id, firstSlot: range.start });
    else m.firstSlot = Math.min(m.firstSlot, range.start);
  }
  return [...byId.values()].sort((a, b) => a.firstSlot - b.firstSlot).map((m, index) => ({ ...m, index }));
}

/**
 * The range of partitions each master writes to (`masters` in slot order; `histories[i]`: the
 * replication ids master i answers PSYNC for, its master_replid and master_replid2; `stored[r]`:
 * the replid of range r's stored position). A master continues the range whose stored position
 * belongs to its history, so a restart after a reshard (which may change the masters' order) or a
 * failover still continues every stream by PSYNC; the others take the free ranges in slot order.
 * A range whose master no longer serves slots stays unused: its partitions keep their stream.
 */
export function assignRanges(histories: string[][], stored: Array<string | null>): number[] {
  const taken = new Set<number>();
  const out = histories.map((ids) => {
    const r = stored.findIndex((id, range) => id !== null && !taken.has(range) && ids.includes(id));
    if (r >= 0) taken.add(r);
    return r;
  });
  let free = 0;
  return out.map((r) => {
    if (r >= 0) return r;
    while (taken.has(free)) free++;
    taken.add(free);
    return free;
  });
}

export class EpochCoordinator {
  epoch: number;
  private members = new Set<number>();
  /** True when every master can resume where it stopped; otherwise all start a new epoch. */
  readonly resume: boolean;
  private readonly indexes: number[];

  /**
   * `masters`: how many (indexes 0…n−1), or their indexes (the ranges they write to);
   * `stored[i]`: the stored position of the i-th of them.
   */
  constructor(
    masters: number | number[],
    stored: Array<CapturePosition | null>,
    private readonly log: Logger,
    private readonly forceOthers: (except: number) => void,
  ) {
    const indexes = typeof masters === 'number' ? Array.from({ length: masters }, (_, i) => i) : masters;
    this.indexes = indexes;
    const epochs = stored.map((p) => p?.epoch ?? 0);
    const max = Math.max(0, ...epochs);
    this.resume = max > 0 && stored.length === indexes.length && stored.every((p) => p !== null && p.state === 'streaming' && p.epoch === max);
    if (this.resume) {
      this.epoch = max;
      for (const i of indexes) this.members.add(i);
    } else {
      this.epoch = max + 1; // every master joins this epoch with its first full sync
    }
  }

  /**
   * The next full sync of any master starts a new epoch, which every other master then joins
   * (cluster-follow.ts: after slots moved, or a master that takes over a range of partitions).
   */
  renew(): void {
    for (const i of this.indexes) this.members.add(i);
  }

  /** A master added during the task (its own new range `i`): it joins the next renewal. */
  add(i: number): void {
    if (!this.indexes.includes(i)) this.indexes.push(i);
  }

  /** The epoch of master `i`'s full sync that is starting. */
  next(i: number): number {
    if (this.members.has(i)) {
      this.epoch += 1;
      this.members = new Set([i]);
      this.log.warn({ master: i, epoch: this.epoch }, 'a master of the cluster needs a new snapshot: every master joins a new epoch');
      this.forceOthers(i);
      return this.epoch;
    }
    this.members.add(i);
    return this.epoch;
  }
}

/**
 * The slot owners a cluster's current epoch was snapshotted with (shard index per slot), kept in
 * the positions topic: a capture restarted after slots moved while it was down must still hold
 * back the new owners' writes and take an epoch (cluster-follow.ts), or the two masters' streams
 * replayed from their positions would race for the moved keys.
 */
export function encodeOwners(owners: Int16Array): Array<[number, number, number]> {
  const runs: Array<[number, number, number]> = [];
  for (let slot = 0; slot < owners.length; slot++) {
    const last = runs[runs.length - 1];
    if (last && last[2] === owners[slot] && last[1] === slot - 1) last[1] = slot;
    else runs.push([slot, slot, owners[slot]]);
  }
  return runs;
}

export function decodeOwners(value: unknown): Int16Array | null {
  const runs = (value as { owners?: unknown } | null | undefined)?.owners;
  if (!Array.isArray(runs)) return null;
  const owners = new Int16Array(16384).fill(-1);
  for (const run of runs) {
    if (!Array.isArray(run) || run.length !== 3 || !run.every(Number.isInteger)) return null;
    const [first, last, shard] = run as number[];
    for (let slot = Math.max(0, first); slot <= Math.min(16383, last); slot++) owners[slot] = shard;
  }
  return owners;
}
