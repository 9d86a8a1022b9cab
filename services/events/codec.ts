/**
 * Avro codec for change events: `ChangeEvent[]` ⇄ the Avro body of an `EventBatch`
 * (schemas/EventBatch.avsc and the named types it uses, one `.avsc` file per type).
 *
 * Pure: no Kafka, no registry. The transport adds the Confluent wire header (0x00 + int32 BE
 * schema id) around what `encodeBatch` returns.
 *
 * Mapping to Avro (see schemas/README.md):
 * - Buffers are `bytes`; nullable model fields are `["null", T]` unions; absent optional model
 *   fields (`firstId?` …) are `null` in Avro and absent again after decoding.
 * - JS numbers are Avro `long`/`int`/`double`. A long must be a safe integer (|n| ≤ 2^53 − 1, what
 *   the model can hold); anything else is refused at encode time with an error naming the field.
 * - Stream id parts (`bigint`, unsigned 64-bit in Redis) are `fixed(8)` big-endian (`U64`), so the
 *   whole uint64 range round-trips.
 * - A batch is an Avro array written as one block: varint(count) + events + 0. `encodeEvent` gives
 *   one event's bytes (its union branch index included) so that a batch can be assembled from
 *   already-encoded events without encoding twice (`frameEncodedEvents`), and so that sizes are
 *   exact (`batchBodySize`).
 */
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join, resolve } from 'node:path';
import avsc from 'avsc';
import { ReplistreamError } from '../common/errors.js';
import { FastReader, type ReadOptions } from './fast-reader.js';
import { FastWriter } from './fast-writer.js';
import type {
  ChangeEvent,
  CommandEvent,
  EventPiece,
  Heartbeat,
  SlotHandOff,
  RedisType,
  SnapshotBegin,
  SnapshotEnd,
  SnapshotKey,
  SourcePosition,
  StreamId,
  StreamValue,
  TypedValue,
} from './model.js';

export const NAMESPACE = 'io.replistream.events';
export const ENVELOPE_NAME = `${NAMESPACE}.EventBatch`;

const BRANCH = {
  'snapshot-begin': `${NAMESPACE}.SnapshotBegin`,
  'snapshot-end': `${NAMESPACE}.SnapshotEnd`,
  'snapshot-key': `${NAMESPACE}.SnapshotKey`,
  command: `${NAMESPACE}.CommandEvent`,
  heartbeat: `${NAMESPACE}.Heartbeat`,
  'slot-handoff': `${NAMESPACE}.SlotHandOff`,
} as const;

const VALUE_BRANCH = {
  string: `${NAMESPACE}.StringValue`,
  list: `${NAMESPACE}.ListValue`,
  set: `${NAMESPACE}.SetValue`,
  zset: `${NAMESPACE}.ZSetValue`,
  hash: `${NAMESPACE}.HashValue`,
  stream: `${NAMESPACE}.StreamValue`,
  module: `${NAMESPACE}.ModuleValue`,
} as const;

// ---------------------------------------------------------------------------------------------
// Schemas

/** The `schemas/` directory: `REPLISTREAM_SCHEMA_DIR`, else found upwards from this module. */
export function schemaDir(): string {
  const env = process.env.REPLISTREAM_SCHEMA_DIR;
  if (env) return resolve(env);
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'schemas');
    if (existsSync(join(candidate, 'EventBatch.avsc'))) return candidate;
    dir = dirname(dir);
  }
  throw new ReplistreamError('INTERNAL', 'cannot find the schemas/ directory (EventBatch.avsc); set REPLISTREAM_SCHEMA_DIR');
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Every named schema in `dir`, by full name. */
export function loadNamedSchemas(dir = schemaDir()): Map<string, Record<string, Json>> {
  const out = new Map<string, Record<string, Json>>();
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.avsc')).sort()) {
    let json: Record<string, Json>;
    try {
      json = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Record<string, Json>;
    } catch (err) {
      throw new ReplistreamError('INTERNAL', `schema file ${file} is not valid JSON`, { cause: err });
    }
    const name = json.name as string;
    const ns = (json.namespace as string | undefined) ?? NAMESPACE;
    out.set(name.includes('.') ? name : `${ns}.${name}`, json);
  }
  return out;
}

/**
 * One self-contained schema for `rootName` (default: the EventBatch envelope): every named type
 * is defined inline at its first use (Avro's document order) and referenced by full name after.
 * Docs and defaults are kept. This is the text registered in the schema registry.
 */
export function inlineSchema(named: Map<string, Record<string, Json>>, rootName = ENVELOPE_NAME): Record<string, Json> {
  const defined = new Set<string>();
  const fullName = (ref: string): string | undefined => {
    if (named.has(ref)) return ref;
    const q = `${NAMESPACE}.${ref}`;
    return named.has(q) ? q : undefined;
  };
  const walk = (node: Json): Json => {
    if (typeof node === 'string') {
      const fq = fullName(node);
      if (!fq) return node; // primitive
      if (defined.has(fq)) return fq;
      return walk(named.get(fq)!);
    }
    if (Array.isArray(node)) return node.map(walk);
    if (node && typeof node === 'object') {
      const out: Record<string, Json> = {};
      const isNamed = (node.type === 'record' || node.type === 'enum' || node.type === 'fixed') && typeof node.name === 'string';
      if (isNamed) {
        const name = node.name as string;
        const fq = name.includes('.') ? name : `${(node.namespace as string | undefined) ?? NAMESPACE}.${name}`;
        defined.add(fq);
      }
      for (const [k, v] of Object.entries(node)) {
        if (k === 'type' || k === 'items' || k === 'values') out[k] = walk(v);
        else if (k === 'fields' && Array.isArray(v)) out[k] = v.map((f) => walkField(f as Record<string, Json>));
        else out[k] = v;
      }
      return out;
    }
    return node;
  };
  const walkField = (f: Record<string, Json>): Json => {
    const out: Record<string, Json> = {};
    for (const [k, v] of Object.entries(f)) out[k] = k === 'type' ? walk(v) : v;
    return out;
  };
  const root = fullName(rootName);
  if (!root) throw new ReplistreamError('INTERNAL', `schema ${rootName} not found in schemas/`);
  return walk(root) as Record<string, Json>;
}

let cachedSchema: Record<string, Json> | undefined;

/** The self-contained EventBatch schema this build writes (cached). */
export function eventBatchSchema(): Record<string, Json> {
  cachedSchema ??= inlineSchema(loadNamedSchemas());
  return cachedSchema;
}

/** The EventBatch schema as registered: compact JSON text. */
export function eventBatchSchemaText(): string {
  return JSON.stringify(eventBatchSchema());
}

/** Build an avsc Type the way the codec does (unions wrapped only where ambiguous). */
export function avroTypeFor(schema: object): avsc.Type {
  return avsc.Type.forSchema(schema as avsc.Schema, { wrapUnions: 'auto' });
}

let cachedTypes: { batch: avsc.Type; event: avsc.Type } | undefined;

/** The avsc Types for the EventBatch record and for one event (the array's item union). */
export function eventTypes(): { batch: avsc.Type; event: avsc.Type } {
  if (!cachedTypes) {
    const batch = avroTypeFor(eventBatchSchema());
    const field = (batch as unknown as { field(name: string): { type: { itemsType: avsc.Type } } }).field('events');
    cachedTypes = { batch, event: field.type.itemsType };
  }
  return cachedTypes;
}

// ---------------------------------------------------------------------------------------------
// Model → Avro

type AvroObj = Record<string, unknown>;

function u64(v: bigint, what: string): Buffer {
  if (typeof v !== 'bigint' || v < 0n || v > 0xffff_ffff_ffff_ffffn) {
    throw new ReplistreamError('INTERNAL', `cannot encode ${what}: ${String(v)} is not an unsigned 64-bit bigint`);
  }
  const b = Buffer.allocUnsafe(8);
  b.writeBigUInt64BE(v);
  return b;
}

const sid = (id: StreamId, what: string): AvroObj => ({ ms: u64(id.ms, `${what}.ms`), seq: u64(id.seq, `${what}.seq`) });
const optSid = (id: StreamId | undefined, what: string): AvroObj | null => (id === undefined ? null : sid(id, what));
const opt = <T>(v: T | undefined | null): T | null => (v === undefined ? null : v);

function posToAvro(p: SourcePosition): AvroObj {
  return { epoch: p.epoch, offset: p.offset, seq: p.seq, replid: p.replid };
}

function pieceToAvro(p: EventPiece | null): AvroObj | null {
  return p === null ? null : { index: p.index, last: p.last, continued: p.continued === true };
}

function streamToAvro(s: StreamValue): AvroObj {
  return {
    entries: s.entries.map((e, i) => ({ id: sid(e.id, `stream.entries[${i}].id`), fields: e.fields })),
    length: s.length,
    lastId: sid(s.lastId, 'stream.lastId'),
    firstId: optSid(s.firstId, 'stream.firstId'),
    maxDeletedId: optSid(s.maxDeletedId, 'stream.maxDeletedId'),
    entriesAdded: opt(s.entriesAdded),
    groups: s.groups.map((g) => ({
      name: g.name,
      lastId: sid(g.lastId, 'group.lastId'),
      entriesRead: opt(g.entriesRead),
      pending: g.pending.map((p) => ({
        id: sid(p.id, 'pending.id'),
        deliveryTimeMs: p.deliveryTimeMs,
        deliveryCount: p.deliveryCount,
        consumer: opt(p.consumer),
      })),
      consumers: g.consumers.map((c) => ({
        name: c.name,
        seenTimeMs: c.seenTimeMs,
        activeTimeMs: opt(c.activeTimeMs),
        pending: c.pending.map((id) => sid(id, 'consumer.pending')),
      })),
    })),
  };
}

function valueToAvro(v: TypedValue | null): AvroObj | null {
  if (v === null) return null;
  let body: AvroObj;
  switch (v.type) {
    case 'string':
      body = { value: v.value };
      break;
    case 'list':
      body = { items: v.items };
      break;
    case 'set':
      body = { members: v.members };
      break;
    case 'zset':
      body = { entries: v.entries };
      break;
    case 'hash':
      body = { entries: v.entries };
      break;
    case 'stream':
      body = streamToAvro(v.stream);
      break;
    case 'module':
      body = { moduleId: v.moduleId };
      break;
    default:
      throw new ReplistreamError('INTERNAL', `cannot encode typed value of unknown type ${JSON.stringify((v as { type: unknown }).type)}`);
  }
  return { [VALUE_BRANCH[v.type]]: body };
}

/** The Avro (wrapped-union) form of one event, as the event union type expects it. */
export function eventToAvro(e: ChangeEvent): AvroObj {
  switch (e.kind) {
    case 'snapshot-begin':
      return { [BRANCH[e.kind]]: { pos: posToAvro(e.pos), db: e.db, rdbVersion: e.rdbVersion, sourceVersion: e.sourceVersion } };
    case 'snapshot-end':
      return { [BRANCH[e.kind]]: { pos: posToAvro(e.pos), db: e.db, keyCount: e.keyCount } };
    case 'snapshot-key':
      return {
        [BRANCH[e.kind]]: {
          pos: posToAvro(e.pos),
          db: e.db,
          key: e.key,
          type: e.type,
          expireAtMs: e.expireAtMs,
          payload: e.payload,
          value: valueToAvro(e.value),
          piece: pieceToAvro(e.piece),
          append: e.append === undefined ? null : e.append,
        },
      };
    case 'command':
      return { [BRANCH[e.kind]]: { pos: posToAvro(e.pos), db: e.db, commands: e.commands, participants: e.participants, piece: pieceToAvro(e.piece) } };
    case 'heartbeat':
      return { [BRANCH[e.kind]]: { pos: posToAvro(e.pos), db: e.db, timeMs: e.timeMs } };
    case 'slot-handoff':
      return { [BRANCH[e.kind]]: { pos: posToAvro(e.pos), db: e.db, after: e.after.map((a) => ({ partition: a.partition, pos: posToAvro(a.pos) })) } };
    default:
      throw new ReplistreamError('INTERNAL', `cannot encode event of unknown kind ${JSON.stringify((e as { kind: unknown }).kind)}`);
  }
}

function encodeFailure(e: ChangeEvent, avro: unknown, cause: unknown): ReplistreamError {
  if (cause instanceof ReplistreamError) return cause;
  const paths: string[] = [];
  try {
    eventTypes().event.isValid(avro, { errorHook: (path: string[]) => paths.push(path.join('.')) });
  } catch {
    /* keep the original error */
  }
  const where = paths.length ? ` (invalid field${paths.length > 1 ? 's' : ''}: ${paths.slice(0, 5).join(', ')})` : '';
  return new ReplistreamError('INTERNAL', `cannot encode ${String(e?.kind)} event${where}: ${(cause as Error)?.message ?? cause}`, {
    cause,
    details: e?.pos ? { pos: e.pos } : undefined,
  });
}

/**
 * The failure of encoding `e` by the fast path (`EventScratch.append`), reported as `encodeEvent`
 * always did: through `eventToAvro` (its own errors first), naming the invalid fields.
 */
function encodeError(e: ChangeEvent, cause: unknown): ReplistreamError {
  let avro: AvroObj;
  try {
    avro = eventToAvro(e);
  } catch (err) {
    return encodeFailure(e, undefined, err);
  }
  return encodeFailure(e, avro, cause);
}

type Kind = ChangeEvent['kind'];
let cachedBranches: Record<Kind, { tag: number; type: avsc.Type }> | undefined;

/** Per event kind: its branch of the event union (found by name) and that branch's index as written (zigzag). */
function branches(): Record<Kind, { tag: number; type: avsc.Type }> {
  if (!cachedBranches) {
    const types = (eventTypes().event as unknown as { types: avsc.Type[] }).types;
    const out = {} as Record<Kind, { tag: number; type: avsc.Type }>;
    for (const [kind, name] of Object.entries(BRANCH) as Array<[Kind, string]>) {
      const index = types.findIndex((t) => t.name === name);
      if (index < 0 || index >= 64) throw new ReplistreamError('INTERNAL', `EventBatch: no usable union branch ${name}`);
      out[kind] = { tag: index * 2, type: types[index] }; // a long under 64: one byte, zigzag
    }
    cachedBranches = out;
  }
  return cachedBranches;
}

/** SnapshotKey's value branches and RedisType symbols, in schema order (for the hand-written codecs). */
function snapshotKeyLayout(): { valueTypes: avsc.Type[]; typeSymbols: string[] } {
  const key = branches()['snapshot-key'].type as unknown as { field(name: string): { type: avsc.Type } };
  return {
    valueTypes: (key.field('value').type as unknown as { types: avsc.Type[] }).types,
    typeSymbols: (key.field('type').type as unknown as { symbols: string[] }).symbols,
  };
}

let cachedFastWriter: FastWriter | undefined;

/** The hand-written writer of snapshot keys and commands (fast-writer.ts), laid out from the avsc types. */
function fastWriter(): FastWriter {
  if (!cachedFastWriter) {
    const b = branches();
    const { valueTypes, typeSymbols: symbols } = snapshotKeyLayout();
    const valueTag = (kind: keyof typeof VALUE_BRANCH): number => {
      const index = valueTypes.findIndex((t) => t.name === VALUE_BRANCH[kind]);
      if (index < 0 || index >= 64) throw new ReplistreamError('INTERNAL', `SnapshotKey.value: no usable union branch ${VALUE_BRANCH[kind]}`);
      return index * 2;
    };
    const typeIndex: Record<string, number> = Object.create(null) as Record<string, number>;
    symbols.forEach((sym, i) => (typeIndex[sym] = i * 2));
    cachedFastWriter = new FastWriter({
      snapshotKeyTag: b['snapshot-key'].tag,
      commandTag: b.command.tag,
      typeIndex,
      valueTag: { string: valueTag('string'), list: valueTag('list'), set: valueTag('set'), zset: valueTag('zset'), hash: valueTag('hash') },
    });
  }
  return cachedFastWriter;
}

let cachedFastReader: FastReader | undefined;

/** The hand-written reader of snapshot keys, commands and heartbeats (fast-reader.ts), laid out from the avsc types. */
function fastReader(): FastReader {
  if (!cachedFastReader) {
    const b = branches();
    const { valueTypes, typeSymbols } = snapshotKeyLayout();
    const kinds = Object.entries(VALUE_BRANCH) as Array<[string, string]>;
    const valueKinds = valueTypes.map((t) => {
      const kind = kinds.find(([, name]) => name === t.name)?.[0];
      return kind === 'string' || kind === 'list' || kind === 'set' || kind === 'zset' || kind === 'hash' ? kind : null;
    });
    cachedFastReader = new FastReader({
      snapshotKey: b['snapshot-key'].tag / 2,
      command: b.command.tag / 2,
      heartbeat: b.heartbeat.tag / 2,
      typeSymbols,
      valueKinds,
    });
  }
  return cachedFastReader;
}

/**
 * What `eventToAvro(e)` wraps in its union branch, built with fewer objects: avsc's record writers read only the schema's fields, so a model object whose
 * fields are exactly the record's (a position, a heartbeat, a typed value's body …) is passed as it
 * is instead of copied. Same values, hence the same bytes.
 */
function branchBody(e: ChangeEvent): unknown {
  switch (e.kind) {
    case 'snapshot-key': {
      const v = e.value;
      return {
        pos: e.pos,
        db: e.db,
        key: e.key,
        type: e.type,
        expireAtMs: e.expireAtMs,
        payload: e.payload,
        // a typed value's model form is its Avro record body (fields value / items / members /
        // entries / moduleId), except a stream's (stream ids are U64 bytes)
        value: v === null || v.type === 'stream' || !(v.type in VALUE_BRANCH) ? valueToAvro(v) : { [VALUE_BRANCH[v.type]]: v },
        piece: pieceToAvro(e.piece),
        append: e.append === undefined ? null : e.append,
      };
    }
    case 'command':
      return e.piece === null ? e : { pos: e.pos, db: e.db, commands: e.commands, participants: e.participants, piece: pieceToAvro(e.piece) };
    case 'heartbeat':
    case 'snapshot-begin':
    case 'snapshot-end':
    case 'slot-handoff':
      // fields pos, db and timeMs / rdbVersion, sourceVersion / keyCount / after: the record's own
      return e;
    default:
      return eventToAvro(e); // throws: unknown kind
  }
}

// ---------------------------------------------------------------------------------------------
// Encoding into a reusable scratch buffer
//
// avsc's `toBuffer` writes into its own 1 KB buffer, then allocates a zero-filled Buffer of the
// exact size and copies into it (and encodes twice when the value is over 1 KB). Encoding many
// events that way costs more in allocation and copies than in Avro. `EventScratch` instead encodes
// with `Type.encode(val, buf, pos)` straight into one growing buffer, events back to back; callers
// copy out once (`encodeEvent`: one event; `encodeBatch` and split.ts's `packEncoded`: a whole
// EventBatch body). Same avsc writers, so the bytes are the same.

const MIN_SCRATCH_BYTES = 64 * 1024;
/** A scratch buffer grown past this (a huge event or batch) is dropped after use rather than kept. */
const KEEP_SCRATCH_BYTES = 4 * 1024 * 1024;

/**
 * One growing buffer that events are encoded into, back to back (EventBatch array items: union
 * branch index included). Bytes [0, pos) belong to the caller; bytes after pos are garbage.
 *
 * `buf` is replaced (its [0, pos) kept) whenever it grows, and its contents are overwritten by the
 * next use: copy out whatever must outlive the current operation, never keep a subarray of it.
 * Internal to services/events (split.ts packs records with one). Not reentrant.
 */
export class EventScratch {
  buf: Buffer;
  pos = 0;

  constructor(size = MIN_SCRATCH_BYTES) {
    this.buf = Buffer.allocUnsafe(size);
  }

  /**
   * Encode `e` at `pos`. When its encoding is at most `limit` bytes, `pos` moves past it and its
   * length is returned; otherwise `pos` stays and `-length` is returned (the buffer does not grow
   * for an event over the limit: its size is measured by a write that goes past the end).
   */
  append(e: ChangeEvent, limit = Number.POSITIVE_INFINITY): number {
    const fast = fastWriter();
    const size = fast.size(e);
    if (size >= 0) {
      if (size > limit) return -size;
      this.reserve(this.pos + size);
      const end = fast.write(e, this.buf, this.pos);
      if (end - this.pos !== size) throw new ReplistreamError('INTERNAL', `fast writer wrote ${end - this.pos} bytes after measuring ${size}`);
      this.pos = end;
      return size;
    }
    let body: unknown;
    let branch: avsc.Type;
    let tag: number;
    try {
      body = branchBody(e);
      ({ tag, type: branch } = branches()[e.kind]);
    } catch (err) {
      throw encodeFailure(e, undefined, err);
    }
    // the union branch index, then the branch record: what the union type itself writes
    const start = this.pos;
    try {
      this.buf[start] = tag; // dropped when start is past the end; then encode returns < 0
      let end = branch.encode(body, this.buf, start + 1);
      if (end < 0) {
        // too small: avsc returns -(missing bytes) after a complete pass that wrote nothing past the end
        const need = this.buf.length - end;
        if (need - start > limit) return start - need;
        this.reserve(need);
        this.buf[start] = tag;
        end = branch.encode(body, this.buf, start + 1);
        if (end < 0) throw new Error(`avsc wrote past ${this.buf.length} bytes after measuring ${need}`);
      }
      if (end - start > limit) return start - end;
      this.pos = end;
      return end - start;
    } catch (err) {
      throw encodeError(e, err);
    }
  }

  /** Room for `need` bytes from 0, keeping [0, pos). */
  reserve(need: number): void {
    if (need <= this.buf.length) return;
    const grown = Buffer.allocUnsafe(Math.max(need, Math.min(this.buf.length * 2, need + 64 * 1024 * 1024)));
    this.buf.copy(grown, 0, 0, this.pos);
    this.buf = grown;
  }

  /** A fresh EventBatch body holding the `count` events encoded at [start, end). */
  frame(start: number, end: number, count: number): Buffer {
    const out = Buffer.allocUnsafe(batchBodySize(count, end - start));
    let at = 0;
    if (count > 0) {
      at = writeVarint(count, out, 0);
      this.buf.copy(out, at, start, end);
      at += end - start;
    }
    out[at++] = 0;
    return out;
  }

  /** Empty again; an oversized buffer (over `keep` bytes) is let go. */
  reset(keep = KEEP_SCRATCH_BYTES): void {
    this.pos = 0;
    if (this.buf.length > keep) this.buf = Buffer.allocUnsafe(MIN_SCRATCH_BYTES);
  }
}

/** The codec's own scratch (encodeEvent, encodeBatch, encodeEventWithin): used and reset within one call. */
const scratch = new EventScratch();

function copyOut(s: EventScratch, start: number, end: number): Buffer {
  const out = Buffer.allocUnsafe(end - start);
  s.buf.copy(out, 0, start, end);
  return out;
}

/** One event's Avro bytes, as an item of the EventBatch array (union branch index included). */
export function encodeEvent(e: ChangeEvent): Buffer {
  try {
    const n = scratch.append(e);
    return copyOut(scratch, 0, n);
  } finally {
    scratch.reset();
  }
}

/**
 * `encodeEvent(e)` when its encoding is at most `limit` bytes; else the encoding's length (a
 * number), without producing the bytes. Internal to services/events (split.ts).
 */
export function encodeEventWithin(e: ChangeEvent, limit: number): Buffer | number {
  try {
    const n = scratch.append(e, limit);
    return n >= 0 ? copyOut(scratch, 0, n) : -n;
  } finally {
    scratch.reset();
  }
}

/** `encodeEvent(e).length`, without producing the bytes. Internal to services/events (split.ts). */
export function encodedEventSize(e: ChangeEvent): number {
  try {
    return -scratch.append(e, -1);
  } finally {
    scratch.reset();
  }
}

/** Bytes of an Avro varint (zigzag long) for a non-negative count. */
function varintLength(n: number): number {
  let z = n * 2; // zigzag of a non-negative number
  let len = 1;
  while (z >= 0x80) {
    z = Math.floor(z / 128);
    len++;
  }
  return len;
}

function writeVarint(n: number, out: Buffer, at: number): number {
  let z = n * 2;
  while (z >= 0x80) {
    out[at++] = (z & 0x7f) | 0x80;
    z = Math.floor(z / 128);
  }
  out[at++] = z;
  return at;
}

/** Exact size of an EventBatch body holding `count` events whose encodings total `eventBytes`. */
export function batchBodySize(count: number, eventBytes: number): number {
  return count === 0 ? 1 : varintLength(count) + eventBytes + 1;
}

/** An EventBatch body from events already encoded by `encodeEvent`, in order. */
export function frameEncodedEvents(encoded: Buffer[]): Buffer {
  let total = 0;
  for (const b of encoded) total += b.length;
  const out = Buffer.allocUnsafe(batchBodySize(encoded.length, total));
  let at = 0;
  if (encoded.length > 0) {
    at = writeVarint(encoded.length, out, 0);
    for (const b of encoded) {
      b.copy(out, at);
      at += b.length;
    }
  }
  out[at++] = 0;
  return out;
}

/** The Avro body of an EventBatch holding `events` in order (no wire header). */
export function encodeBatch(events: ChangeEvent[]): Buffer {
  try {
    for (const e of events) scratch.append(e);
    return scratch.frame(0, scratch.pos, events.length);
  } finally {
    scratch.reset();
  }
}

// ---------------------------------------------------------------------------------------------
// Avro → Model

type AnyRec = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const fromU64 = (b: Buffer): bigint => b.readBigUInt64BE(0);
const fromSid = (r: AnyRec): StreamId => ({ ms: fromU64(r.ms), seq: fromU64(r.seq) });

function posFromAvro(r: AnyRec): SourcePosition {
  return { epoch: r.epoch, offset: r.offset, seq: r.seq, replid: r.replid };
}

function pieceFromAvro(r: AnyRec | null): EventPiece | null {
  if (r === null || r === undefined) return null;
  const p: EventPiece = { index: r.index, last: r.last };
  if (r.continued) p.continued = true;
  return p;
}

function streamFromAvro(r: AnyRec): StreamValue {
  const s: StreamValue = {
    entries: r.entries.map((e: AnyRec) => ({ id: fromSid(e.id), fields: e.fields })),
    length: r.length,
    lastId: fromSid(r.lastId),
    groups: r.groups.map((g: AnyRec) => {
      const group: StreamValue['groups'][number] = {
        name: g.name,
        lastId: fromSid(g.lastId),
        pending: g.pending.map((p: AnyRec) => {
          const pe: StreamValue['groups'][number]['pending'][number] = {
            id: fromSid(p.id),
            deliveryTimeMs: p.deliveryTimeMs,
            deliveryCount: p.deliveryCount,
          };
          if (p.consumer !== null) pe.consumer = p.consumer;
          return pe;
        }),
        consumers: g.consumers.map((c: AnyRec) => {
          const co: StreamValue['groups'][number]['consumers'][number] = {
            name: c.name,
            seenTimeMs: c.seenTimeMs,
            pending: c.pending.map(fromSid),
          };
          if (c.activeTimeMs !== null) co.activeTimeMs = c.activeTimeMs;
          return co;
        }),
      };
      if (g.entriesRead !== null) group.entriesRead = g.entriesRead;
      return group;
    }),
  };
  if (r.firstId !== null) s.firstId = fromSid(r.firstId);
  if (r.maxDeletedId !== null) s.maxDeletedId = fromSid(r.maxDeletedId);
  if (r.entriesAdded !== null) s.entriesAdded = r.entriesAdded;
  return s;
}

function valueFromAvro(wrapped: AnyRec | null): TypedValue | null {
  if (wrapped === null || wrapped === undefined) return null;
  const branch = Object.keys(wrapped)[0];
  const r = wrapped[branch] as AnyRec;
  switch (branch) {
    case VALUE_BRANCH.string:
      return { type: 'string', value: r.value };
    case VALUE_BRANCH.list:
      return { type: 'list', items: r.items };
    case VALUE_BRANCH.set:
      return { type: 'set', members: r.members };
    case VALUE_BRANCH.zset:
      return { type: 'zset', entries: r.entries.map((z: AnyRec) => ({ member: z.member, score: z.score })) };
    case VALUE_BRANCH.hash:
      return {
        type: 'hash',
        entries: r.entries.map((h: AnyRec) => ({ field: h.field, value: h.value, expireAtMs: h.expireAtMs })),
      };
    case VALUE_BRANCH.stream:
      return { type: 'stream', stream: streamFromAvro(r) };
    case VALUE_BRANCH.module:
      return { type: 'module', moduleId: r.moduleId };
    default:
      throw new ReplistreamError('PROTOCOL', `unknown typed value branch ${branch} in an event batch`);
  }
}

/** The model form of one decoded event (the wrapped-union item of an EventBatch). */
export function eventFromAvro(wrapped: AnyRec): ChangeEvent {
  const branch = Object.keys(wrapped)[0];
  const r = wrapped[branch] as AnyRec;
  switch (branch) {
    case BRANCH['snapshot-begin']:
      return { kind: 'snapshot-begin', pos: posFromAvro(r.pos), db: r.db, rdbVersion: r.rdbVersion, sourceVersion: r.sourceVersion } satisfies SnapshotBegin;
    case BRANCH['snapshot-end']:
      return { kind: 'snapshot-end', pos: posFromAvro(r.pos), db: r.db, keyCount: r.keyCount } satisfies SnapshotEnd;
    case BRANCH['snapshot-key']: {
      const k: SnapshotKey = {
        kind: 'snapshot-key',
        pos: posFromAvro(r.pos),
        db: r.db,
        key: r.key,
        type: r.type as RedisType,
        expireAtMs: r.expireAtMs,
        payload: r.payload,
        value: valueFromAvro(r.value),
        piece: pieceFromAvro(r.piece),
      };
      if (r.append !== null && r.append !== undefined) k.append = r.append;
      return k;
    }
    case BRANCH.command:
      return {
        kind: 'command',
        pos: posFromAvro(r.pos),
        db: r.db,
        commands: r.commands,
        participants: r.participants.map((p: { db: number; partition: number }) => ({ db: p.db, partition: p.partition })),
        piece: pieceFromAvro(r.piece),
      } satisfies CommandEvent;
    case BRANCH.heartbeat:
      return { kind: 'heartbeat', pos: posFromAvro(r.pos), db: r.db, timeMs: r.timeMs } satisfies Heartbeat;
    case BRANCH['slot-handoff']:
      return {
        kind: 'slot-handoff',
        pos: posFromAvro(r.pos),
        db: r.db,
        after: r.after.map((a: { partition: number; pos: unknown }) => ({ partition: a.partition, pos: posFromAvro(a.pos as never) })),
      } satisfies SlotHandOff;
    default:
      throw new ReplistreamError('PROTOCOL', `unknown event branch ${branch} in an event batch`);
  }
}

/**
 * A resolver for `decodeBatch` to read bodies written with another version of the EventBatch
 * schema (`writer`: its JSON, or an avsc Type). Throws when the versions are incompatible.
 */
export function createResolver(writer: object | avsc.Type): avsc.Resolver {
  const writerType = avsc.Type.isType(writer) ? (writer as avsc.Type) : avroTypeFor(writer);
  return eventTypes().batch.createResolver(writerType);
}

/**
 * Decode an EventBatch Avro body (no wire header). With `resolver` (from `createResolver`), a
 * body written with another version of the schema is read through Avro schema resolution.
 * `options` may leave parts out (fast-reader.ts `ReadOptions`); batches read by avsc keep them.
 */
export function decodeBatch(buf: Buffer, resolver?: avsc.Resolver, options?: ReadOptions): ChangeEvent[] {
  if (!resolver) {
    const fast = fastReader().read(buf, options);
    if (fast) return fast;
  }
  let rec: AnyRec;
  try {
    rec = eventTypes().batch.fromBuffer(buf, resolver) as AnyRec;
  } catch (err) {
    throw new ReplistreamError('PROTOCOL', `cannot decode an event batch (${buf.length} bytes): ${(err as Error).message}`, { cause: err });
  }
  return (rec.events as AnyRec[]).map(eventFromAvro);
}
