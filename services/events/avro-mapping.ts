/**
 * The Avro form of change events: `eventToAvro` / `eventFromAvro` between the model (model.ts) and
 * the records avsc writes and reads for the event union (wrapped unions). The codec writes most
 * events with the hand-written writer and reader instead (fast-writer.ts, fast-reader.ts), which
 * produce the same bytes and model objects; this is the mapping they must agree with.
 *
 * Mapping to Avro (see schemas/README.md):
 * - Buffers are `bytes`; nullable model fields are `["null", T]` unions; absent optional model
 *   fields (`firstId?` …) are `null` in Avro and absent again after decoding.
 * - JS numbers are Avro `long`/`int`/`double`. A long must be a safe integer (|n| ≤ 2^53 − 1, what
 *   the model can hold); anything else is refused at encode time with an error naming the field.
 * - Stream id parts (`bigint`, unsigned 64-bit in Redis) are `fixed(8)` big-endian (`U64`), so the
 *   whole uint64 range round-trips.
 */
import { ReplistreamError } from '../common/errors.js';
import { EVENT_BRANCH, VALUE_BRANCH } from './schema.js';
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

// ---------------------------------------------------------------------------------------------
// Model → Avro

export type AvroObj = Record<string, unknown>;

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
      return { [EVENT_BRANCH[e.kind]]: { pos: posToAvro(e.pos), db: e.db, rdbVersion: e.rdbVersion, sourceVersion: e.sourceVersion } };
    case 'snapshot-end':
      return { [EVENT_BRANCH[e.kind]]: { pos: posToAvro(e.pos), db: e.db, keyCount: e.keyCount } };
    case 'snapshot-key':
      return {
        [EVENT_BRANCH[e.kind]]: {
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
      return { [EVENT_BRANCH[e.kind]]: { pos: posToAvro(e.pos), db: e.db, commands: e.commands, participants: e.participants, piece: pieceToAvro(e.piece) } };
    case 'heartbeat':
      return { [EVENT_BRANCH[e.kind]]: { pos: posToAvro(e.pos), db: e.db, timeMs: e.timeMs } };
    case 'slot-handoff':
      return { [EVENT_BRANCH[e.kind]]: { pos: posToAvro(e.pos), db: e.db, after: e.after.map((a) => ({ partition: a.partition, pos: posToAvro(a.pos) })) } };
    default:
      throw new ReplistreamError('INTERNAL', `cannot encode event of unknown kind ${JSON.stringify((e as { kind: unknown }).kind)}`);
  }
}

/**
 * What `eventToAvro(e)` wraps in its union branch, built with fewer objects: avsc's record writers read only the schema's fields, so a model object whose
 * fields are exactly the record's (a position, a heartbeat, a typed value's body …) is passed as it
 * is instead of copied. Same values, hence the same bytes.
 */
export function branchBody(e: ChangeEvent): unknown {
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
// Avro → Model

export type AnyRec = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

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
    case EVENT_BRANCH['snapshot-begin']:
      return { kind: 'snapshot-begin', pos: posFromAvro(r.pos), db: r.db, rdbVersion: r.rdbVersion, sourceVersion: r.sourceVersion } satisfies SnapshotBegin;
    case EVENT_BRANCH['snapshot-end']:
      return { kind: 'snapshot-end', pos: posFromAvro(r.pos), db: r.db, keyCount: r.keyCount } satisfies SnapshotEnd;
    case EVENT_BRANCH['snapshot-key']: {
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
    case EVENT_BRANCH.command:
      return {
        kind: 'command',
        pos: posFromAvro(r.pos),
        db: r.db,
        commands: r.commands,
        participants: r.participants.map((p: { db: number; partition: number }) => ({ db: p.db, partition: p.partition })),
        piece: pieceFromAvro(r.piece),
      } satisfies CommandEvent;
    case EVENT_BRANCH.heartbeat:
      return { kind: 'heartbeat', pos: posFromAvro(r.pos), db: r.db, timeMs: r.timeMs } satisfies Heartbeat;
    case EVENT_BRANCH['slot-handoff']:
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
