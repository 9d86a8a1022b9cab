/**
 * Where an event goes: the topic of its database and a partition chosen from its key's cluster
 * slot (hash tags respected), so that all writes to a key, and a cluster's per-slot order, stay in
 * one partition (G2).
 *
 * A unit (one command, or MULTI…EXEC) whose keys fall in several partitions, or several
 * databases, or whose keys are unknown, is sent to every partition it touches with the full list
 * of those participants. Appliers treat it as a barrier: each participant waits until all of them
 * have reached it, then one of them applies it (G3); see services/applier/barrier.ts.
 */
import calculateSlot from 'cluster-key-slot';
import { lowerCommandName } from '../events/command-names.js';
import { CROSS_DB, isSingleKeyCommand, keyIndexes } from './command-keys.js';

export interface Participant {
  db: number;
  partition: number;
}

export function partitionOfKey(key: Buffer, partitions: number): number {
  return calculateSlot(key) % partitions;
}

export interface RoutingContext {
  partitions: number;
  /**
   * First partition of this stream's range (default 0). A cluster source gives each master its own
   * range of `partitions` partitions, so that every partition holds one replication stream.
   */
  partitionBase?: number;
  /** Databases that are synchronized (their topics exist); others are dropped. */
  syncedDbs: number[];
}

const NOWHERE: readonly Participant[] = Object.freeze([]);
/** The one-participant lists, shared (frozen): most units route to one partition, every time. */
const single = new Map<number, readonly Participant[]>();

function onePartition(db: number, partition: number): readonly Participant[] {
  const id = db * 1_048_576 + partition;
  let list = single.get(id);
  if (list === undefined) single.set(id, (list = Object.freeze([Object.freeze({ db, partition })])));
  return list;
}

/**
 * Participants of a unit that starts in `db`. SELECT inside the unit switches the database for the
 * commands after it. Returns an empty list when nothing of the unit concerns a synced database.
 */
export function routeUnit(db: number, commands: Buffer[][], ctx: RoutingContext): readonly Participant[] {
  // The common case first: one command with one key (SET k v, HSET k f v …).
  if (commands.length === 1) {
    const args = commands[0];
    if (args.length >= 2 && args[0].length <= 16 && isSingleKeyCommand(lowerCommandName(args[0]))) {
      if (!ctx.syncedDbs.includes(db)) return NOWHERE;
      return onePartition(db, (ctx.partitionBase ?? 0) + partitionOfKey(args[1], ctx.partitions));
    }
  }
  const out = new Map<string, Participant>();
  const synced = new Set(ctx.syncedDbs);
  const base = ctx.partitionBase ?? 0;
  const add = (d: number, p: number) => {
    if (synced.has(d)) out.set(`${d}:${base + p}`, { db: d, partition: base + p });
  };
  const everyPartition = (d: number) => {
    for (let p = 0; p < ctx.partitions; p++) add(d, p);
  };
  let cur = db;
  for (const args of commands) {
    const name = args.length > 0 ? lowerCommandName(args[0]) : '';
    if (name === 'select') {
      cur = Number(args[1]?.toString());
      continue;
    }
    if (name === 'multi' || name === 'exec') continue;
    if (CROSS_DB.has(name)) {
      if (name === 'flushall') for (const d of ctx.syncedDbs) everyPartition(d);
      else if (name === 'swapdb') {
        everyPartition(Number(args[1]?.toString()));
        everyPartition(Number(args[2]?.toString()));
      } else if (name === 'move' && args.length >= 3) {
        add(cur, partitionOfKey(args[1], ctx.partitions));
        add(Number(args[2].toString()), partitionOfKey(args[1], ctx.partitions));
      } else if (name === 'copy' && args.length >= 3) {
        add(cur, partitionOfKey(args[1], ctx.partitions));
        let target = cur;
        for (let i = 3; i < args.length - 1; i++) if (args[i].toString().toLowerCase() === 'db') target = Number(args[i + 1].toString());
        add(target, partitionOfKey(args[2], ctx.partitions));
      }
      continue;
    }
    if (name === 'flushdb') {
      everyPartition(cur);
      continue;
    }
    if (name === 'publish' || name === 'spublish') {
      add(cur, partitionOfKey(args[1] ?? Buffer.alloc(0), ctx.partitions));
      continue;
    }
    if (name === 'function' || name === 'script') {
      add(cur, 0); // server-wide, keyless: one place, in order with the db's partition 0
      continue;
    }
    const idx = keyIndexes(args);
    if (idx === null) {
      everyPartition(cur); // unknown key layout: a barrier over the whole database is always safe
      continue;
    }
    for (const i of idx) add(cur, partitionOfKey(args[i], ctx.partitions));
    if (idx.length === 0) add(cur, 0);
  }
  return [...out.values()].sort((a, b) => a.db - b.db || a.partition - b.partition);
}
