/**
 * The Kafka transport against the local stack (Kafka 4 KRaft + Apicurio registry): registration,
 * wire format, produce/consume round trip, big keys split under the record limit, start modes,
 * positions topic. Every test uses its own topic prefix and group names.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isDeepStrictEqual } from 'node:util';
import { randomBytes } from 'node:crypto';
import csr from '@kafkajs/confluent-schema-registry';
import type { Admin, Kafka } from 'kafkajs';
import { createKafka } from '../../../services/transport/kafka.js';
import { EventRegistry, fromWire, subjectFor, toWire } from '../../../services/transport/registry.js';
import { ensurePositionsTopic, ensureTopics, positionsTopicName, topicName } from '../../../services/transport/topics.js';
import { EventProducer, readLatestPositions, type SendResult } from '../../../services/transport/producer.js';
import { readCompactedTopic, snapshotIndexKey, splitPositions } from '../../../services/transport/positions.js';
import { EventConsumer, fetchGroupLag, parseStartFrom, type DecodedBatch, type StartFrom } from '../../../services/transport/consumer.js';
import { PieceAssembler, RecordPacker, type SealedRecord } from '../../../services/events/split.js';
import { avroTypeFor, encodeBatch, eventToAvro, inlineSchema, loadNamedSchemas } from '../../../services/events/codec.js';
import type { ChangeEvent } from '../../../services/events/model.js';
import { ReplistreamError } from '../../../services/common/errors.js';
import { createLogger } from '../../../services/common/log.js';
import { stack, uniqueName } from '../../helpers/stack-env.js';
import { b, bytes, command, everyEvent, key, pos } from '../../unit/events/fixtures.js';

const logger = createLogger('error', 'transport-test');
let kafka: Kafka;
let admin: Admin;
let registry: EventRegistry;

beforeAll(async () => {
  kafka = createKafka({ brokers: stack().kafka, clientId: 'transport-test', logger, logLevel: 'error' });
  admin = kafka.admin();
  await admin.connect();
  registry = new EventRegistry({ url: stack().registry, logger });
});

afterAll(async () => {
  await admin?.disconnect();
});

interface Setup {
  prefix: string;
  topic: string;
  positions: string;
  producer: EventProducer;
}

const cleanups: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

async function setup(partitions = 1, maxRecordBytes?: number): Promise<Setup> {
  const prefix = uniqueName('rt');
  const topic = topicName(prefix, 'src', 0);
  const positions = positionsTopicName(prefix, 'src');
  await ensureTopics(admin, [topic], { partitions, retentionMs: 3_600_000 });
  await ensurePositionsTopic(admin, positions);
  const producer = new EventProducer({ kafka, registry, positionsTopic: positions, logger, maxRecordBytes });
  await producer.connect();
  cleanups.push(async () => {
    await producer.disconnect();
    await admin.deleteTopics({ topics: [topic, positions] });
  });
  return { prefix, topic, positions, producer };
}

/** Consume with a new group until `until` says enough (or timeout); returns the batches seen. */
async function consume(
  s: Setup,
  from: StartFrom,
  until: (batches: DecodedBatch[]) => boolean,
  opts: { groupId?: string; commit?: boolean; timeoutMs?: number } = {},
): Promise<{ batches: DecodedBatch[]; consumer: EventConsumer }> {
  const consumer = new EventConsumer({ kafka, registry, groupId: opts.groupId ?? uniqueName('g'), topics: [s.topic], from, positionsTopic: s.positions, logger });
  const batches: DecodedBatch[] = [];
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => resolve(), opts.timeoutMs ?? 30_000);
    consumer.done.catch(reject);
    consumer
      .start(async (b) => {
        batches.push(b);
        if (opts.commit) await consumer.commit([{ topic: b.topic, partition: b.partition, offset: (BigInt(b.lastOffset) + 1n).toString() }]);
        if (until(batches)) {
          clearTimeout(timer);
          resolve();
        }
      })
      .catch(reject);
  });
  await consumer.stop();
  return { batches, consumer };
}

const eventsOf = (batches: DecodedBatch[]) => batches.flatMap((b) => b.records.flatMap((r) => r.events));
const hb = (i: number): ChangeEvent => ({ kind: 'heartbeat', pos: pos(i), db: 0, timeMs: 1_700_000_000_000 + i });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('transport against the local stack', () => {
  it('registers the schema, produces in the Confluent wire format, consumes and decodes every event equal', async () => {
    const s = await setup(2);
    const events = everyEvent();
    const r0 = await s.producer.send(s.topic, 0, events);
    const r1 = await s.producer.send(s.topic, 1, events.slice(0, 3));
    expect(r0.records).toBe(1);
    expect(r0.firstOffset).toBe('0');
    expect(r1.records).toBe(1);

    const id = await registry.registerForTopic(s.topic);
    // the subject exists, holds our schema and is BACKWARD
    const base = stack().registry;
    const versions = (await (await fetch(`${base}/subjects/${subjectFor(s.topic)}/versions`)).json()) as number[];
    expect(versions.length).toBe(1);
    const config = (await (await fetch(`${base}/config/${subjectFor(s.topic)}`)).json()) as { compatibilityLevel: string };
    expect(config.compatibilityLevel).toBe('BACKWARD');
    // the registry may rewrite the text (Apicurio does); the canonical form is ours
    expect(avroTypeFor(JSON.parse(await registry.fetchSchema(id))).equals(avroTypeFor(JSON.parse(registry.schema)))).toBe(true);

    const { batches } = await consume(s, { mode: 'earliest' }, (b) => eventsOf(b).length >= events.length + 3);
    const p0 = batches.filter((b) => b.partition === 0);
    const p1 = batches.filter((b) => b.partition === 1);
    expect(eventsOf(p0)).toStrictEqual(events);
    expect(eventsOf(p1)).toStrictEqual(events.slice(0, 3));

    // raw record: 0x00 + int32 id + body, readable by the stock Confluent client library too
    const raw = await readRaw(s.topic, 0, 1);
    expect(raw[0][0]).toBe(0);
    expect(fromWire(raw[0]).schemaId).toBe(id);
    const stock = new (csr as unknown as { SchemaRegistry: typeof import('@kafkajs/confluent-schema-registry').SchemaRegistry }).SchemaRegistry({ host: base });
    const decoded = (await stock.decode(raw[0])) as { events: unknown[] };
    expect(decoded.events).toHaveLength(events.length);
  });

  it('reads records written with a newer compatible schema version through the registry', async () => {
    const s = await setup(1);
    await registry.registerForTopic(s.topic);
    const { named, hbSchema, schema: newer } = newerHeartbeatSchema();
    const res = await postSchema(s.topic, newer);
    expect(res.status).toBe(200);
    const newerId = ((await res.json()) as { id: number }).id;

    // an incompatible version (required field without default) is refused: the subject is BACKWARD
    const bad = JSON.parse(JSON.stringify(hbSchema));
    bad.fields.push({ name: 'required', type: 'string' });
    named.set('io.replistream.events.Heartbeat', bad);
    expect((await postSchema(s.topic, inlineSchema(named))).status).toBe(409);

    const e = hb(1);
    const p = kafka.producer();
    await p.connect();
    await p.send({ topic: s.topic, messages: [{ partition: 0, value: newerHeartbeatValue(newer, newerId, e) }] });
    await p.disconnect();
    await s.producer.send(s.topic, 0, [hb(2)]);

    const { batches } = await consume(s, { mode: 'earliest' }, (b) => eventsOf(b).length >= 2);
    expect(eventsOf(batches)).toStrictEqual([e, hb(2)]);
  });

  it('prime: the schemas of the topics are looked up ahead, so decoding their records asks the registry nothing', async () => {
    const own = uniqueName('prime-own');
    const newer = uniqueName('prime-newer');
    const ownId = await registry.registerForTopic(own);
    // a newer compatible version under the second topic's subject (as in the test above)
    const newerSchema = newerHeartbeatSchema().schema;
    const res = await postSchema(newer, newerSchema);
    expect(res.status).toBe(200);
    const newerId = ((await res.json()) as { id: number }).id;
    const e = hb(7);
    const newerValue = newerHeartbeatValue(newerSchema, newerId, e);

    const reader = new EventRegistry({ url: stack().registry });
    // a topic with no subject yet is no error: its first record looks its id up then
    await reader.prime([own, newer, uniqueName('prime-missing')]);
    const realFetch = globalThis.fetch;
    let asked = 0;
    globalThis.fetch = ((...a: Parameters<typeof fetch>) => {
      asked++;
      return realFetch(...a);
    }) as typeof fetch;
    try {
      expect(await reader.decode(toWire(ownId, encodeBatch([e])))).toStrictEqual([e]);
      expect(await reader.decode(newerValue)).toStrictEqual([e]);
    } finally {
      globalThis.fetch = realFetch;
    }
    expect(asked).toBe(0);
    // an unreachable registry: prime resolves all the same (best effort)
    await new EventRegistry({ url: 'http://127.0.0.1:1/apis/ccompat/v7', retries: 0 }).prime([own]);
  });

  it('a 5 MB snapshot key travels as records under 1 MB and reassembles', async () => {
    const s = await setup(1);
    const big = key({ type: 'string', value: bytes(5 * 1024 * 1024, 1) }, { payload: bytes(5 * 1024 * 1024 + 17, 2), expireAtMs: 1893456000000 });
    const list = key({ type: 'list', items: Array.from({ length: 20_000 }, (_, i) => bytes(250, i)) }, { key: Buffer.from('biglist') });
    const events: ChangeEvent[] = [hb(0), big, list, hb(1)];
    const res = await s.producer.send(s.topic, 0, events);
    expect(res.records).toBeGreaterThanOrEqual(12 + 5);
    const { batches } = await consume(s, { mode: 'earliest' }, (b) => eventsOf(b).some((e) => e.kind === 'heartbeat' && e.pos.offset === 1), {
      timeoutMs: 60_000,
    });
    const records = batches.flatMap((b) => b.records);
    expect(records.length).toBe(res.records);
    for (const r of records) expect(r.bytes).toBeLessThanOrEqual(900_000);
    expect(Math.max(...records.map((r) => r.bytes))).toBeGreaterThan(800_000);
    const asm = new PieceAssembler();
    const whole = eventsOf(batches)
      .map((e) => asm.push(e))
      .filter((e) => e !== null);
    expect(whole).toHaveLength(4);
    expect(isDeepStrictEqual(whole, events)).toBe(true);
  });

  it('start modes: earliest, offset, time, latest, committed, latest-snapshot', async () => {
    const s = await setup(1);
    // three sends at distinct times; one record each
    const t: number[] = [];
    const offs: string[] = [];
    for (let i = 0; i < 3; i++) {
      if (i) await sleep(50);
      t.push(Date.now());
      const r = await s.producer.send(s.topic, 0, [hb(10 * i), hb(10 * i + 1)]);
      offs.push(r.firstOffset!);
    }
    expect(offs).toEqual(['0', '1', '2']);
    const firstOffset = async (from: StartFrom, groupId?: string) => {
      const { batches } = await consume(s, from, (b) => b.length > 0, { timeoutMs: 8_000, groupId });
      return batches[0]?.records[0]?.offset ?? null;
    };
    expect(await firstOffset(parseStartFrom('earliest'))).toBe('0');
    expect(await firstOffset(parseStartFrom('offset:0@2'))).toBe('2');
    expect(await firstOffset(parseStartFrom(`time:${new Date(t[1]).toISOString()}`))).toBe('1');
    const { batches: none } = await consume(s, parseStartFrom(`time:${t[2] + 60_000}`), (b) => b.length > 0, { timeoutMs: 3_000 });
    expect(none).toEqual([]); // after the end: nothing yet

    // committed: a group that committed offset 2 (records 0 and 1 applied) resumes there
    const g = uniqueName('committed');
    const first = new EventConsumer({ kafka, registry, groupId: g, topics: [s.topic], from: { mode: 'earliest' }, logger });
    let committedOnce = false;
    await first.start(async (b) => {
      if (!committedOnce) await first.commit([{ topic: b.topic, partition: b.partition, offset: '2' }]);
      committedOnce = true;
    });
    for (let i = 0; i < 100 && !committedOnce; i++) await sleep(100);
    await first.stop();
    await expect(first.done).resolves.toBeUndefined();
    const lag = await fetchGroupLag(kafka, g, [s.topic]);
    expect(lag).toEqual([{ topic: s.topic, partition: 0, committed: '2', low: '0', high: '3', lag: 1 }]);
    expect(await firstOffset({ mode: 'committed' }, g)).toBe('2');
    expect(await firstOffset({ mode: 'committed' })).toBe('0'); // a new group without commits: earliest

    // latest: only what is produced after the start
    const latest = new EventConsumer({ kafka, registry, groupId: uniqueName('latest'), topics: [s.topic], from: { mode: 'latest' }, logger });
    const seen: string[] = [];
    await latest.start(async (b) => {
      seen.push(...b.records.map((r) => r.offset));
    });
    await sleep(1500);
    await s.producer.send(s.topic, 0, [hb(99)]);
    for (let i = 0; i < 100 && seen.length === 0; i++) await sleep(100);
    await latest.stop();
    expect(seen).toEqual(['3']);
    expect(latest.highWatermarks()[0]).toMatchObject({ partition: 0, highWatermark: '4', position: '4' });

    // latest-snapshot: the offset of the record holding the newest snapshot-begin
    const sb = (epoch: number): ChangeEvent => ({ kind: 'snapshot-begin', pos: pos(0, 0, epoch), db: 0, rdbVersion: 11, sourceVersion: '7.2.0' });
    await s.producer.send(s.topic, 0, [sb(1), hb(100)]); // offset 4
    await s.producer.send(s.topic, 0, [hb(101)]); // 5
    await s.producer.send(s.topic, 0, [hb(102), sb(2)]); // 6
    await s.producer.send(s.topic, 0, [hb(103)]); // 7
    expect(await firstOffset(parseStartFrom('latest-snapshot'))).toBe('6');
    const index = await s.producer.readSnapshotIndex();
    expect(index).toMatchObject([{ topic: s.topic, partition: 0, offset: '6', epoch: 2, db: 0 }]);
  });

  it('concurrent sends to one partition keep call order', async () => {
    const s = await setup(1);
    const sends = Array.from({ length: 30 }, (_, i) => s.producer.send(s.topic, 0, [hb(i), hb(1000 + i)]));
    const results = await Promise.all(sends);
    expect(results.map((r) => r.firstOffset)).toEqual(results.map((_, i) => String(i)));
    await s.producer.flush();
    const { batches } = await consume(s, { mode: 'earliest' }, (b) => eventsOf(b).length >= 60);
    expect(eventsOf(batches)).toStrictEqual(Array.from({ length: 30 }, (_, i) => [hb(i), hb(1000 + i)]).flat());
  });

  it('packed records to several partitions at once: shared requests, call order and offsets per partition', async () => {
    const s = await setup(3);
    const packer = new RecordPacker(4_000); // small records: several per send
    const sends: Array<Promise<SendResult>> = [];
    const sent: ChangeEvent[][] = [[], [], []];
    for (let round = 0; round < 5; round++) {
      for (let p = 0; p < 3; p++) {
        const out: SealedRecord[] = [];
        for (let i = 0; i < 40; i++) {
          const e = hb(round * 1000 + p * 100 + i);
          sent[p].push(e);
          packer.push(e, out);
        }
        packer.seal(out);
        sends.push(s.producer.sendRecords(s.topic, p, out));
      }
    }
    const results = await Promise.all(sends);
    for (let p = 0; p < 3; p++) {
      const mine = results.filter((_, i) => i % 3 === p);
      // offsets follow call order within a partition, without gaps
      let next = 0n;
      for (const r of mine) {
        expect(BigInt(r.firstOffset!)).toBe(next);
        next = BigInt(r.lastOffset!) + 1n;
      }
    }
    const { batches } = await consume(s, { mode: 'earliest' }, (b) => eventsOf(b).length >= 600);
    for (let p = 0; p < 3; p++) expect(eventsOf(batches.filter((b) => b.partition === p))).toStrictEqual(sent[p]);
  });

  it('a topic grown by one range (a cluster source\'s new master): the producer writes the new partitions once it refreshed its metadata', async () => {
    const prefix = uniqueName('gr');
    const topic = topicName(prefix, 'src', 0);
    const positions = positionsTopicName(prefix, 'src');
    await ensureTopics(admin, [topic], { partitions: 2 });
    await ensurePositionsTopic(admin, positions);
    const producer = new EventProducer({ kafka, registry, positionsTopic: positions, logger });
    cleanups.push(async () => {
      await producer.disconnect();
      await admin.deleteTopics({ topics: [topic, positions] });
    });
    await producer.connect();
    await producer.send(topic, 1, [hb(1)]);
    await expect(ensureTopics(admin, [topic], { partitions: 4 })).rejects.toThrow(/exists with 2 partitions, not 4/);
    await ensureTopics(admin, [topic], { partitions: 4, grow: true });
    await producer.refreshMetadata();
    expect((await producer.send(topic, 3, [hb(2)])).firstOffset).toBe('0');
    const offsets = await admin.fetchTopicOffsets(topic);
    expect(offsets.find((o) => o.partition === 3)?.high).toBe('1');
  });

  it('once a produce request fails, every later send to its partition fails too; other partitions go on', async () => {
    // A later record acknowledged after an earlier one failed would put the caller's resend (from
    // its durable position) behind it, where the applier skips it as already seen: a lost write.
    const prefix = uniqueName('rt');
    const topic = topicName(prefix, 'src', 0);
    const positions = positionsTopicName(prefix, 'src');
    await ensureTopics(admin, [topic], { partitions: 2, configs: { 'max.message.bytes': '4000' } });
    await ensurePositionsTopic(admin, positions);
    const producer = new EventProducer({ kafka, registry, positionsTopic: positions, logger });
    cleanups.push(async () => {
      await producer.disconnect();
      await admin.deleteTopics({ topics: [topic, positions] });
    });
    const big = command([[b('SET'), b('k'), randomBytes(20_000)]]); // over the topic's record limit: refused
    const tooBig = producer.send(topic, 0, [big]);
    const queuedBehind = producer.send(topic, 0, [hb(1)]);
    await expect(tooBig).rejects.toBeInstanceOf(ReplistreamError);
    await expect(queuedBehind).rejects.toBe(await tooBig.catch((e: unknown) => e));
    await expect(producer.send(topic, 0, [hb(2)])).rejects.toBeInstanceOf(ReplistreamError);
    expect((await producer.send(topic, 1, [hb(3)])).firstOffset).toBe('0');
    const offsets = await admin.fetchTopicOffsets(topic);
    expect(offsets.find((o) => o.partition === 0)?.high).toBe('0'); // nothing of partition 0 written
  });

  it('a record that is not an event batch stops the consumer with an error naming it', async () => {
    const s = await setup(1);
    await s.producer.send(s.topic, 0, [hb(1)]);
    const p = kafka.producer();
    await p.connect();
    await p.send({ topic: s.topic, messages: [{ partition: 0, value: Buffer.from('{"not":"avro"}') }] });
    await p.disconnect();
    const seen: ChangeEvent[] = [];
    const c = new EventConsumer({ kafka, registry, groupId: uniqueName('poison'), topics: [s.topic], from: { mode: 'earliest' }, logger });
    await c.start(async (b) => {
      seen.push(...b.records.flatMap((r) => r.events));
    });
    const err = await Promise.race([c.done.then(() => null, (e: unknown) => e), sleep(20_000).then(() => 'timeout')]);
    expect(err).toBeInstanceOf(ReplistreamError);
    expect((err as ReplistreamError).code).toBe('PROTOCOL');
    expect((err as Error).message).toMatch(new RegExp(`${s.topic}\\[0\\] offset 1: record value is not in the Confluent wire format`));
    expect(seen).toEqual([]); // the whole batch is refused: nothing half applied
  });

  it('latest-snapshot without any snapshot recorded is a clear configuration error', async () => {
    const s = await setup(1);
    await s.producer.send(s.topic, 0, [hb(1)]);
    const c = new EventConsumer({ kafka, registry, groupId: uniqueName('nosnap'), topics: [s.topic], from: { mode: 'latest-snapshot' }, positionsTopic: s.positions, logger });
    await expect(c.start(async () => undefined)).rejects.toThrow(/no snapshot of .* is recorded/);
  });

  it('positions topic: latest value per key, tombstones delete', async () => {
    const s = await setup(1);
    expect((await s.producer.readLatestPositions()).size).toBe(0);
    await s.producer.writePosition('capture/db0', { offset: 10, replid: 'a' });
    await s.producer.writePosition('capture/db1', { offset: 5 });
    await s.producer.writePosition('capture/db0', { offset: 20, replid: 'a' });
    await s.producer.writePosition('capture/db1', null);
    const started = Date.now();
    const positions = await s.producer.readLatestPositions();
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(Object.fromEntries(positions)).toEqual({ 'capture/db0': { offset: 20, replid: 'a' } });
    // read without a consumer group (no group join), the same as through one
    await s.producer.writePosition(snapshotIndexKey(s.topic, 0), { topic: s.topic, partition: 0, offset: '0', epoch: 1, db: 0, timestampMs: 1 });
    const direct = await readLatestPositions(kafka, s.positions, logger);
    expect(Object.fromEntries(direct)).toEqual(Object.fromEntries(splitPositions(await readCompactedTopic(kafka, s.positions)).positions));
    expect(Object.fromEntries(direct)).toEqual({ 'capture/db0': { offset: 20, replid: 'a' } });
    // a positions topic that does not exist yet holds nothing
    expect((await readLatestPositions(kafka, `${s.positions}-none`, logger)).size).toBe(0);
  });

  it('ensureTopics is idempotent and refuses a different partition count', async () => {
    const prefix = uniqueName('topics');
    const names = [topicName(prefix, 'src', 0), topicName(prefix, 'src', 3)];
    cleanups.push(() => admin.deleteTopics({ topics: names }));
    expect((await ensureTopics(admin, names, { partitions: 3 })).created).toEqual(names);
    expect((await ensureTopics(admin, names, { partitions: 3 })).existing).toEqual(names);
    await expect(ensureTopics(admin, names, { partitions: 4 })).rejects.toThrow(/exists with 3 partitions, not 4/);
    await expect(ensureTopics(admin, names, { partitions: 4 })).rejects.toBeInstanceOf(ReplistreamError);
  });

  it('a look-up by id: unreachable is a retriable CONNECTION error, an id the registry does not hold an error with its HTTP status', async () => {
    const nowhere = new EventRegistry({ url: 'http://127.0.0.1:1/apis/ccompat/v7', retries: 0 });
    const down = await nowhere.fetchSchema(1).catch((e: unknown) => e);
    expect(down).toBeInstanceOf(ReplistreamError);
    expect((down as ReplistreamError).code).toBe('CONNECTION');
    expect((down as ReplistreamError).retriable).toBe(true);
    expect((down as ReplistreamError).setting).toBe('registry');
    const missing = await registry.fetchSchema(2_000_000_000).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(ReplistreamError);
    expect((missing as ReplistreamError).message).toMatch(/GET \/schemas\/ids\/2000000000.*HTTP 404/);
    expect((missing as ReplistreamError).retriable).toBe(false);
  });

  it('an unreachable registry is a retriable CONNECTION error naming the registry', async () => {
    const r = new EventRegistry({ url: 'http://127.0.0.1:1/apis/ccompat/v7', retries: 0 });
    const err = await r.register('nowhere-value').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ReplistreamError);
    expect((err as ReplistreamError).code).toBe('CONNECTION');
    expect((err as ReplistreamError).setting).toBe('registry');
  });
});

/** The EventBatch schema with a newer Heartbeat: one optional field more (`zone`), compatible. */
function newerHeartbeatSchema(): { named: ReturnType<typeof loadNamedSchemas>; hbSchema: { fields: object[] }; schema: object } {
  const named = loadNamedSchemas();
  const hbSchema = JSON.parse(JSON.stringify(named.get('io.replistream.events.Heartbeat')));
  hbSchema.fields.push({ name: 'zone', type: ['null', 'string'], default: null });
  named.set('io.replistream.events.Heartbeat', hbSchema);
  return { named, hbSchema, schema: inlineSchema(named) };
}

/** Registers `schema` as a new version of the topic's subject, straight through the registry's API. */
function postSchema(topic: string, schema: object): Promise<Response> {
  return fetch(`${stack().registry}/subjects/${subjectFor(topic)}/versions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/vnd.schemaregistry.v1+json' },
    body: JSON.stringify({ schema: JSON.stringify(schema) }),
  });
}

/** A wire-format record holding heartbeat `e` written with the newer schema (zone 'eu'). */
function newerHeartbeatValue(schema: object, id: number, e: ChangeEvent): Buffer {
  const w = eventToAvro(e) as Record<string, Record<string, unknown>>;
  const branch = Object.keys(w)[0];
  return toWire(id, avroTypeFor(schema).toBuffer({ events: [{ [branch]: { ...w[branch], zone: 'eu' } }] }));
}

/** The first `n` raw record values of a partition (a plain kafkajs consumer). */
async function readRaw(topic: string, partition: number, n: number): Promise<Buffer[]> {
  const c = kafka.consumer({ groupId: uniqueName('raw') });
  const out: Buffer[] = [];
  await c.connect();
  await c.subscribe({ topics: [topic], fromBeginning: true });
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 15_000);
    void c.run({
      eachMessage: async ({ partition: p, message }) => {
        if (p === partition && out.length < n && message.value) out.push(message.value);
        if (out.length >= n) {
          clearTimeout(timer);
          resolve();
        }
      },
    });
  });
  await c.disconnect();
  return out;
}
