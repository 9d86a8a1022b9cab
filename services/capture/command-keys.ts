/**
 * Which arguments of a propagated write command are keys. Capture needs this to route a command
 * to the partition of its keys (G2) and to detect commands whose keys live in several partitions
 * (G3: they become cross-partition barriers).
 *
 * A static table of Redis's key specs for write commands (first key, last key, step, as in
 * `COMMAND INFO`), plus the commands whose keys are found by reading a count argument. A command
 * missing from the table returns `null`: the caller must then treat it as touching every
 * partition, which is always correct, only slower.
 */
import { lowerCommandName } from '../events/command-names.js';

type Spec =
  | { first: number; last: number; step: number } // last < 0 counts from the end
  | { numkeysAt: number; before?: number; firstAfter?: number } // keys follow a count argument
  | { keyless: true }
  | { custom: (args: Buffer[]) => number[] };

const fixed = (first: number, last = first, step = 1): Spec => ({ first, last, step });
const KEYLESS: Spec = { keyless: true };

const SPECS: Record<string, Spec> = Object.create(null) as Record<string, Spec>;
function specs(names: string, spec: Spec) {
  for (const n of names.split(/\s+/).filter(Boolean)) SPECS[n] = spec;
}

// one key at argument 1
specs(
  `set setnx setex psetex append incr decr incrby decrby incrbyfloat getset getdel getex setrange setbit
   del unlink expire pexpire expireat pexpireat persist
   lpush rpush lpushx rpushx lpop rpop linsert lset lrem ltrim
   sadd srem spop
   zadd zincrby zrem zremrangebyscore zremrangebyrank zremrangebylex zpopmin zpopmax
   hset hsetnx hmset hdel hincrby hincrbyfloat hexpire hpexpire hexpireat hpexpireat hpersist hgetdel hgetex hsetex
   pfadd pfdebug geoadd xadd xdel xtrim xgroup xsetid xack xclaim xautoclaim restore restore-asking
   bitfield sort_ro touch`,
  fixed(1),
);
specs('del unlink touch exists', fixed(1, -1)); // variadic
specs('mset msetnx', fixed(1, -1, 2));
specs('rename renamenx smove rpoplpush lmove copy sdiffstore sinterstore sunionstore zrangestore geosearchstore', fixed(1, 2));
specs('sdiffstore sinterstore sunionstore', fixed(1, -1));
specs('bitop', fixed(2, -1));
specs('pfmerge', fixed(1, -1));
specs('blpop brpop', fixed(1, -2));
specs('brpoplpush blmove', fixed(1, 2));
specs('move', fixed(1)); // key plus a db: a cross-database move, handled by the caller
specs('zunionstore zinterstore zdiffstore', { numkeysAt: 2, before: 1 });
specs('lmpop zmpop sintercard zintercard zunion zinter zdiff', { numkeysAt: 1 });
specs('blmpop bzmpop', { numkeysAt: 2 });
specs('eval evalsha eval_ro evalsha_ro fcall fcall_ro', { numkeysAt: 2 });
specs(
  `select ping publish spublish flushdb flushall swapdb multi exec discard function script replconf
`,
  KEYLESS,
);
SPECS['xgroup'] = { custom: (a) => (a.length > 2 ? [2] : []) }; // XGROUP <sub> key …
SPECS['sort'] = {
  custom: (a) => {
    const keys = [1];
    for (let i = 2; i < a.length - 1; i++) if (a[i].toString().toLowerCase() === 'store') keys.push(i + 1);
    return keys;
  },
};
SPECS['georadius'] = SPECS['georadiusbymember'] = {
  custom: (a) => {
    const keys = [1];
    for (let i = 2; i < a.length - 1; i++) {
      const w = a[i].toString().toLowerCase();
      if (w === 'store' || w === 'storedist') keys.push(i + 1);
    }
    return keys;
  },
};
SPECS['object'] = SPECS['memory'] = { custom: (a) => (a.length > 2 ? [2] : []) };

/** Names of commands whose effect spans databases: the caller routes them to every db involved. */
export const CROSS_DB = new Set(['flushall', 'swapdb', 'move', 'copy']);

let singleKey: Set<string> | undefined;

/**
 * True when `name` (lower case) has exactly one key, its first argument, and stays in its
 * database: most writes (SET, HSET, LPUSH, ZADD, EXPIRE …). Routing takes a shortcut for them.
 */
export function isSingleKeyCommand(name: string): boolean {
  if (!singleKey) {
    singleKey = new Set();
    for (const [n, spec] of Object.entries(SPECS)) {
      if ('first' in spec && spec.first === 1 && spec.last === 1 && !CROSS_DB.has(n)) singleKey.add(n);
    }
  }
  return singleKey.has(name);
}

/** Indexes of the key arguments of `args` (args[0] is the command name), or null when unknown. */
export function keyIndexes(args: Buffer[]): number[] | null {
  if (args.length === 0) return [];
  const name = lowerCommandName(args[0]);
  const spec = SPECS[name];
  if (!spec) return null;
  if ('keyless' in spec) return [];
  if ('custom' in spec) return spec.custom(args).filter((i) => i < args.length);
  if ('numkeysAt' in spec) {
    const n = Number(args[spec.numkeysAt]?.toString());
    if (!Number.isInteger(n) || n < 0) return null;
    const out: number[] = [];
    if (spec.before) out.push(spec.before);
    for (let i = 0; i < n; i++) out.push(spec.numkeysAt + 1 + i);
    return out.filter((i) => i < args.length);
  }
  const last = spec.last < 0 ? args.length + spec.last : spec.last;
  const out: number[] = [];
  for (let i = spec.first; i <= last && i < args.length; i += spec.step) out.push(i);
  return out;
}

export function commandKeys(args: Buffer[]): Buffer[] | null {
  const idx = keyIndexes(args);
  return idx === null ? null : idx.map((i) => args[i]);
}
