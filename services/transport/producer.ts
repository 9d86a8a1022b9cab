/**
 * Producing change events.
 *
 * `send(topic, partition, events)` packs the events (split when needed, services/events/split.ts)
 * into EventBatch records of at most `maxRecordBytes` (wire format included), and produces them to
 * that partition with an idempotent producer (`idempotent: true, maxInFlightRequests: 1`, acks=-1):
 * per-partition order holds across retries and no retry duplicates a record. Concurrent `send`s to
 * one partition are queued in call order. It resolves when every record is acknowledged.
 *
 * Kafka's size limit applies to a whole produce batch per partition, so one produce request
 * carries records totalling at most `maxRecordBytes` (usually one full record).
 */
import kafkajs from 'kafkajs';
import type { CompressionTypes, Kafka, Producer } from 'kafkajs';
import { ReplistreamError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { ChangeEvent } from '../events/model.js';
import { DEFAULT_MAX_RECORD_BYTES, WIRE_HEADER_BYTES, packEncoded, type SealedRecord } from '../events/split.js';
import { kafkaError } from './kafka.js';
import { readCompactedTopic, snapshotIndexKey, splitPositions, type PositionValue, type SnapshotIndexEntry } from './positions.js';
import { toWire, type EventRegistry } from './registry.js';

const { CompressionTypes: Codes, Partitioners } = kafkajs;

/** Header on records holding a snapshot-begin event (value: its epoch). */
export const SNAPSHOT_BEGIN_HEADER = 'replistream-snapshot-begin';

export type Compression = 'snappy' | 'gzip' | 'none';

export interface EventProducerOptions {
  kafka: Kafka;
  registry: EventRegistry;
  /** `positionsTopicName(prefix, sourceId)`; must exist (ensurePositionsTopic). */
  positionsTopic: string;
  /** Default 900 000 (under Kafka's default 1 MB message.max.bytes). */
  maxRecordBytes?: number;
  /** At most this many events per record (default: bounded by size only). */
  maxEventsPerRecord?: number;
  /** Default snappy. */
  compression?: Compression;
  logger?: Logger;
  /** Produce request timeout (ms), default 30 000. */
  timeoutMs?: number;
}

export interface SendResult {
  records: number;
  /** Offset of the first and last record written, null when `events` was empty. */
  firstOffset: string | null;
  lastOffset: string | null;
  /** Bytes of record values written. */
  bytes: number;
}

const CODECS = { snappy: Codes.Snappy, gzip: Codes.GZIP, none: Codes.None } as const;

export class EventProducer {
  readonly positionsTopic: string;
  readonly maxRecordBytes: number;
  private readonly producer: Producer;
  private readonly registry: EventRegistry;
  private readonly kafka: Kafka;
  private readonly compression: CompressionTypes;
  private readonly maxEvents?: number;
  private readonly logger?: Logger;
  private readonly timeoutMs: number;
  private readonly queues = new Map<string, Promise<unknown>>();
  private connected = false;

  constructor(options: EventProducerOptions) {
    this.kafka = options.kafka;
    this.registry = options.registry;
    this.positionsTopic = options.positionsTopic;
    this.maxRecordBytes = options.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES;
    this.maxEvents = options.maxEventsPerRecord;
    this.logger = options.logger;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    const compression = options.compression ?? 'snappy';
    if (!(compression in CODECS)) {
      throw new ReplistreamError('CONFIG', `compression: ${JSON.stringify(compression)} is not one of snappy, gzip, none`, { setting: 'compression' });
    }
    this.compression = CODECS[compression];
    this.producer = this.kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      createPartitioner: Partitioners.DefaultPartitioner, // unused (explicit partitions); silences kafkajs's v2 notice
    });
  }

  async connect(): Promise<void> {
    if (this.connected) return;
    try {
      await this.producer.connect();
      this.connected = true;
    } catch (err) {
      throw kafkaError('connecting the producer', err);
    }
  }

  /**
   * Produce `events` (in order) to `topic`/`partition`; resolves once every record is acked by all
   * in-sync replicas. On failure nothing tells which records were written: the caller resends from
   * its last durable position (duplicates are recognised downstream by position).
   */
  send(topic: string, partition: number, events: ChangeEvent[]): Promise<SendResult> {
    return this.enqueue(topic, partition, () => this.doSend(topic, partition, events));
  }

  /**
   * Produce records already packed by a `RecordPacker` (services/events/split.ts), in order, to
   * `topic`/`partition`: `send` without the encoding. Queued with the `send`s of that partition.
   */
  sendRecords(topic: string, partition: number, records: SealedRecord[]): Promise<SendResult> {
    return this.enqueue(topic, partition, () => this.produce(topic, partition, records));
  }

  private enqueue(topic: string, partition: number, work: () => Promise<SendResult>): Promise<SendResult> {
    const key = `${topic}\u0000${partition}`;
    const prev = this.queues.get(key) ?? Promise.resolve();
    const next = prev.catch(() => undefined).then(work);
    const tail = next.catch(() => undefined);
    this.queues.set(key, tail);
    void tail.then(() => {
      if (this.queues.get(key) === tail) this.queues.delete(key);
    });
    return next;
  }

  private async doSend(topic: string, partition: number, events: ChangeEvent[]): Promise<SendResult> {
    if (events.length === 0) return { records: 0, firstOffset: null, lastOffset: null, bytes: 0 };
    const records = packEncoded(events, this.maxRecordBytes, { maxEvents: this.maxEvents }).map((b): SealedRecord => {
      const sb = b.events.find((e) => e.kind === 'snapshot-begin');
      return { body: b.body, count: b.events.length, snapshotBegin: sb ? { epoch: sb.pos.epoch, db: sb.db } : null };
    });
    return this.produce(topic, partition, records);
  }

  private async produce(topic: string, partition: number, records: SealedRecord[]): Promise<SendResult> {
    const result: SendResult = { records: 0, firstOffset: null, lastOffset: null, bytes: 0 };
    if (records.length === 0) return result;
    if (!Number.isInteger(partition) || partition < 0) throw new ReplistreamError('INTERNAL', `send: bad partition ${partition}`);
    await this.connect();
    const schemaId = await this.registry.registerForTopic(topic);

    const index: SnapshotIndexEntry[] = [];
    for (let i = 0; i < records.length; ) {
      // one produce request: records totalling ≤ maxRecordBytes (the broker limits the batch)
      let j = i;
      let size = 0;
      while (j < records.length && (j === i || size + WIRE_HEADER_BYTES + records[j].body.length <= this.maxRecordBytes)) size += WIRE_HEADER_BYTES + records[j++].body.length;
      const group = records.slice(i, j);
      const timestamp = Date.now();
      let meta;
      try {
        meta = await this.producer.send({
          topic,
          acks: -1,
          timeout: this.timeoutMs,
          compression: this.compression,
          messages: group.map((m) => ({
            partition,
            value: toWire(schemaId, m.body),
            timestamp: String(timestamp),
            headers: m.snapshotBegin ? { [SNAPSHOT_BEGIN_HEADER]: String(m.snapshotBegin.epoch) } : undefined,
          })),
        });
      } catch (err) {
        throw kafkaError(`producing ${group.length} record(s) to ${topic}[${partition}]`, err);
      }
      const md = meta.find((m) => m.partition === partition) ?? meta[0];
      const base = BigInt(md?.baseOffset ?? md?.offset ?? '-1');
      if (base >= 0n) {
        result.firstOffset ??= base.toString();
        result.lastOffset = (base + BigInt(group.length - 1)).toString();
        group.forEach((m, k) => {
          if (m.snapshotBegin) {
            index.push({ topic, partition, offset: (base + BigInt(k)).toString(), epoch: m.snapshotBegin.epoch, db: m.snapshotBegin.db, timestampMs: timestamp });
          }
        });
      }
      result.records += group.length;
      result.bytes += size;
      i = j;
    }
    const latest = index[index.length - 1];
    if (latest) await this.writePosition(snapshotIndexKey(topic, partition), latest as unknown as PositionValue);
    return result;
  }

  /** Wait for every `send` issued so far. */
  async flush(): Promise<void> {
    await Promise.all([...this.queues.values()]);
  }

  /** Write `value` (JSON) under `key` in the compacted positions topic; null deletes the key. */
  async writePosition(key: string, value: object | null): Promise<void> {
    await this.connect();
    try {
      await this.producer.send({
        topic: this.positionsTopic,
        acks: -1,
        timeout: this.timeoutMs,
        messages: [{ key, value: value === null ? null : JSON.stringify(value), partition: 0 }],
      });
    } catch (err) {
      throw kafkaError(`writing position ${key} to ${this.positionsTopic}`, err);
    }
  }

  /** Every position written (latest value per key), the snapshot index excluded. */
  async readLatestPositions(): Promise<Map<string, PositionValue>> {
    return splitPositions(await readCompactedTopic(this.kafka, this.positionsTopic, { logger: this.logger })).positions;
  }

  /** The snapshot index (`positions.ts`): latest acknowledged snapshot-begin per topic-partition. */
  async readSnapshotIndex(): Promise<SnapshotIndexEntry[]> {
    return splitPositions(await readCompactedTopic(this.kafka, this.positionsTopic, { logger: this.logger })).snapshots;
  }

  async disconnect(): Promise<void> {
    await this.flush().catch(() => undefined);
    if (!this.connected) return;
    this.connected = false;
    await this.producer.disconnect().catch((err) => this.logger?.warn({ err }, 'producer disconnect failed'));
  }
}
