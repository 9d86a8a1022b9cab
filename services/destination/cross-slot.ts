/**
 * Commands whose keys fall in different slots of a cluster destination: what each becomes.
 * Pure planning, no I/O (cross-slot-runner.ts runs the plans).
 *
 * A cluster refuses a command whose keys are in several slots (CROSSSLOT), yet a standalone source
 * propagates them all the time. Two families:
 *
 * - Commands that split naturally (DEL, UNLINK, TOUCH, MSET): one command per slot, each going to
 *   its slot's transaction like any single-slot write (`splitAcrossSlots`). Each piece is exactly
 *   once through its slot's position; the pieces are not atomic together.
 *
 * - Commands that do not split are emulated (`planCrossSlot`): read what the command needs from the
 *   nodes holding its inputs, decide (e.g. MSETNX: does any key exist?), then write slot by slot,
 *   each slot in one transaction carrying that slot's position. Values travel as DUMP payloads of
 *   the destination itself (any type, module values and stream groups included, byte-exact, and
 *   always readable by RESTORE on the same cluster), whatever the write mode: the write mode is
 *   about how *source* values are written.
 *
 *   The *STORE family (SUNIONSTORE, ZINTERSTORE, BITOP, PFMERGE, SORT … STORE, GEOSEARCHSTORE, …)
 *   is computed by the server, not re-implemented here: the inputs held by other nodes are DUMPed
 *   and RESTOREd into temporary keys carrying the output's hash tag, and the command runs on the
 *   output's node against them, in one MULTI/EXEC that creates the temporaries, runs the command,
 *   deletes them and sets the position. The result is exactly what Redis computes (weights,
 *   aggregates, HyperLogLog merging, bit operations), and a temporary never outlives its
 *   transaction, so a crash cannot leave one behind and concurrent writers cannot see another's.
 *
 * ## Exactly once, crash between two steps
 * An emulation writes `slots` in a fixed order: the output first, then the slots it deletes from
 * (RENAME writes the new name, then deletes the old one). Every slot's transaction sets the
 * stream's position in that slot to the command's position, and nothing after the command is
 * applied before all its slots are written. So when a re-delivered command finds some of its slots
 * already at its position, the run was cut between two transactions, and which slots committed
 * tells which way it went:
 * - apply: slots committed in `slots` order, so the first slot is among those committed; the rest
 *   only delete or write values known from the command itself (never from a read), so they are
 *   completed without reading inputs that the first step may have changed;
 * - no-op (the command had no effect: MSETNX with an existing key, SMOVE of an absent member, or a
 *   command skipped under on-command-error skip): only positions are written, in the *reverse*
 *   order, so a cut no-op never has the first slot committed.
 * Inputs are read only when no slot has committed yet: the inputs are then untouched since the
 * first attempt, and the same decision comes out again.
 */
import { keySlot, slotTag } from './connection.js';
import type { Arg } from './translate.js';

/** A read from the node holding `slot`, before an emulated command's writes. */
export type SlotRead =
  | { t: 'dump'; slot: number; key: Arg } // DUMP and PTTL
  | { t: 'exists'; slot: number; key: Arg }
  | { t: 'sismember'; slot: number; key: Arg; member: Arg }
  | { t: 'lindex'; slot: number; key: Arg; index: 0 | -1 };

export interface DumpValue {
  /** null: the key does not exist. */
  payload: Buffer | null;
  /** PTTL: ms to live, -1 without TTL. */
  pttl: number;
}

/** The value of each read, in the order of `reads`: DumpValue, boolean (exists, sismember), Buffer | null (lindex). */
export type ReadValue = DumpValue | boolean | Buffer | null;

export type Decision = { t: 'apply' } | { t: 'noop' } | { t: 'refuse'; reason: string };

export interface Emulation {
  kind: 'emulate';
  name: string;
  /** Slots written, in the order their transactions run when the command takes effect. */
  slots: number[];
  reads: SlotRead[];
  decide(values: ReadValue[]): Decision;
  /**
   * Commands for `slots[i]` when the command takes effect. `values` is null when a crashed run is
   * being completed (only for i ≥ 1, which never depend on reads).
   */
  commands(i: number, values: ReadValue[] | null): Arg[][];
}

export interface Unsupported {
  kind: 'unsupported';
  name: string;
  reason: string;
}

export type CrossSlotPlan = Emulation | Unsupported;

/** One slot transaction of an emulated command. */
export interface SlotStep {
  slot: number;
  commands: Arg[][];
}

/** Temporary keys live only inside one MULTI/EXEC, under replistream's own prefix. */
export const TEMP_KEY_PREFIX = 'replistream:xslot:';

export function tempKey(slot: number, n: number): string {
  return `${TEMP_KEY_PREFIX}{${slotTag(slot)}}:${n}`;
}

function str(a: Arg | undefined): string {
  return a === undefined ? '' : typeof a === 'string' ? a : a.toString('latin1');
}

function upper(a: Arg | undefined): string {
  return str(a).toUpperCase();
}

function sameBytes(a: Arg, b: Arg): boolean {
  return Buffer.from(a as never).equals(Buffer.from(b as never));
}

function distinctSlots(keys: Arg[]): number[] {
  return [...new Set(keys.map((k) => keySlot(k)))];
}

// ---------------------------------------------------------------------------------------------
// commands that split per slot

/** Commands whose effect on each key is independent of the others: `keyed` args per key (the key, then its value). */
const SPLITTABLE: Record<string, number> = { DEL: 1, UNLINK: 1, TOUCH: 1, MSET: 2 };

/**
 * One command per slot (slots in order of first appearance, keys in their order) when `args` is a
 * command that splits naturally; null otherwise. `keyIndexes`: where its keys are in `args`.
 */
export function splitAcrossSlots(args: Arg[], keyIndexes: number[]): Array<{ slot: number; args: Arg[] }> | null {
  const per = SPLITTABLE[upper(args[0])];
  if (per === undefined || keyIndexes.length === 0) return null;
  const bySlot = new Map<number, Arg[]>();
  for (const i of keyIndexes) {
    const slot = keySlot(args[i]);
    let a = bySlot.get(slot);
    if (!a) bySlot.set(slot, (a = [args[0]]));
    a.push(...args.slice(i, i + per));
  }
  return [...bySlot.entries()].map(([slot, a]) => ({ slot, args: a }));
}

// ---------------------------------------------------------------------------------------------
// emulated commands

const STORE_COMMANDS = new Set([
  'SINTERSTORE',
  'SUNIONSTORE',
  'SDIFFSTORE',
  'ZUNIONSTORE',
  'ZINTERSTORE',
  'ZDIFFSTORE',
  'ZRANGESTORE',
  'BITOP',
  'PFMERGE',
  'GEOSEARCHSTORE',
  'SORT',
  'GEORADIUS',
  'GEORADIUSBYMEMBER',
]);

/** TTL argument for RESTORE from a PTTL reply (0: no TTL; a key about to expire keeps 1 ms). */
function restoreTtl(pttl: number): string {
  return pttl < 0 ? '0' : String(Math.max(1, pttl));
}

function asDump(v: ReadValue | undefined): DumpValue {
  return v && typeof v === 'object' && !Buffer.isBuffer(v) ? v : { payload: null, pttl: -2 };
}

/**
 * The plan for a command whose keys (`args[i]` for i in `keyIndexes`) are in more than one slot
 * and that `splitAcrossSlots` does not split. Arguments are the command as the destination must
 * apply it (dbs already mapped).
 */
export function planCrossSlot(args: Arg[], keyIndexes: number[]): CrossSlotPlan {
  const name = upper(args[0]);
  switch (name) {
    case 'RENAME':
    case 'RENAMENX':
      return planRename(name, args[1], args[2], name === 'RENAMENX');
    case 'COPY':
      return planCopy(args);
    case 'SMOVE':
      return planSmove(args[1], args[2], args[3]);
    case 'LMOVE':
    case 'BLMOVE':
      return planLmove(name, args[1], args[2], upper(args[3]) === 'LEFT' ? 'LEFT' : 'RIGHT', upper(args[4]) === 'LEFT' ? 'LEFT' : 'RIGHT');
    case 'RPOPLPUSH':
    case 'BRPOPLPUSH':
      return planLmove(name, args[1], args[2], 'RIGHT', 'LEFT');
    case 'MSETNX':
      return planMsetnx(args);
  }
  if (STORE_COMMANDS.has(name)) {
    const output = storeOutputIndex(name, args, keyIndexes);
    if (output !== null) return planStore(name, args, keyIndexes, output);
  }
  return {
    kind: 'unsupported',
    name,
    reason:
      `its keys are in different slots of the cluster destination and ${name} cannot be emulated across slots ` +
      '(split: DEL, UNLINK, TOUCH, MSET; emulated: RENAME, RENAMENX, COPY, SMOVE, LMOVE, RPOPLPUSH, MSETNX and the *STORE commands, BITOP, PFMERGE, SORT … STORE)',
  };
}

function planRename(name: string, src: Arg, dst: Arg, nx: boolean): Emulation {
  const from = keySlot(src);
  const to = keySlot(dst);
  const reads: SlotRead[] = [{ t: 'dump', slot: from, key: src }];
  if (nx) reads.push({ t: 'exists', slot: to, key: dst });
  return {
    kind: 'emulate',
    name,
    slots: [to, from],
    reads,
    decide(values) {
      if (nx && values[1] === true) return { t: 'noop' };
      if (asDump(values[0]).payload === null) return { t: 'refuse', reason: `${name}: no such key (the key to rename is missing in the destination)` };
      return { t: 'apply' };
    },
    commands(i, values) {
      if (i === 1) return [['DEL', src]];
      const v = asDump(values?.[0]);
      return [['RESTORE', dst, restoreTtl(v.pttl), v.payload!, 'REPLACE']];
    },
  };
}

function planCopy(args: Arg[]): Emulation {
  const [src, dst] = [args[1], args[2]];
  // DB was mapped already: a cluster has db 0 only, so the copy stays in it
  const replace = args.slice(3).some((a) => upper(a) === 'REPLACE');
  const reads: SlotRead[] = [{ t: 'dump', slot: keySlot(src), key: src }];
  if (!replace) reads.push({ t: 'exists', slot: keySlot(dst), key: dst });
  return {
    kind: 'emulate',
    name: 'COPY',
    slots: [keySlot(dst)],
    reads,
    decide(values) {
      if (asDump(values[0]).payload === null || values[1] === true) return { t: 'noop' };
      return { t: 'apply' };
    },
    commands(_i, values) {
      const v = asDump(values?.[0]);
      return [['RESTORE', dst, restoreTtl(v.pttl), v.payload!, 'REPLACE']];
    },
  };
}

function planSmove(src: Arg, dst: Arg, member: Arg): Emulation {
  return {
    kind: 'emulate',
    name: 'SMOVE',
    slots: [keySlot(dst), keySlot(src)],
    reads: [{ t: 'sismember', slot: keySlot(src), key: src, member }],
    decide: (values) => (values[0] === true ? { t: 'apply' } : { t: 'noop' }),
    commands: (i) => (i === 0 ? [['SADD', dst, member]] : [['SREM', src, member]]),
  };
}

function planLmove(name: string, src: Arg, dst: Arg, from: 'LEFT' | 'RIGHT', to: 'LEFT' | 'RIGHT'): Emulation {
  return {
    kind: 'emulate',
    name,
    slots: [keySlot(dst), keySlot(src)],
    reads: [{ t: 'lindex', slot: keySlot(src), key: src, index: from === 'LEFT' ? 0 : -1 }],
    decide: (values) => (Buffer.isBuffer(values[0]) ? { t: 'apply' } : { t: 'noop' }),
    commands(i, values) {
      if (i === 1) return [[from === 'LEFT' ? 'LPOP' : 'RPOP', src]];
      return [[to === 'LEFT' ? 'LPUSH' : 'RPUSH', dst, values![0] as Buffer]];
    },
  };
}

function planMsetnx(args: Arg[]): Emulation {
  const pairs: Array<[Arg, Arg]> = [];
  for (let i = 1; i + 1 < args.length; i += 2) pairs.push([args[i], args[i + 1]]);
  const slots = distinctSlots(pairs.map(([k]) => k)).sort((a, b) => a - b);
  return {
    kind: 'emulate',
    name: 'MSETNX',
    slots,
    reads: pairs.map(([key]) => ({ t: 'exists', slot: keySlot(key), key })),
    // all or nothing, as the source did it: one existing key and nothing is set
    decide: (values) => (values.some((v) => v === true) ? { t: 'noop' } : { t: 'apply' }),
    commands(i) {
      const mine = pairs.filter(([k]) => keySlot(k) === slots[i]);
      return [['MSET', ...mine.flat()]];
    },
  };
}

/** Index in `args` of the key a *STORE command writes; null when it writes none (SORT without STORE). */
function storeOutputIndex(name: string, args: Arg[], keyIndexes: number[]): number | null {
  if (name === 'SORT' || name === 'GEORADIUS' || name === 'GEORADIUSBYMEMBER') {
    let out: number | null = null;
    for (let i = 2; i < args.length - 1; i++) {
      const t = upper(args[i]);
      if (t === 'STORE' || t === 'STOREDIST') out = i + 1;
    }
    return out;
  }
  return keyIndexes[0] ?? null;
}

function planStore(name: string, args: Arg[], keyIndexes: number[], output: number): Emulation {
  const slot = keySlot(args[output]);
  // inputs held by other nodes' slots, each distinct key once
  const foreign: Arg[] = [];
  for (const i of keyIndexes) {
    if (i === output || keySlot(args[i]) === slot) continue;
    if (!foreign.some((k) => sameBytes(k, args[i]))) foreign.push(args[i]);
  }
  const temps = foreign.map((_, n) => tempKey(slot, n));
  const rewritten = args.map((a, i) => {
    if (i === output || !keyIndexes.includes(i)) return a;
    const n = foreign.findIndex((k) => sameBytes(k, a));
    return n < 0 ? a : temps[n];
  });
  return {
    kind: 'emulate',
    name,
    slots: [slot],
    reads: foreign.map((key) => ({ t: 'dump', slot: keySlot(key), key })),
    decide: () => ({ t: 'apply' }),
    commands(_i, values) {
      const out: Arg[][] = [];
      foreign.forEach((_, n) => {
        const v = asDump(values?.[n]);
        // an input missing on its node stays missing: the command sees an empty key, as Redis would
        if (v.payload) out.push(['RESTORE', temps[n], '0', v.payload, 'REPLACE']);
      });
      out.push(rewritten);
      if (temps.length) out.push(['DEL', ...temps]);
      return out;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// resuming and ordering

/**
 * Given which of `plan.slots` already hold the command's position (a re-delivery after a cut run):
 * 'done' (nothing left), 'decide' (nothing committed: read the inputs and decide), or the branch the
 * cut run had taken (see the header).
 */
export function resumption(plan: Emulation, committed: boolean[]): 'done' | 'decide' | 'apply' | 'noop' {
  if (committed.every(Boolean)) return 'done';
  if (!committed.some(Boolean)) return 'decide';
  return committed[0] ? 'apply' : 'noop';
}

/**
 * The slot transactions still to run for `branch`, skipping committed slots: apply in `slots` order
 * with the commands, no-op in reverse order with none (only the position moves).
 */
export function remainingSteps(plan: Emulation, branch: 'apply' | 'noop', committed: boolean[], values: ReadValue[] | null): SlotStep[] {
  const steps: SlotStep[] = [];
  if (branch === 'apply') {
    plan.slots.forEach((slot, i) => {
      if (!committed[i]) steps.push({ slot, commands: plan.commands(i, values) });
    });
  } else {
    for (let i = plan.slots.length - 1; i >= 0; i--) if (!committed[i]) steps.push({ slot: plan.slots[i], commands: [] });
  }
  return steps;
}
