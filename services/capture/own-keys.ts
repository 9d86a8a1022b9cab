/**
 * replistream's own keys in a source, and what capture does with them (cascades A → B → C).
 *
 * When the source B is itself the destination of an applier, B holds the applier's bookkeeping:
 * stream positions, epoch markers and error markers, all under `replistream:` (see
 * services/destination/position.ts), and the heartbeat key a capture of B writes. None of it is
 * user data: forwarding it to C would overwrite the bookkeeping of C's own applier (the epoch
 * markers are named after the group alone) and make every applier transaction of B a unit over
 * several databases downstream (its positions live in db 0).
 *
 * - Snapshot: an own key is not sent.
 * - Stream: a command whose keys are all own keys is dropped (SELECTs go with it, and are written
 *   again only where the kept commands need them). A transaction that held such commands was
 *   written by an applier, which batches many source units into one MULTI/EXEC: what is left is
 *   cut into one unit per run of one database, so C's appliers see units of one db each and no
 *   cross-db barrier is made of the batching. A user's own transaction (no bookkeeping in it) is
 *   never cut.
 *
 * One exception: the origin keys (`replistream:origin:<source-id>`, services/applier/origin-lag.ts)
 * are forwarded like user data. Each holds the time of the cascade's first source's latest heartbeat
 * as it reached this server, one key per origin: carried downstream, it lets the last applier
 * report the lag from the origin, not only from its own hop.
 */
import { packedArgsOf, packedEnd, packedStart } from '../events/packed-args.js';
import { keyIndexes } from './command-keys.js';

/** Prefix of every key an applier writes in its destination. */
export const OWN_KEY_PREFIX = 'replistream:';
/** The heartbeat key's default name: an upstream capture of an older run may have left it. */
export const DEFAULT_HEARTBEAT_KEY = 'REPLISTREAM_TIMESTAMP_HEARTBEAT';
/** Prefix of the origin keys: replistream's, but forwarded (see above). */
export const ORIGIN_KEY_PREFIX = 'replistream:origin:';

const PREFIX = Buffer.from(OWN_KEY_PREFIX, 'latin1');
const ORIGIN = Buffer.from(ORIGIN_KEY_PREFIX, 'latin1');

/** True when `key` is an origin key. */
export function isOriginKey(key: Buffer): boolean {
  return isOriginKeyAt(key, 0, key.length);
}

/** True when bytes `[start, end)` of `buf` are an origin key (no view made of them). */
export function isOriginKeyAt(buf: Buffer, start: number, end: number): boolean {
  return end - start > ORIGIN.length && buf.compare(ORIGIN, 0, ORIGIN.length, start, start + ORIGIN.length) === 0;
}

/** A run of commands of one database: one unit downstream. */
export interface DbRun {
  db: number;
  commands: Buffer[][];
}

export class OwnKeys {
  private readonly heartbeatKeys: Buffer[];

  constructor(heartbeatKeys: Array<string | null>) {
    const names = new Set([DEFAULT_HEARTBEAT_KEY, ...heartbeatKeys.filter((k): k is string => !!k)]);
    this.heartbeatKeys = [...names].map((k) => Buffer.from(k));
  }

  isOwn(key: Buffer): boolean {
    if (key.length >= PREFIX.length && key[0] === PREFIX[0] && key.compare(PREFIX, 0, PREFIX.length, 0, PREFIX.length) === 0) return !isOriginKey(key);
    for (const h of this.heartbeatKeys) if (key.length === h.length && key.equals(h)) return true;
    return false;
  }

  /**
   * Cheap pre-check on the hot path: could any command of the unit touch an own key? (Any argument
   * that looks like one; false positives only cost the exact check.)
   */
  mayTouch(commands: Buffer[][]): boolean {
    for (const args of commands) {
      const packed = packedArgsOf(args);
      if (packed) {
        // a view only of an argument long enough to be an own key (packed-args.ts)
        for (let i = 1; i < packed.count; i++) {
          const from = packedStart(packed, i);
          const len = packedEnd(packed, i) - from;
          if ((len >= PREFIX.length || this.heartbeatKeys.some((h) => h.length === len)) && this.isOwn(packed.data.subarray(from, from + len))) return true;
        }
        continue;
      }
      for (let i = 1; i < args.length; i++) if (this.isOwn(args[i])) return true;
    }
    return false;
  }

  /** True when the command has keys and every one of them is an own key. */
  private onlyOwnKeys(args: Buffer[]): boolean {
    const idx = keyIndexes(args);
    if (idx === null || idx.length === 0) return false; // unknown layout or keyless: user data
    return idx.every((i) => args[i] !== undefined && this.isOwn(args[i]));
  }

  /**
   * The unit (starting in `db`) without the commands that only touch own keys. Returns null when
   * nothing of it was bookkeeping (forward it as it is), else the runs of one database each that
   * are left (possibly none).
   */
  strip(db: number, commands: Buffer[][]): DbRun[] | null {
    let cur = db;
    let stripped = false;
    const runs: DbRun[] = [];
    for (const args of commands) {
      if (args.length === 2 && args[0].length === 6 && args[0].toString('latin1').toUpperCase() === 'SELECT') {
        cur = Number(args[1].toString('latin1'));
        continue;
      }
      if (this.onlyOwnKeys(args)) {
        stripped = true;
        continue;
      }
      const last = runs[runs.length - 1];
      if (last && last.db === cur) last.commands.push(args);
      else runs.push({ db: cur, commands: [args] });
    }
    return stripped ? runs : null;
  }
}
