/**
 * The shape of a Redis Cluster source as capture follows it: which server is each shard's master
 * now, and which shard owns each slot. Pure: built from `CLUSTER NODES` text, compared between two
 * readings; cluster-follow.ts does the reading and acts on the differences.
 *
 * A *shard* is one replication history: a master and the replicas that copy it. Capture keeps one
 * replication link per shard, writing to that shard's range of partitions (cluster.ts), and a
 * shard survives a failover: the promoted replica continues the same history (same offsets, the
 * old replication id kept as `master_replid2`), so its events continue the same partitions with
 * comparable positions. A shard is recognised after a failover by its members: the node ids of
 * its master and of every replica ever seen copying it.
 */

import calculateSlot from 'cluster-key-slot';
import { KeyFilter, type KeyFilterOptions } from './key-filter.js';
import { keyIndexes } from './command-keys.js';

export const SLOTS = 16384;

export interface ClusterNode {
  id: string;
  host: string;
  port: number;
  master: boolean;
  /** Marked failed (`fail`) or without an address: not a server to read from. */
  unusable: boolean;
  /** The master this node copies (replicas), else null. */
  masterId: string | null;
  /** Slots it serves (masters), as [first, last] ranges. */
  slots: Array<[number, number]>;
  /** A slot migration involves this node (`[slot->-id]` or `[slot-<-id]`). */
  migrating: boolean;
}

/** Parses `CLUSTER NODES` (one line per node: id addr flags master ping pong epoch link slots…). */
export function parseClusterNodes(text: string): ClusterNode[] {
  const out: ClusterNode[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(' ');
    if (f.length < 8) continue;
    const [id, addr, flagText, master] = f;
    const flags = new Set(flagText.split(','));
    // ip:port@cport[,hostname]; an IPv6 address has colons of its own: the port is after the last one
    const hostPort = addr.split('@')[0];
    const colon = hostPort.lastIndexOf(':');
    const host = hostPort.slice(0, colon);
    const port = Number(hostPort.slice(colon + 1));
    const slots: Array<[number, number]> = [];
    let migrating = false;
    for (const s of f.slice(8)) {
      if (s.startsWith('[')) {
        migrating = true;
        continue;
      }
      const [a, b] = s.split('-').map(Number);
      if (Number.isInteger(a)) slots.push([a, Number.isInteger(b) ? b : a]);
    }
    out.push({
      id,
      host,
      port,
      master: flags.has('master'),
      unusable: flags.has('fail') || flags.has('noaddr') || flags.has('handshake') || !host || !(port > 0),
      masterId: master === '-' ? null : master,
      slots,
      migrating,
    });
  }
  return out;
}

export interface Shard {
  index: number;
  /** Node id of its master now. */
  masterId: string;
  host: string;
  port: number;
  /** Node ids of its master and of every replica seen copying it (a failover promotes one of them). */
  members: Set<string>;
}

export interface Layout {
  shards: Shard[];
  /** Shard index owning each slot, -1 when no live master serves it. */
  owners: Int16Array;
}

export type TopologyChange =
  /** A shard's master is another node now (a replica was promoted). */
  | { kind: 'master-moved'; shard: number; from: { host: string; port: number; id: string }; to: { host: string; port: number; id: string } }
  /**
   * A master that belongs to no known shard (a master added): serving slots (resharded to), or
   * `slotless` (just added, or about to become a replica: the follower waits a few readings).
   */
  | { kind: 'new-master'; node: { host: string; port: number; id: string }; slotless?: boolean };

/** The first layout: `masters` in their shard order (cluster.ts `mastersFromSlots`). */
export function initialLayout(masters: Array<{ index: number; host: string; port: number; id: string }>, nodes: ClusterNode[]): Layout {
  const shards = masters.map((m) => ({ index: m.index, masterId: m.id, host: m.host, port: m.port, members: new Set([m.id]) }));
  const layout: Layout = { shards, owners: new Int16Array(SLOTS).fill(-1) };
  return observe(layout, nodes).layout;
}

function shardOfNode(shards: Shard[], id: string): Shard | undefined {
  return shards.find((s) => s.members.has(id));
}

/**
 * Compares a new reading with the layout: which shard each master belongs to now (a promoted
 * replica stays in its shard), which shard owns each slot, and whether a migration is under way.
 * Returns the updated layout (a copy) and the changes to act on.
 */
export function observe(prev: Layout, nodes: ClusterNode[]): { layout: Layout; changes: TopologyChange[]; migrating: boolean } {
  const shards = prev.shards.map((s) => ({ ...s, members: new Set(s.members) }));
  const changes: TopologyChange[] = [];
  const byId = new Map(nodes.map((n) => [n.id, n]));
  // Replicas join the shard of their master: one of them may be promoted later. A node copies
  // one history at a time, so it leaves any other shard (a master that lost its last slot becomes
  // a replica of the master that took it, when cluster-allow-replica-migration is on).
  for (let pass = 0; pass < 2; pass++) {
    for (const n of nodes) {
      if (n.masterId === null) continue;
      const s = shardOfNode(shards, n.masterId) ?? shardOfNode(shards, n.id);
      if (!s) continue;
      for (const other of shards) if (other !== s) other.members.delete(n.id);
      s.members.add(n.id);
      s.members.add(n.masterId);
    }
  }
  const owners = new Int16Array(SLOTS).fill(-1);
  for (const n of nodes) {
    if (n.master && n.slots.length === 0 && !n.unusable && !n.migrating && !shardOfNode(shards, n.id)) {
      changes.push({ kind: 'new-master', node: { host: n.host, port: n.port, id: n.id }, slotless: true });
    }
    if (!n.master || n.slots.length === 0 || n.unusable) continue;
    const s = shardOfNode(shards, n.id);
    if (!s) {
      changes.push({ kind: 'new-master', node: { host: n.host, port: n.port, id: n.id } });
      continue;
    }
    if (s.masterId !== n.id) {
      // Only a master that serves slots takes the shard over: the old one, failed, keeps listing
      // its slots until a replica is elected in its place.
      const old = byId.get(s.masterId);
      if (old && old.master && !old.unusable && old.slots.length > 0) continue; // two claimants: wait for the cluster to settle
      changes.push({ kind: 'master-moved', shard: s.index, from: { host: s.host, port: s.port, id: s.masterId }, to: { host: n.host, port: n.port, id: n.id } });
      s.masterId = n.id;
      s.host = n.host;
      s.port = n.port;
    }
    for (const [a, b] of n.slots) for (let slot = a; slot <= b; slot++) owners[slot] = s.index;
  }
  // A failed master still lists its slots until its replica wins the election: they stay its shard's.
  for (const n of nodes) {
    if (!n.master || !n.unusable) continue;
    const s = shardOfNode(shards, n.id);
    if (!s) continue;
    for (const [a, b] of n.slots) for (let slot = a; slot <= b; slot++) if (owners[slot] === -1) owners[slot] = s.index;
  }
  return { layout: { shards, owners }, changes, migrating: nodes.some((n) => n.migrating) };
}

/** Slots whose owning shard differs between two layouts (slots no live master serves are ignored). */
export function movedSlots(a: Int16Array, b: Int16Array): number {
  let n = 0;
  for (let slot = 0; slot < SLOTS; slot++) if (a[slot] !== -1 && b[slot] !== -1 && a[slot] !== b[slot]) n++;
  return n;
}

/**
 * The key filter of one shard's pipeline: the task's filters, and only keys of slots the shard
 * owns in its stream as produced so far (the epoch's snapshots, then every slot hand-off).
 * - Snapshot keys of other slots are left out.
 * - A command unit that writes a slot the shard does not own (MIGRATE's RESTORE, a write
 *   redirected by ASK, writes after the move) is not left out: `touchesForeign` makes the pipeline
 *   hold its stream until the follower has handed the slot over (cluster-follow.ts). Produced at
 *   once, such a write could reach the destination before the old owner's last writes to its key
 *   and its DEL (the key lost, or BUSYKEY).
 */
export class ShardKeyFilter extends KeyFilter {
  private owned: (slot: number) => boolean = () => true;
  /** Units that wrote slots this shard did not own, since its slots were last assigned. */
  foreignWrites = 0;
  /**
   * Keys left out because their slot is not this shard's, since its slots were last assigned: a
   * snapshot taken while a slot was being imported. A hand-off cannot bring those back: the next
   * move takes an epoch.
   */
  keysLeftOut = 0;
  /** Those slots. */
  readonly foreignSlots = new Set<number>();

  constructor(opts: KeyFilterOptions) {
    super(opts);
  }

  /** Slots this shard owns from now on (a new epoch, or a hand-off). */
  ownSlots(owned: (slot: number) => boolean): void {
    this.owned = owned;
    this.foreignWrites = 0;
    this.keysLeftOut = 0;
    this.foreignSlots.clear();
  }

  /** True when a command of the unit has a key in a slot this shard does not own (and counts it). */
  touchesForeign(commands: Buffer[][]): boolean {
    let foreign = false;
    for (const args of commands) {
      const idx = keyIndexes(args);
      if (idx === null) continue;
      for (const i of idx) {
        const slot = calculateSlot(args[i]);
        if (!this.owned(slot)) {
          foreign = true;
          this.foreignSlots.add(slot);
        }
      }
    }
    if (foreign) this.foreignWrites++;
    return foreign;
  }

  override keySelected(key: Buffer): boolean {
    if (!this.owned(calculateSlot(key))) {
      this.keysLeftOut++;
      return false;
    }
    return super.keySelected(key);
  }

  override get filtersKeys(): boolean {
    return true;
  }
}
