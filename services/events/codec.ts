/**
 * Avro codec for change events: `ChangeEvent[]` ⇄ the Avro body of an `EventBatch`
 * (schemas/EventBatch.avsc and the named types it uses, one `.avsc` file per type).
 *
 * Pure: no Kafka, no registry. The transport adds the Confluent wire header (0x00 + int32 BE
 * schema id) around what `encodeBatch` returns.
 *
 * A batch is an Avro array written as one block: varint(count) + events + 0. `encodeEvent` gives
 * one event's bytes (its union branch index included) so that a batch can be assembled from
 * already-encoded events without encoding twice (`frameEncodedEvents`), and so that sizes are
 * exact (`batchBodySize`).
 *
 * This module encodes and decodes events and batches, from these parts (their public functions
 * are re-exported here, so that importers keep importing the codec):
 * - schema.ts: the schemas/ files, inlined into the registered EventBatch schema; its avsc types;
 * - avro-mapping.ts: model ⇄ Avro records (how each model field is written: see there);
 * - schema-layout.ts: the union branches and the hand-written writer and reader laid out from them;
 * - event-scratch.ts: events encoded back to back into one reusable buffer (`EventScratch`);
 * - avro-varint.ts: the Avro long (zigzag varint), sized and written.
 */
import avsc from 'avsc';
import { ReplistreamError } from '../common/errors.js';
import { eventFromAvro, type AnyRec } from './avro-mapping.js';
import { writeLong } from './avro-varint.js';
import { EventScratch, batchBodySize } from './event-scratch.js';
import type { ReadOptions } from './fast-reader.js';
import type { ChangeEvent } from './model.js';
import { avroTypeFor, eventTypes } from './schema.js';
import { fastReader } from './schema-layout.js';

export {
  NAMESPACE,
  ENVELOPE_NAME,
  schemaDir,
  loadNamedSchemas,
  inlineSchema,
  eventBatchSchema,
  eventBatchSchemaText,
  avroTypeFor,
  eventTypes,
} from './schema.js';
export { eventToAvro, eventFromAvro } from './avro-mapping.js';
export { EventScratch, batchBodySize } from './event-scratch.js';

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
 * number), without producing the bytes. Internal to services/events (split-event.ts).
 */
export function encodeEventWithin(e: ChangeEvent, limit: number): Buffer | number {
  try {
    const n = scratch.append(e, limit);
    return n >= 0 ? copyOut(scratch, 0, n) : -n;
  } finally {
    scratch.reset();
  }
}

/**
 * `encodeEvent(e).length`, without producing the bytes. Internal to services/events
 * (split-snapshot-key.ts, split-command.ts).
 */
export function encodedEventSize(e: ChangeEvent): number {
  try {
    return -scratch.append(e, -1);
  } finally {
    scratch.reset();
  }
}

/** An EventBatch body from events already encoded by `encodeEvent`, in order. */
export function frameEncodedEvents(encoded: Buffer[]): Buffer {
  let total = 0;
  for (const b of encoded) total += b.length;
  const out = Buffer.allocUnsafe(batchBodySize(encoded.length, total));
  let at = 0;
  if (encoded.length > 0) {
    at = writeLong(out, 0, encoded.length);
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
