/**
 * Pure translation of change events into destination commands: typed writes of a snapshot key,
 * source commands with their database arguments mapped, flushes that keep replistream's own keys,
 * and the key → slot extraction a cluster destination needs. No I/O here except `KeyTable.load`.
 */
import type { Redis } from 'ioredis';
import type { StreamId, TypedValue } from '../events/model.js';
import type { EncodedCommandEvent } from '../events/encoded-command.js';
import type { RestoreCommand } from './resp-codec.js';
import { upperCommandName } from '../events/command-names.js';
import { packedArgsOf } from '../events/packed-args.js';
import { ReplistreamError } from '../common/errors.js';
import { dumpPayloadValue } from '../replication/dump-value.js';
import { payloadRdbVersion } from '../replication/dump-payload.js';
import { globEscape, keySlot } from './connection.js';
import { type CrossSlotPlan, planCrossSlot, splitAcrossSlots } from './cross-slot.js';

export type Arg = string | Buffer;

/** Where an op comes from, to name it in errors and to skip it on request. */
export interface OpOrigin {
  eventIndex: number;
  /** Stable id of the op inside its event (its ordinal in the event's translation). */
  readonly id: string;
  /** Upper-case command name, for stats and messages. */
  name: string;
}

/**
 * An origin whose id (`<eventIndex>/<sub>`) is made when read: every op has an origin, and ids are
 * only read when a command fails, so making the string up front was two strings per event.
 */
export class EventOrigin implements OpOrigin {
  constructor(
    readonly eventIndex: number,
    private readonly sub: number | string,
    readonly name: string,
  ) {}

  get id(): string {
    return `${this.eventIndex}/${this.sub}`;
  }
}

export interface Op {
  args: Arg[];
  /** The op is an event's command sent as it came, already in RESP: write these bytes, not `args`. */
  encoded?: EncodedCommandEvent;
  /** The op is a snapshot key's RESTORE: encode it from its template, not from `args`. */
  restore?: RestoreCommand;
  /** Destination db the op must run in (standalone); null when any db will do. */
  db: number | null;
  /** Slot of the op's keys (cluster); null for keyless ops. */
  slot: number | null;
  /** The op SELECTs internally (a script): the builder must re-SELECT before the next op. */
  clobbersDb?: boolean;
  origin: OpOrigin | null;
}

export function commandName(args: Arg[]): string {
  return commandNameOf(args[0]);
}

/** Upper-case name of a command whose first argument is `a`. */
export function commandNameOf(a: Arg): string {
  return typeof a === 'string' ? a.toUpperCase() : upperCommandName(a);
}

export function argString(a: Arg | undefined): string {
  return a === undefined ? '' : typeof a === 'string' ? a : a.toString('latin1');
}

export function argsBytes(args: Arg[]): number {
  const packed = packedArgsOf(args); // counted from its storage, no view made of each argument
  if (packed) return packed.tail - packed.head + packed.count * 8;
  let n = 0;
  for (const a of args) n += typeof a === 'string' ? a.length : a.length;
  return n + args.length * 8;
}

// ---------------------------------------------------------------------------------------------
// Lua scripts

/** Removes every key of the current db except those matching ARGV (globs): DUMP, FLUSHDB, RESTORE. */
export const PRESERVING_FLUSH_LUA = `
local saved = {}
for i = 1, #ARGV do
  for _, k in ipairs(redis.call('KEYS', ARGV[i])) do
    local t = redis.call('PTTL', k)
    if t < 0 then t = 0 end
    saved[#saved + 1] = { k, t, redis.call('DUMP', k) }
  end
end
redis.call('FLUSHDB')
for _, e in ipairs(saved) do redis.call('RESTORE', e[1], e[2], e[3], 'REPLACE') end
return #saved
`;

/** SWAPDB ARGV[1] ARGV[2], keeping keys matching ARGV[3..] (globs) in the db they were in. */
export const PRESERVING_SWAPDB_LUA = `
local a, b = tonumber(ARGV[1]), tonumber(ARGV[2])
local saved = {}
for _, db in ipairs({ a, b }) do
  redis.call('SELECT', db)
  for i = 3, #ARGV do
    for _, k in ipairs(redis.call('KEYS', ARGV[i])) do
      local t = redis.call('PTTL', k)
      if t < 0 then t = 0 end
      saved[#saved + 1] = { db, k, t, redis.call('DUMP', k) }
      redis.call('DEL', k)
    end
  end
end
redis.call('SWAPDB', a, b)
for _, e in ipairs(saved) do
  redis.call('SELECT', e[1])
  redis.call('RESTORE', e[2], e[3], e[4], 'REPLACE')
end
return #saved
`;

const LUA_PRESERVED = `
local function preserved(k, first)
  for i = first, #ARGV do
    if string.sub(k, 1, #ARGV[i]) == ARGV[i] then return true end
  end
  return false
end
local function clear_slot(slot, first)
  local n = 0
  local cnt = redis.call('CLUSTER', 'COUNTKEYSINSLOT', slot)
  if cnt > 0 then
    for _, k in ipairs(redis.call('CLUSTER', 'GETKEYSINSLOT', slot, cnt)) do
      if not preserved(k, first) then redis.call('UNLINK', k); n = n + 1 end
    end
  end
  return n
end
`;

/**
 * Cluster: enter epoch ARGV[1] in slot ARGV[2]. KEYS[1] is the slot's epoch marker. When the
 * marker holds an earlier epoch, every key of the slot but replistream's own (prefixes ARGV[3..])
 * is removed; the marker is then set. A marker already at or past the epoch leaves all untouched.
 */
export const ENTER_EPOCH_SLOT_LUA = `${LUA_PRESERVED}
local e = tonumber(ARGV[1])
local m = redis.call('GET', KEYS[1])
if m and tonumber(m) >= e then return -1 end
local n = 0
if m then n = clear_slot(tonumber(ARGV[2]), 3) end
redis.call('SET', KEYS[1], ARGV[1])
return n
`;

/**
 * Cluster: FLUSHDB/FLUSHALL for one slot, exactly once per stream. KEYS[1] is the stream's
 * position key of the slot; ARGV[1] the flush's position (JSON). Skipped when the slot's position is
 * already at or past it; otherwise the slot's keys (but replistream's own, prefixes ARGV[3..]) are
 * removed and the position is recorded (when the slot had a position or keys).
 */
export const FLUSH_SLOT_LUA = `${LUA_PRESERVED}
local function cmp(a, b)
  for _, f in ipairs({ 'epoch', 'offset', 'seq', 'part' }) do
    local x, y = tonumber(a[f] or 0), tonumber(b[f] or 0)
    if x ~= y then if x < y then return -1 else return 1 end end
  end
  return 0
end
local p = redis.call('GET', KEYS[1])
if p and cmp(cjson.decode(p), cjson.decode(ARGV[1])) >= 0 then return -1 end
local n = clear_slot(tonumber(ARGV[2]), 3)
if p or n > 0 then redis.call('SET', KEYS[1], ARGV[1]) end
return n
`;

// ---------------------------------------------------------------------------------------------
// Typed writes of a snapshot key (write mode `commands`)

export interface TypedWriteFeatures {
  /** XSETID … ENTRIESADDED … MAXDELETEDID, XGROUP CREATE … ENTRIESREAD (Redis ≥ 7.0). */
  streamMeta: boolean;
  /** XGROUP CREATECONSUMER (Redis ≥ 6.2). */
  createConsumer: boolean;
  /** HPEXPIREAT (Redis ≥ 7.4). */
  hashFieldTtl: boolean;
}

const ELEMENTS_PER_COMMAND = 512;

export function streamIdString(id: StreamId): string {
  return `${id.ms}-${id.seq}`;
}

export function scoreString(score: number): string {
  if (score === Infinity) return '+inf';
  if (score === -Infinity) return '-inf';
  if (Object.is(score, -0)) return '-0';
  return String(score);
}

function chunked<T>(items: T[], per: number, emit: (slice: T[]) => void): void {
  for (let i = 0; i < items.length; i += per) emit(items.slice(i, i + per));
}

/**
 * A stream value carries its metadata (last id, counters, groups): true for a whole stream and for
 * the last part of a big one; the earlier parts carry entries only (length 0, last id 0-0).
 */
export function hasStreamMeta(st: { length: number; lastId: StreamId; groups: unknown[]; entriesAdded?: number }): boolean {
  return st.length > 0 || st.lastId.ms > 0n || st.lastId.seq > 0n || st.groups.length > 0 || (st.entriesAdded ?? 0) > 0;
}

/**
 * Commands writing `value` (the whole key, or one part of a big key) to `key`.
 * - `first`: the key starts here (DEL before writing); `append` parts (first = false) add to it.
 * - the TTL (absolute) is set with every part; stream metadata and consumer groups with the part
 *   that carries them (see hasStreamMeta).
 * Field TTLs on a destination without HPEXPIREAT come back as HPEXPIREAT anyway (the destination
 * rejects them, and the writer's on-command-error policy decides).
 */
export function typedWriteCommands(key: Buffer, value: TypedValue, expireAtMs: number | null, first: boolean, f: TypedWriteFeatures): Arg[][] {
  const out: Arg[][] = [];
  if (first) out.push(['DEL', key]);
  switch (value.type) {
    case 'string':
      out.push(first ? ['SET', key, value.value] : ['APPEND', key, value.value]);
      break;
    case 'list':
      chunked(value.items, ELEMENTS_PER_COMMAND, (s) => out.push(['RPUSH', key, ...s]));
      break;
    case 'set':
      chunked(value.members, ELEMENTS_PER_COMMAND, (s) => out.push(['SADD', key, ...s]));
      break;
    case 'zset':
      chunked(value.entries, ELEMENTS_PER_COMMAND, (s) => out.push(['ZADD', key, ...s.flatMap((e) => [scoreString(e.score), e.member])]));
      break;
    case 'hash': {
      chunked(value.entries, ELEMENTS_PER_COMMAND, (s) => out.push(['HSET', key, ...s.flatMap((e) => [e.field, e.value])]));
      const byTime = new Map<number, Buffer[]>();
      for (const e of value.entries) {
        if (e.expireAtMs === null || e.expireAtMs === undefined) continue;
        let a = byTime.get(e.expireAtMs);
        if (!a) byTime.set(e.expireAtMs, (a = []));
        a.push(e.field);
      }
      for (const [t, fields] of byTime) {
        chunked(fields, ELEMENTS_PER_COMMAND, (s) => out.push(['HPEXPIREAT', key, String(t), 'FIELDS', String(s.length), ...s]));
      }
      break;
    }
    case 'stream': {
      const st = value.stream;
      for (const e of st.entries) out.push(['XADD', key, streamIdString(e.id), ...e.fields]);
      const meta = hasStreamMeta(st);
      if (first || meta) {
        // make sure the key exists even when it holds no entry
        out.push(['XGROUP', 'CREATE', key, '__replistream_tmp__', '0', 'MKSTREAM']);
        out.push(['XGROUP', 'DESTROY', key, '__replistream_tmp__']);
      }
      if (meta) {
        const setid: Arg[] = ['XSETID', key, streamIdString(st.lastId)];
        if (f.streamMeta) {
          setid.push('ENTRIESADDED', String(st.entriesAdded ?? st.length));
          setid.push('MAXDELETEDID', streamIdString(st.maxDeletedId ?? { ms: 0n, seq: 0n }));
        }
        out.push(setid);
      }
      for (const g of st.groups) {
        out.push(['XGROUP', 'DESTROY', key, g.name]);
        const create: Arg[] = ['XGROUP', 'CREATE', key, g.name, streamIdString(g.lastId)];
        if (f.streamMeta && g.entriesRead !== undefined && g.entriesRead !== null) create.push('ENTRIESREAD', String(g.entriesRead));
        out.push(create);
        for (const c of g.consumers) {
          if (f.createConsumer) out.push(['XGROUP', 'CREATECONSUMER', key, g.name, c.name]);
        }
        // pending entries: owner from the entry, else from the consumer that lists it
        const owner = new Map<string, Buffer>();
        for (const c of g.consumers) for (const id of c.pending) owner.set(streamIdString(id), c.name);
        for (const p of g.pending) {
          const id = streamIdString(p.id);
          const consumer = p.consumer ?? owner.get(id);
          if (!consumer) continue;
          out.push(['XCLAIM', key, g.name, consumer, '0', id, 'TIME', String(p.deliveryTimeMs), 'RETRYCOUNT', String(p.deliveryCount), 'FORCE', 'JUSTID']);
        }
      }
      break;
    }
    case 'module':
      throw new ReplistreamError('DESTINATION', `key ${printableKey(key)} holds a module value (${value.moduleId}): it can only be written with RESTORE`, { setting: 'write-mode' });
  }
  if (expireAtMs !== null) out.push(['PEXPIREAT', key, String(expireAtMs)]);
  return out;
}

export function printableKey(key: Buffer | string, max = 80): string {
  const s = typeof key === 'string' ? key : key.toString('utf8');
  const shown = JSON.stringify(s.length > max ? `${s.slice(0, max)}…` : s);
  return shown;
}

// ---------------------------------------------------------------------------------------------
// RESTORE payloads

/** Redis release line → the RDB version it writes (for messages). */
export function rdbVersionName(v: number): string {
  const names: Record<number, string> = { 6: 'Redis 2.6–3.0', 7: 'Redis 3.2', 8: 'Redis 4.0', 9: 'Redis 5.0–6.2', 10: 'Redis 7.0', 11: 'Redis 7.2 / Valkey 7.2–8', 12: 'Redis 7.4' };
  return names[v] ? `${v} (${names[v]})` : String(v);
}

// ---------------------------------------------------------------------------------------------
// Source commands

export interface CommandContext {
  cluster: boolean;
  /** Source db → destination db; undefined when the db is not synchronized. */
  mapDb(db: number): number | undefined;
  /** Every destination db that receives data (FLUSHALL flushes these). */
  mappedTargets(): number[];
  refuseFlush: boolean;
  /** Key prefixes replistream owns (kept by flushes). */
  preservedPrefixes: string[];
  /** The db that holds position keys (standalone). */
  positionDb: number;
  keys: KeyTable | null;
  homeSlot: number;
  /** RESTORE commands' payloads against what the destination reads (absent: passed unchanged). */
  restore?: RestoreContext;
}

export interface RestoreContext {
  /** Newest RDB version the destination RESTOREs (from its own DUMP). */
  rdbVersion: number;
  /** A payload it cannot read is written with typed commands (restore-fallback, or write-mode commands); else an error. */
  fallback: boolean;
  features: TypedWriteFeatures;
}

/** A translated command event: ops, plus barriers for a cluster destination. */
export type TranslatedItem =
  | { t: 'op'; op: Op }
  | { t: 'flush'; origin: OpOrigin } // cluster FLUSHDB / FLUSHALL
  | { t: 'all-masters'; args: Arg[]; origin: OpOrigin } // cluster FUNCTION / SCRIPT
  | { t: 'cross-slot'; plan: CrossSlotPlan; args: Arg[]; origin: OpOrigin }; // cluster: keys in several slots, emulated (cross-slot.ts)

export interface TranslateResult {
  items: TranslatedItem[];
  /** Commands dropped because they act on a db that is not synchronized. */
  dropped: string[];
}

export function preservedGlobs(prefixes: string[]): string[] {
  return prefixes.map((p) => `${globEscape(p)}*`);
}

/** Ops that empty destination db `db` except replistream's keys. */
export function flushOps(db: number, ctx: Pick<CommandContext, 'preservedPrefixes'>, origin: OpOrigin | null): Op[] {
  return [{ args: ['EVAL', PRESERVING_FLUSH_LUA, '0', ...preservedGlobs(ctx.preservedPrefixes)], db, slot: null, origin }];
}

function isInt(s: string): boolean {
  return /^-?\d+$/.test(s);
}

/**
 * Translates the commands of one CommandEvent. `eventIndex` and the op ordinal form each op's
 * origin. Throws for FLUSHDB/FLUSHALL when refuseFlush (the caller names the position).
 */
/** Commands translated below otherwise than as themselves in the event's db. */
const TRANSLATED = new Set(['MULTI', 'EXEC', 'DISCARD', 'SELECT', 'FLUSHDB', 'FLUSHALL', 'SWAPDB', 'FUNCTION', 'SCRIPT', 'PUBLISH', 'RESTORE', 'MOVE', 'COPY']);
const NOTHING_DROPPED: string[] = Object.freeze([]) as unknown as string[];

/**
 * The op of an event that is one command written as it is to a standalone destination (most
 * events), or null when `translateCommands` must translate it: what that gives as its only item,
 * without the result, list and item objects around it.
 */
export function plainOp(commands: Buffer[][], startDb: number, eventIndex: number, ctx: CommandContext): Op | null {
  if (commands.length !== 1 || ctx.cluster || commands[0].length === 0) return null;
  const cmd = commands[0];
  const name = commandName(cmd);
  if (TRANSLATED.has(name)) return null;
  const db = ctx.mapDb(startDb);
  if (db === undefined) return null;
  return { args: cmd, db, slot: null, origin: new EventOrigin(eventIndex, 0, name) };
}

/**
 * `plainOp` for an event read already in RESP (encoded-command.ts): the op is the event's bytes.
 * One object is both the op and its origin: this is the path of nearly every event of a busy topic.
 */
export function encodedPlainOp(event: EncodedCommandEvent, eventIndex: number, ctx: CommandContext): Op | null {
  if (ctx.cluster) return null;
  const name = commandNameOf(event.name);
  if (TRANSLATED.has(name)) return null;
  const db = ctx.mapDb(event.db);
  if (db === undefined) return null;
  return new EncodedOp(event, db, eventIndex, name);
}

class EncodedOp implements Op, OpOrigin {
  readonly slot = null;
  constructor(
    readonly encoded: EncodedCommandEvent,
    readonly db: number,
    readonly eventIndex: number,
    readonly name: string,
  ) {}

  get origin(): OpOrigin {
    return this;
  }

  /** Decoded when read (messages, the slow paths): the writer sends `encoded`. */
  get args(): Arg[] {
    return this.encoded.commands[0];
  }

  get id(): string {
    return `${this.eventIndex}/0`;
  }
}

export function translateCommands(commands: Buffer[][], startDb: number, eventIndex: number, ctx: CommandContext): TranslateResult {
  // Most events are one command written as it is to a standalone destination: the same op as the
  // general path below gives it, without that path's closures and arrays (made for every event).
  const plain = plainOp(commands, startDb, eventIndex, ctx);
  if (plain !== null) return { items: [{ t: 'op', op: plain }], dropped: NOTHING_DROPPED };
  const items: TranslatedItem[] = [];
  const dropped: string[] = [];
  let cur: number | undefined = ctx.mapDb(startDb);
  let ordinal = 0;
  const originOf = (name: string): OpOrigin => new EventOrigin(eventIndex, ordinal++, name);

  const push = (args: Arg[], name: string, db: number | null, extra: Partial<Op> = {}) => {
    let slot: number | null = null;
    if (ctx.cluster) {
      const at = ctx.keys?.keyIndexes(args) ?? [];
      if (at.length) {
        slot = keySlot(args[at[0]]);
        if (at.some((i) => keySlot(args[i]) !== slot)) {
          // keys in several slots: one command per slot when it splits, else emulated (cross-slot.ts)
          const pieces = splitAcrossSlots(args, at);
          if (pieces) for (const p of pieces) items.push({ t: 'op', op: { args: p.args, db, slot: p.slot, origin: originOf(name), ...extra } });
          else items.push({ t: 'cross-slot', plan: planCrossSlot(args, at), args, origin: originOf(name) });
          return;
        }
      }
    }
    items.push({ t: 'op', op: { args, db, slot, origin: originOf(name), ...extra } });
  };

  for (const cmd of commands) {
    if (cmd.length === 0) continue;
    const name = commandName(cmd);
    switch (name) {
      case 'MULTI':
      case 'EXEC':
      case 'DISCARD':
        continue; // the whole unit is one transaction already
      case 'SELECT': {
        const n = Number(argString(cmd[1]));
        cur = ctx.mapDb(n);
        continue;
      }
      case 'FLUSHDB':
      case 'FLUSHALL': {
        if (ctx.refuseFlush) {
          throw new ReplistreamError('DESTINATION', `${name} refused`, { setting: 'refuse-flush' });
        }
        if (ctx.cluster) {
          if (name === 'FLUSHDB' && cur === undefined) {
            dropped.push(name);
            continue;
          }
          items.push({ t: 'flush', origin: originOf(name) });
          continue;
        }
        const targets = name === 'FLUSHALL' ? ctx.mappedTargets() : cur === undefined ? [] : [cur];
        if (targets.length === 0) dropped.push(name);
        const origin = originOf(name);
        for (const t of targets) items.push({ t: 'op', op: flushOps(t, ctx, origin)[0] });
        continue;
      }
      case 'SWAPDB': {
        const a = ctx.mapDb(Number(argString(cmd[1])));
        const b = ctx.mapDb(Number(argString(cmd[2])));
        if (a === undefined && b === undefined) {
          dropped.push(name);
          continue;
        }
        if (a === undefined || b === undefined) {
          throw new ReplistreamError(
            'DESTINATION',
            `SWAPDB ${argString(cmd[1])} ${argString(cmd[2])} swaps a synchronized db with one that is not: map both dbs`,
            { setting: 'db-map' },
          );
        }
        if (!ctx.cluster && (a === ctx.positionDb || b === ctx.positionDb)) {
          push(['EVAL', PRESERVING_SWAPDB_LUA, '0', String(a), String(b), ...preservedGlobs(ctx.preservedPrefixes)], name, null, { clobbersDb: true });
        } else {
          push(['SWAPDB', String(a), String(b)], name, null);
        }
        continue;
      }
      case 'FUNCTION':
      case 'SCRIPT': {
        if (ctx.cluster) {
          items.push({ t: 'all-masters', args: idempotentAllMasters(cmd), origin: originOf(`${name} ${argString(cmd[1]).toUpperCase()}`) });
        } else {
          push(cmd, name, null);
        }
        continue;
      }
      case 'PUBLISH':
        push(cmd, name, null, ctx.cluster ? { slot: ctx.homeSlot } : {});
        continue;
    }
    if (cur === undefined) {
      dropped.push(name);
      continue;
    }
    switch (name) {
      case 'RESTORE': {
        const typed = ctx.restore ? restoreAsTypedWrites(cmd, ctx.restore) : null;
        if (typed) for (const args of typed) push(args, name, cur);
        else push(cmd, name, cur);
        continue;
      }
      case 'MOVE': {
        const target = ctx.mapDb(Number(argString(cmd[2])));
        if (target === undefined) push(['DEL', cmd[1]], name, cur);
        else push([cmd[0], cmd[1], String(target)], name, cur);
        continue;
      }
      case 'COPY': {
        const args: Arg[] = [...cmd];
        let drop = false;
        for (let i = 3; i < args.length - 1; i++) {
          if (argString(args[i]).toUpperCase() === 'DB' && isInt(argString(args[i + 1]))) {
            const t = ctx.mapDb(Number(argString(args[i + 1])));
            if (t === undefined) drop = true;
            else args[i + 1] = String(t);
            i++;
          }
        }
        if (drop) dropped.push(name);
        else push(args, name, cur);
        continue;
      }
      default:
        push(cmd, name, cur);
    }
  }
  return { items, dropped };
}

/**
 * A source's `RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f]` whose payload the
 * destination cannot read (a newer RDB format: 7.0's into 6.2, Valkey 8's into 7.0) as typed
 * writes of the value inside it, when the settings allow; null when RESTORE can run as it is.
 * The source ran it successfully, so the key was absent or REPLACE was given: deleting the key
 * first is what RESTORE did. IDLETIME/FREQ (eviction hints) have no typed equivalent and are dropped.
 */
export function restoreAsTypedWrites(cmd: Buffer[], r: RestoreContext): Arg[][] | null {
  const payload = cmd[3];
  const version = payload ? payloadRdbVersion(payload) : -1;
  if (version < 0) return null; // malformed: let the destination answer it
  if (version <= r.rdbVersion) return null;
  const key = cmd[1];
  if (!r.fallback) {
    throw new ReplistreamError(
      'DESTINATION',
      `RESTORE of key ${printableKey(key)}: its payload has RDB version ${rdbVersionName(version)}, the destination reads RDB versions up to ${rdbVersionName(r.rdbVersion)}; ` +
        'enable restore-fallback to write such keys with typed commands (or set write-mode to commands)',
      { setting: 'restore-fallback', details: { key: printableKey(key), payloadRdbVersion: version, destinationRdbVersion: r.rdbVersion } },
    );
  }
  const value = dumpPayloadValue(payload);
  const ttl = Number(argString(cmd[2]));
  const absolute = cmd.slice(4).some((a) => argString(a).toUpperCase() === 'ABSTTL');
  const out = typedWriteCommands(key, value, absolute && ttl > 0 ? ttl : null, true, r.features);
  if (!absolute && ttl > 0) out.push(['PEXPIRE', key, String(ttl)]);
  return out;
}

/** FUNCTION/SCRIPT commands made safe to run again on every master of a cluster. */
function idempotentAllMasters(cmd: Buffer[]): Arg[] {
  const name = commandName(cmd);
  const sub = argString(cmd[1]).toUpperCase();
  if (name === 'FUNCTION' && sub === 'LOAD') {
    const hasReplace = cmd.slice(2, -1).some((a) => argString(a).toUpperCase() === 'REPLACE');
    return hasReplace ? cmd : [cmd[0], cmd[1], 'REPLACE', ...cmd.slice(2)];
  }
  if (name === 'FUNCTION' && sub === 'RESTORE') {
    const rest = cmd.slice(3).filter((a) => !['FLUSH', 'APPEND', 'REPLACE'].includes(argString(a).toUpperCase()));
    return [cmd[0], cmd[1], cmd[2], ...rest, 'REPLACE'];
  }
  return cmd;
}

/** Errors from running FUNCTION/SCRIPT again that mean "already done". */
export function isAlreadyDoneError(cmd: Arg[], message: string): boolean {
  const name = commandName(cmd);
  const sub = argString(cmd[1]).toUpperCase();
  return name === 'FUNCTION' && sub === 'DELETE' && /library not found/i.test(message);
}

// ---------------------------------------------------------------------------------------------
// Keys of a command (cluster routing)

interface KeySpec {
  first: number;
  last: number;
  step: number;
  movable: boolean;
}

/**
 * Key positions of every command, from the destination's own `COMMAND` reply (so module and
 * version-specific commands are covered), with the numkeys-style commands handled explicitly.
 */
export class KeyTable {
  private constructor(private readonly specs: Map<string, KeySpec>) {}

  static async load(client: Redis): Promise<KeyTable> {
    const reply = (await client.call('COMMAND')) as unknown[];
    const specs = new Map<string, KeySpec>();
    const add = (e: unknown[]) => {
      const name = String(e[0]).toLowerCase();
      const flags = (e[2] as unknown[]).map(String);
      specs.set(name, { first: Number(e[3]), last: Number(e[4]), step: Number(e[5]), movable: flags.includes('movablekeys') });
      const subs = e[9];
      if (Array.isArray(subs)) for (const s of subs) add(s as unknown[]);
    };
    for (const e of reply) add(e as unknown[]);
    return new KeyTable(specs);
  }

  static fromSpecs(specs: Record<string, [number, number, number, boolean?]>): KeyTable {
    return new KeyTable(new Map(Object.entries(specs).map(([k, [first, last, step, movable]]) => [k, { first, last, step, movable: !!movable }])));
  }

  keysOf(args: Arg[]): Arg[] {
    return this.keyIndexes(args).map((i) => args[i]);
  }

  /** Where the keys of `args` are (indexes into `args`, in order). */
  keyIndexes(args: Arg[]): number[] {
    const name = argString(args[0]).toLowerCase();
    const numkeysAt = NUMKEYS[name];
    if (numkeysAt !== undefined) {
      const n = Number(argString(args[numkeysAt]));
      const at: number[] = [];
      if (STORE_FIRST.has(name)) at.push(1);
      if (Number.isFinite(n)) for (let i = numkeysAt + 1; i < Math.min(args.length, numkeysAt + 1 + n); i++) at.push(i);
      return at;
    }
    if (name === 'sort' || name === 'sort_ro' || name === 'georadius' || name === 'georadiusbymember') {
      const at = [1];
      for (let i = 2; i < args.length - 1; i++) {
        const t = argString(args[i]).toUpperCase();
        if (t === 'STORE' || t === 'STOREDIST') at.push(i + 1);
      }
      return at;
    }
    let spec = this.specs.get(name);
    if (args.length > 1) spec = this.specs.get(`${name}|${argString(args[1]).toLowerCase()}`) ?? spec;
    if (!spec || spec.first <= 0) return [];
    const last = spec.last < 0 ? args.length + spec.last : spec.last;
    const at: number[] = [];
    for (let i = spec.first; i <= last && i < args.length; i += Math.max(spec.step, 1)) at.push(i);
    return at;
  }
}

/** Index of the numkeys argument of commands whose keys follow it. */
const NUMKEYS: Record<string, number> = {
  eval: 2,
  evalsha: 2,
  eval_ro: 2,
  evalsha_ro: 2,
  fcall: 2,
  fcall_ro: 2,
  zunionstore: 2,
  zinterstore: 2,
  zdiffstore: 2,
  zunion: 1,
  zinter: 1,
  zdiff: 1,
  sintercard: 1,
  zintercard: 1,
  lmpop: 1,
  zmpop: 1,
  blmpop: 2,
  bzmpop: 2,
};
const STORE_FIRST = new Set(['zunionstore', 'zinterstore', 'zdiffstore']);
