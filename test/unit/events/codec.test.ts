import { describe, expect, it } from 'vitest';
import { readdirSync } from 'node:fs';
import avsc from 'avsc';
import {
  decodeBatch,
  encodeBatch,
  encodeEvent,
  eventBatchSchema,
  eventBatchSchemaText,
  eventTypes,
  frameEncodedEvents,
  loadNamedSchemas,
  schemaDir,
} from '../../../services/events/codec.js';
import { ReplistreamError } from '../../../services/common/errors.js';
import type { ChangeEvent } from '../../../services/events/model.js';
import { everyEvent, key, pos, b, command } from './fixtures.js';

describe('event codec', () => {
  it('round-trips every event kind and typed-value shape exactly', () => {
    const events = everyEvent();
    const back = decodeBatch(encodeBatch(events));
    expect(back).toStrictEqual(events);
  });

  it('round-trips each event alone', () => {
    for (const e of everyEvent()) expect(decodeBatch(encodeBatch([e]))).toStrictEqual([e]);
  });

  it('keeps -0, NaN and infinities bit for bit', () => {
    const e = key({ type: 'zset', entries: [-0, Number.NaN, Infinity, -Infinity].map((score, i) => ({ member: b(String(i)), score })) });
    const [back] = decodeBatch(encodeBatch([e]));
    const scores = (back as typeof e).value!.type === 'zset' ? ((back as typeof e).value as { entries: { score: number }[] }).entries.map((x) => x.score) : [];
    expect(Object.is(scores[0], -0)).toBe(true);
    expect(Number.isNaN(scores[1])).toBe(true);
    expect(scores.slice(2)).toEqual([Infinity, -Infinity]);
  });

  it('keeps stream ids over 2^53 exactly (uint64 range)', () => {
    const ids = [0n, 1n, 2n ** 53n + 1n, 2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 1n];
    const e = key({
      type: 'stream',
      stream: { entries: ids.map((ms, i) => ({ id: { ms, seq: ids[ids.length - 1 - i] }, fields: [] })), length: ids.length, lastId: { ms: 2n ** 64n - 1n, seq: 0n }, groups: [] },
    });
    expect(decodeBatch(encodeBatch([e]))).toStrictEqual([e]);
  });

  it('decodes Buffers as Buffers and absent optional fields as absent', () => {
    const [back] = decodeBatch(encodeBatch([key({ type: 'stream', stream: { entries: [], length: 0, lastId: { ms: 1n, seq: 2n }, groups: [] } })]));
    const v = (back as ReturnType<typeof key>).value as unknown as { stream: Record<string, unknown> };
    expect(Buffer.isBuffer((back as ReturnType<typeof key>).key)).toBe(true);
    expect('firstId' in v.stream).toBe(false);
    expect('entriesAdded' in v.stream).toBe(false);
  });

  it('an empty batch round-trips', () => {
    expect(encodeBatch([])).toEqual(Buffer.from([0]));
    expect(decodeBatch(encodeBatch([]))).toEqual([]);
  });

  it('assembles batches from encoded events byte-identically to avsc', () => {
    const events = everyEvent();
    const { batch } = eventTypes();
    const viaAvsc = batch.toBuffer({ events: events.map((e) => eventTypes().event.fromBuffer(encodeEvent(e))) });
    expect(frameEncodedEvents(events.map(encodeEvent))).toEqual(viaAvsc);
    // a count needing a multi-byte varint
    const many: ChangeEvent[] = Array.from({ length: 300 }, (_, i) => ({ kind: 'heartbeat', pos: pos(i), db: 0, timeMs: i }));
    expect(decodeBatch(encodeBatch(many))).toStrictEqual(many);
  });

  it('refuses a long out of the safe range with an error naming the field', () => {
    const e = { kind: 'heartbeat', pos: pos(2 ** 60), db: 0, timeMs: 1 } as ChangeEvent;
    expect(() => encodeBatch([e])).toThrow(ReplistreamError);
    expect(() => encodeBatch([e])).toThrow(/pos\.offset/);
  });

  it('refuses invalid snapshot keys and commands (hand-written writer) naming the field, as avsc does', () => {
    const bad: Array<[ChangeEvent, RegExp]> = [
      [key({ type: 'string', value: Buffer.from('v') }, { pos: pos(2 ** 60) }), /pos\.offset/],
      [key({ type: 'string', value: Buffer.from('v') }, { db: 1.5 }), /db/],
      [key({ type: 'string', value: 'v' as unknown as Buffer }), /value/],
      [key({ type: 'list', items: [Buffer.from('a'), 'b' as unknown as Buffer] }), /items/],
      [key({ type: 'hash', entries: [{ field: Buffer.from('f'), value: Buffer.from('v'), expireAtMs: 0.5 }] }), /expireAtMs/],
      [key({ type: 'string', value: Buffer.from('v') }, { type: 'nope' as 'string' }), /type/],
      [{ kind: 'command', pos: pos(1), db: 0, commands: [[Buffer.from('SET'), 'k' as unknown as Buffer]], participants: [], piece: null }, /commands/],
      [{ kind: 'command', pos: pos(1), db: 0, commands: [[Buffer.from('SET')]], participants: [{ db: 0, partition: 2 ** 40 }], piece: null }, /participants/],
    ];
    for (const [e, field] of bad) {
      expect(() => encodeBatch([e])).toThrow(ReplistreamError);
      expect(() => encodeBatch([e])).toThrow(field);
    }
  });

  it('refuses a stream id outside uint64', () => {
    const e = key({ type: 'stream', stream: { entries: [], length: 0, lastId: { ms: -1n, seq: 0n }, groups: [] } });
    expect(() => encodeBatch([e])).toThrow(/unsigned 64-bit/);
    const f = key({ type: 'stream', stream: { entries: [], length: 0, lastId: { ms: 2n ** 64n, seq: 0n }, groups: [] } });
    expect(() => encodeBatch([f])).toThrow(/unsigned 64-bit/);
  });

  it('refuses an unknown kind', () => {
    expect(() => encodeBatch([{ kind: 'nope' } as unknown as ChangeEvent])).toThrow(/unknown kind/);
  });

  it('reports a truncated or corrupt body as a PROTOCOL error', () => {
    const body = encodeBatch(everyEvent());
    for (const bad of [body.subarray(0, body.length - 7), body.subarray(0, 3), Buffer.from([0x02, 0x7f])]) {
      try {
        decodeBatch(bad);
        expect.unreachable('decoded a corrupt body');
      } catch (err) {
        expect(err).toBeInstanceOf(ReplistreamError);
        expect((err as ReplistreamError).code).toBe('PROTOCOL');
        expect((err as Error).message).toMatch(/cannot decode an event batch/);
      }
    }
  });

  it('a command keeps empty and binary arguments', () => {
    const e = command([[b('SET'), Buffer.alloc(0), Buffer.from([0, 13, 10, 255])]]);
    expect(decodeBatch(encodeBatch([e]))).toStrictEqual([e]);
  });
});

describe('schemas/', () => {
  it('every .avsc file is one named type and all are used by the EventBatch envelope', () => {
    const files = readdirSync(schemaDir()).filter((f) => f.endsWith('.avsc'));
    const named = loadNamedSchemas();
    expect(named.size).toBe(files.length);
    const text = eventBatchSchemaText();
    for (const [full] of named) expect(text).toContain(`"name":"${full.split('.').pop()}"`);
  });

  it('the inlined envelope is self-contained and each name is defined once', () => {
    const schema = eventBatchSchema();
    const t = avsc.Type.forSchema(schema as avsc.Schema, { registry: {} });
    expect(t.name).toBe('io.replistream.events.EventBatch');
    const text = JSON.stringify(schema);
    expect(text.match(/"name":"StreamId"/g)).toHaveLength(1);
    expect(text.match(/"name":"SourcePosition"/g)).toHaveLength(1);
  });

  it('optional fields are unions with null first and a null default (evolution rule)', () => {
    const problems: string[] = [];
    for (const [name, schema] of loadNamedSchemas()) {
      for (const f of (schema.fields as Array<{ name: string; type: unknown; default?: unknown }> | undefined) ?? []) {
        if (Array.isArray(f.type) && f.type.includes('null') && f.type.length === 2) {
          if (f.type[0] !== 'null' || f.default !== null) problems.push(`${name}.${f.name}`);
        }
      }
    }
    expect(problems).toEqual([]);
  });
});
