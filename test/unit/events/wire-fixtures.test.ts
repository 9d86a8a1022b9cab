/**
 * Frozen bytes of the event wire format (the Avro body of an EventBatch record), one folder per
 * schema version under test/fixtures/events/: the schema as it was (`event-batch.avsc`) and the
 * bytes of `everyEvent()` encoded with it (`every-event.hex`, with the number of events).
 *
 * Why: Kafka keeps records for as long as the topic's retention, and an applier must read every
 * record any earlier capture wrote (replay from any offset). The codec's own tests encode and
 * decode with the code of the day, so a change that breaks old records (an incompatible schema
 * edit, a fast-path writer or reader drifting from Avro) passes them both ways; these bytes do not
 * change with the code.
 *
 * - Every version's bytes must decode, through Avro schema resolution from that version's schema
 *   to today's, into the events they were made of.
 * - The newest version's schema must be today's, and today's encoder must write its bytes exactly
 *   (and the fast reader read them). A deliberate schema change fails here: freeze its bytes as a
 *   new version with `REPLISTREAM_FREEZE_EVENTS=1 npx vitest run test/unit/events/wire-fixtures.test.ts`
 *   and keep the old folders.
 * `everyEvent()` may only grow at its end: a version holds its first N events.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createResolver, decodeBatch, encodeBatch, eventBatchSchema } from '../../../services/events/codec.js';
import { everyEvent, expectSame } from './fixtures.js';

const DIR = fileURLToPath(new URL('../../fixtures/events/', import.meta.url));

interface Frozen {
  version: number;
  schema: object;
  count: number;
  bytes: Buffer;
}

function readVersions(): Frozen[] {
  if (!existsSync(DIR)) return [];
  return readdirSync(DIR)
    .filter((d) => /^v\d+$/.test(d))
    .map((d) => {
      const hex = readFileSync(join(DIR, d, 'every-event.hex'), 'utf8');
      const count = Number(/^# events: (\d+)$/m.exec(hex)?.[1]);
      const bytes = Buffer.from(hex.replace(/^#.*$/gm, '').replace(/\s+/g, ''), 'hex');
      return { version: Number(d.slice(1)), schema: JSON.parse(readFileSync(join(DIR, d, 'event-batch.avsc'), 'utf8')) as object, count, bytes };
    })
    .sort((a, b) => a.version - b.version);
}

function freeze(version: number): void {
  const dir = join(DIR, `v${version}`);
  mkdirSync(dir, { recursive: true });
  const events = everyEvent();
  const hex = encodeBatch(events).toString('hex');
  const lines = hex.match(/.{1,64}/g) ?? [];
  writeFileSync(join(dir, 'event-batch.avsc'), `${JSON.stringify(eventBatchSchema(), null, 2)}\n`);
  writeFileSync(join(dir, 'every-event.hex'), `# EventBatch body of everyEvent() (test/unit/events/fixtures.ts), schema event-batch.avsc\n# events: ${events.length}\n${lines.join('\n')}\n`);
}

const sameSchema = (a: object, b: object) => JSON.stringify(a) === JSON.stringify(b);

if (process.env.REPLISTREAM_FREEZE_EVENTS === '1') {
  const versions = readVersions();
  const last = versions[versions.length - 1];
  if (!last || !sameSchema(last.schema, eventBatchSchema())) freeze((last?.version ?? 0) + 1);
}

describe('event wire format: frozen bytes of every schema version', () => {
  const versions = readVersions();

  it('has at least one frozen version', () => {
    expect(versions.length).toBeGreaterThan(0);
  });

  for (const v of versions) {
    it(`v${v.version}: its bytes decode with today's reader into the events they were made of`, () => {
      const expected = everyEvent().slice(0, v.count);
      expect(expected.length).toBe(v.count);
      expectSame(decodeBatch(v.bytes, createResolver(v.schema)), expected);
    });
  }

  it("the newest version is today's schema, written byte for byte by today's encoder and read by the fast reader", () => {
    const last = versions[versions.length - 1];
    expect(
      sameSchema(last.schema, eventBatchSchema()),
      `the event schema differs from test/fixtures/events/v${last.version}/event-batch.avsc: if the change is meant, freeze it as a new version (REPLISTREAM_FREEZE_EVENTS=1, see this file's header)`,
    ).toBe(true);
    const events = everyEvent().slice(0, last.count);
    expect(encodeBatch(events).equals(last.bytes)).toBe(true);
    expectSame(decodeBatch(last.bytes), events);
  });
});
