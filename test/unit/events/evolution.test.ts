import { describe, expect, it } from 'vitest';
import {
  avroTypeFor,
  createResolver,
  decodeBatch,
  encodeBatch,
  eventBatchSchema,
  eventFromAvro,
  eventToAvro,
  inlineSchema,
  loadNamedSchemas,
} from '../../../services/events/codec.js';
import type { ChangeEvent } from '../../../services/events/model.js';
import { everyEvent } from './fixtures.js';

type Json = Record<string, unknown>;
const clone = <T>(x: T): T => JSON.parse(JSON.stringify(x)) as T;

/** A copy of the named schemas with `edit` applied to the record `name`'s field list. */
function variant(name: string, edit: (fields: Json[]) => Json[]): Json {
  const named = loadNamedSchemas();
  const rec = clone(named.get(`io.replistream.events.${name}`)!) as Json;
  rec.fields = edit(rec.fields as Json[]);
  named.set(`io.replistream.events.${name}`, rec as never);
  return inlineSchema(named);
}

const newerWriter = () =>
  variant('SnapshotKey', (f) => [
    ...f,
    { name: 'origin', type: ['null', 'string'], default: null },
    { name: 'checksum', type: ['null', 'long'], default: null },
  ]);

describe('schema evolution (BACKWARD: new optional fields with null defaults)', () => {
  it('an event written with a newer schema (extra optional fields) decodes with the current reader', () => {
    const writer = avroTypeFor(newerWriter());
    const events = everyEvent();
    // write with the newer schema, its extra fields set
    const avro = events.map((e) => {
      const w = eventToAvro(e) as Record<string, Record<string, unknown>>;
      const branch = Object.keys(w)[0];
      if (branch.endsWith('SnapshotKey')) w[branch] = { ...w[branch], origin: 'eu-west', checksum: 42 };
      return w;
    });
    const body = writer.toBuffer({ events: avro });
    // the current reader cannot read it directly, but can through a resolver
    expect(() => decodeBatch(body)).toThrow();
    const back = decodeBatch(body, createResolver(writer));
    expect(back).toStrictEqual(events);
  });

  it('an event written with the current schema decodes with a newer reader (defaults fill the new fields)', () => {
    const newer = avroTypeFor(newerWriter());
    const current = avroTypeFor(eventBatchSchema());
    const events = everyEvent();
    const body = encodeBatch(events);
    const rec = newer.fromBuffer(body, newer.createResolver(current)) as { events: Array<Record<string, Record<string, unknown>>> };
    const keys = rec.events.filter((w) => Object.keys(w)[0].endsWith('SnapshotKey'));
    expect(keys.length).toBeGreaterThan(0);
    for (const k of keys) {
      const r = Object.values(k)[0];
      expect(r.origin).toBeNull();
      expect(r.checksum).toBeNull();
    }
    expect(rec.events.map((w) => eventFromAvro(w))).toStrictEqual(events);
  });

  it('an older writer without a field the current schema added with a default is read with the default', () => {
    // Simulate "Piece.continued was added later": an old writer has no such field.
    const olderSchema = variant('Piece', (f) => f.filter((x) => x.name !== 'continued'));
    const older = avroTypeFor(olderSchema);
    const e: ChangeEvent = { kind: 'command', pos: { epoch: 1, offset: 2, seq: 3, replid: 'r' }, db: 0, commands: [], participants: [], piece: { index: 3, last: true } };
    const body = older.toBuffer({ events: [{ 'io.replistream.events.CommandEvent': { ...(Object.values(eventToAvro(e))[0] as object), piece: { index: 3, last: true } } }] });
    expect(decodeBatch(body, createResolver(olderSchema))).toStrictEqual([e]);
  });

  it('a required field added without a default is not backward compatible (resolver refuses)', () => {
    const bad = avroTypeFor(variant('Heartbeat', (f) => [...f, { name: 'zone', type: 'string' }]));
    const current = avroTypeFor(eventBatchSchema());
    expect(() => bad.createResolver(current)).toThrow();
  });
});
