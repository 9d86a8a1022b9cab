/**
 * Producing change events.
 *
 * `send(topic, partition, events)` packs the events (split when needed, services/events/split.ts)
 * into EventBatch records of at most `maxRecordBytes` (wire format included); `sendRecords` takes
 * records a `RecordPacker` already packed (capture encodes as it goes). Records go out with an
 * idempotent producer (`idempotent: true, maxInFlightRequests: 1`, acks=-1): per-partition order
 * holds across retries and no retry duplicates a record. Sends to one partition are queued in call
 * order; a send resolves when every one of its records is acknowledged. Once a request fails, every
 * send of its partitions fails, queued or later (see `request`).
 *
 * One produce request at a time carries the next records of every partition that has some
 * waiting (so four partitions cost one round trip, not four): as many of its queued sends as fit
 * in `maxRecordBytes` per partition, because Kafka's size limit applies to a partition's whole
 * batch, and about four records' worth in all.
 *
 * A request that fills no partition's batch waits until its oldest record has waited `lingerMs`
 * (default 5, as Kafka's own producer since 4.0); records queued while the previous request was
 * in flight have waited already and leave at once. Without the linger, a steady stream of
 * commands went out as a request for every few events: in a CPU profile of capture at 20,000
 * mixed commands per second on two cores, writing those requests (the socket write and the
 * wake-ups it causes) was a third of capture's time. A linger counted from the request rather
 * than the record, with one send per partition per request, cost a full sync (one small send
 * per 1,000 keys) 5 ms a request: 1.3 s more for 1M keys.
 *
 * Under heavy traffic the linger stretches to `HEAVY_LINGER_FACTOR` times `lingerMs`: a request
 * that carried `HEAVY_REQUEST_BYTES` or more makes the next one wait that long. Every request
 * costs capture, the broker and each applier a fixed amount of work (a record batch, a fetch that
 * returns, a plan and a transaction downstream), so at 100,000 SET/s a request every 5 ms was
 * ~0.3 of a core of this 2-core machine more than a request every 20 ms (capture, broker and
 * applier together, measured from /proc); 15 ms more lag is nothing next to the lag a saturated
 * machine builds. Light traffic (under ~16 KB of records per 5 ms, some 35,000 small SETs/s)
 * keeps the short linger, and the longer one lasts until a request carries less than that again
 * (under ~9,000 SETs/s). A snapshot's sends (`{ bulk: true }`) never wait longer than `lingerMs`:
 * their records are full already (1,000 keys each), so waiting saved little per request and
 * slowed the transfer (1M-key full sync 8.67 / 10.40 s against 7.93 / 9.63 s, interleaved).
 */
import kafkajs from 'kafkajs';
import type { CompressionTypes, Kafka, Producer } from 'kafkajs';
import { ReplistreamError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { ChangeEvent } from '../events/model.js';
import { DEFAULT_MAX_RECORD_BYTES, WIRE_HEADER_BYTES, packEncoded, type SealedRecord } from '../events/split.js';
import { kafkaError } from './kafka.js';
import { applyPositionRecord, readCompactedTopic, snapshotIndexKey, splitPositions, type PositionValue, type SnapshotIndexEntry } from './positions.js';
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
  /** How long a request that is not full waits for more records (ms), default 5; 0 sends at once. */
  lingerMs?: number;
}

export const DEFAULT_LINGER_MS = 5;
/** Record bytes in a request from which traffic counts as heavy (see the header). */
export const HEAVY_REQUEST_BYTES = 16 * 1024;
/** Under heavy traffic a request lingers this many times `lingerMs`. */
export const HEAVY_LINGER_FACTOR = 4;

export interface SendResult {
  records: number;
  /** Offset of the first and last record written, null when `events` was empty. */
  firstOffset: string | null;
  lastOffset: string | null;
  /** Bytes of record values written. */
  bytes: number;
}

const CODECS = { snappy: Codes.Snappy, gzip: Codes.GZIP, none: Codes.None } as const;

/** One `send`/`sendRecords` call: its records, how many are acknowledged, and its outcome. */
interface Job {
  records: SealedRecord[];
  next: number;
  /** When the send was queued (performance.now()): the linger counts from it. */
  queuedAt: number;
  /** A bulk transfer (a snapshot): its requests keep the short linger. */
  bulk: boolean;
  result: SendResult;
  index: SnapshotIndexEntry[];
  resolve: (r: SendResult) => void;
  reject: (err: unknown) => void;
}

interface PartitionQueue {
  topic: string;
  partition: number;
  jobs: Job[];
}

/** What one request carries for one partition: records `from`..`to` of each of `segments` in turn. */
interface Part {
  queue: PartitionQueue;
  segments: Array<{ job: Job; from: number; to: number }>;
  bytes: number;
}

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
  /** Per topic-partition, the sends not fully acknowledged yet, oldest first. */
  private readonly queues = new Map<string, PartitionQueue>();
  /** Partitions a request failed on, with the error: every later send to them fails with it. */
  private readonly broken = new Map<string, ReplistreamError>();
  private readonly unsettled = new Set<Promise<unknown>>();
  private requesting = false;
  private readonly lingerMs: number;
  /** A request is waiting out its linger. */
  private lingering: NodeJS.Timeout | null = null;
  /** The last request carried HEAVY_REQUEST_BYTES or more: the next one lingers longer. */
  private heavy = false;
  private turn = 0;
  private connected = false;

  constructor(options: EventProducerOptions) {
    this.kafka = options.kafka;
    this.registry = options.registry;
    this.positionsTopic = options.positionsTopic;
    this.maxRecordBytes = options.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES;
    this.maxEvents = options.maxEventsPerRecord;
    this.logger = options.logger;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.lingerMs = options.lingerMs ?? DEFAULT_LINGER_MS;
    const compression = options.compression ?? 'snappy';
    if (!(compression in CODECS)) {
      throw new ReplistreamError('CONFIG', `compression: ${JSON.stringify(compression)} is not one of snappy, gzip, none`, { setting: 'compression' });
    }
    this.compression = CODECS[compression];
    // The producer's cluster client is kept (kafkajs makes it privately) for `refreshMetadata`.
    const create = clusterFactory(this.kafka);
    const kafkaObj = this.kafka as unknown as Record<symbol, (o: object) => { refreshMetadata(): Promise<void> }>;
    const original = create ? kafkaObj[create] : undefined;
    if (create && typeof original === 'function') {
      kafkaObj[create] = (o: object) => (this.cluster = original.call(this.kafka, o));
    }
    try {
      this.producer = this.kafka.producer({
        idempotent: true,
        maxInFlightRequests: 1,
        allowAutoTopicCreation: false,
        createPartitioner: Partitioners.DefaultPartitioner, // unused (explicit partitions); silences kafkajs's v2 notice
      });
    } finally {
      if (create && typeof original === 'function') delete kafkaObj[create];
      if (create && kafkaObj[create] !== original) kafkaObj[create] = original!; // it was an own property
    }
  }

  private cluster: { refreshMetadata(): Promise<void> } | null = null;

  /**
   * Reads the topics' metadata again at once: partitions added to a topic (a cluster source's new
   * master) are unknown to the producer until then, and kafkajs drops sends to an unknown
   * partition without an error.
   */
  async refreshMetadata(): Promise<void> {
    if (!this.cluster) throw new ReplistreamError('INTERNAL', 'cannot refresh the producer\'s metadata: kafkajs\'s cluster client was not found (kafkajs changed?)');
    try {
      await this.cluster.refreshMetadata();
    } catch (err) {
      throw kafkaError('refreshing the producer\'s metadata', err);
    }
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
   * its last durable position with a new producer (duplicates are recognised downstream by
   * position); this one refuses every further send to that partition.
   */
  send(topic: string, partition: number, events: ChangeEvent[]): Promise<SendResult> {
    let records: SealedRecord[];
    try {
      records = packEncoded(events, this.maxRecordBytes, { maxEvents: this.maxEvents }).map((b): SealedRecord => {
        const sb = b.events.find((e) => e.kind === 'snapshot-begin');
        return { body: b.body, count: b.events.length, snapshotBegin: sb ? { epoch: sb.pos.epoch, db: sb.db } : null };
      });
    } catch (err) {
      return Promise.reject(err);
    }
    return this.sendRecords(topic, partition, records);
  }

  /**
   * Produce records already packed by a `RecordPacker` (services/events/split.ts), in order, to
   * `topic`/`partition`: `send` without the encoding. Queued behind the earlier sends of that
   * partition; sends to several partitions share produce requests. `bulk`: records of a bulk
   * transfer (a snapshot), which never wait longer than `lingerMs` (see the header).
   */
  sendRecords(topic: string, partition: number, records: SealedRecord[], options: { bulk?: boolean } = {}): Promise<SendResult> {
    if (records.length === 0) return Promise.resolve({ records: 0, firstOffset: null, lastOffset: null, bytes: 0 });
    if (!Number.isInteger(partition) || partition < 0) return Promise.reject(new ReplistreamError('INTERNAL', `send: bad partition ${partition}`));
    const key = `${topic}\u0000${partition}`;
    const broken = this.broken.get(key);
    if (broken) return Promise.reject(broken);
    let q = this.queues.get(key);
    if (!q) this.queues.set(key, (q = { topic, partition, jobs: [] }));
    const queue = q;
    const done = new Promise<SendResult>((resolve, reject) => {
      queue.jobs.push({ records, next: 0, queuedAt: performance.now(), bulk: options.bulk === true, result: { records: 0, firstOffset: null, lastOffset: null, bytes: 0 }, index: [], resolve, reject });
    });
    const tracked = done.catch(() => undefined);
    this.unsettled.add(tracked);
    void tracked.then(() => this.unsettled.delete(tracked));
    this.pump();
    return done;
  }

  /**
   * Sends the next produce request unless one is in flight: for every partition with queued
   * records, the next ones of its oldest sends, at most `maxRecordBytes` per partition (Kafka
   * limits each partition's batch) and about 4 records' worth per request. A request that fills
   * no partition's batch waits until its oldest record has lingered `lingerMs` (times
   * HEAVY_LINGER_FACTOR after a request of HEAVY_REQUEST_BYTES or more, unless a bulk send waits).
   */
  private pump(): void {
    if (this.requesting || this.lingering) return;
    const parts: Part[] = [];
    let total = 0;
    let full = false;
    let oldest = Infinity;
    let bulk = false;
    for (const queue of this.rotate()) {
      if (queue.jobs.length === 0) continue;
      const part: Part = { queue, segments: [], bytes: 0 };
      for (const job of queue.jobs) {
        let to = job.next;
        while (to < job.records.length && (part.bytes === 0 || part.bytes + WIRE_HEADER_BYTES + job.records[to].body.length <= this.maxRecordBytes)) {
          part.bytes += WIRE_HEADER_BYTES + job.records[to++].body.length;
        }
        if (to > job.next) part.segments.push({ job, from: job.next, to });
        if (job.queuedAt < oldest) oldest = job.queuedAt;
        if (job.bulk) bulk = true;
        if (to < job.records.length) {
          full = true; // this partition has more than a batch's worth waiting
          break;
        }
      }
      parts.push(part);
      total += part.bytes;
      if (total >= 4 * this.maxRecordBytes) {
        full = true;
        break;
      }
    }
    if (parts.length === 0) return;
    const linger = this.heavy && !bulk ? this.lingerMs * HEAVY_LINGER_FACTOR : this.lingerMs;
    const wait = full ? 0 : oldest + linger - performance.now();
    if (wait >= 1) {
      this.lingering = setTimeout(() => {
        this.lingering = null;
        this.pump();
      }, Math.ceil(wait));
      return;
    }
    this.requesting = true;
    this.heavy = total >= HEAVY_REQUEST_BYTES;
    void this.request(parts).finally(() => {
      this.requesting = false;
      this.pump();
    });
  }

  /** Queues with sends waiting, in turn from one request to the next (no partition starves another). */
  private rotate(): PartitionQueue[] {
    for (const [key, q] of this.queues) if (q.jobs.length === 0) this.queues.delete(key);
    const all = [...this.queues.values()];
    const start = all.length ? this.turn++ % all.length : 0;
    return [...all.slice(start), ...all.slice(0, start)];
  }

  private async request(parts: Part[]): Promise<void> {
    const timestamp = Date.now();
    const what = parts.map((p) => `${p.queue.topic}[${p.queue.partition}]`).join(', ');
    let meta: Awaited<ReturnType<Producer['sendBatch']>>;
    try {
      await this.connect();
      const ids = await Promise.all(parts.map((p) => this.registry.registerForTopic(p.queue.topic)));
      const byTopic = new Map<string, Array<{ partition: number; value: Buffer; timestamp: string; headers?: Record<string, string> }>>();
      parts.forEach((p, i) => {
        let messages = byTopic.get(p.queue.topic);
        if (!messages) byTopic.set(p.queue.topic, (messages = []));
        for (const { job, from, to } of p.segments) for (let k = from; k < to; k++) {
          const r = job.records[k];
          messages.push({
            partition: p.queue.partition,
            value: toWire(ids[i], r.body),
            timestamp: String(timestamp),
            headers: r.snapshotBegin ? { [SNAPSHOT_BEGIN_HEADER]: String(r.snapshotBegin.epoch) } : undefined,
          });
        }
      });
      meta = await this.producer.sendBatch({
        acks: -1,
        timeout: this.timeoutMs,
        compression: this.compression,
        topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })),
      });
    } catch (err) {
      // Every send of these partitions fails: the ones in this request, the ones queued behind
      // them and any later one. Were a later record written after an earlier one failed, the
      // caller's resend from its durable position would land after it, and downstream, which
      // skips what is behind the position it reached, would drop the resent records as duplicates.
      const error = kafkaError(`producing ${parts.reduce((n, p) => n + p.segments.reduce((m, g) => m + g.to - g.from, 0), 0)} record(s) to ${what}`, err);
      for (const p of parts) {
        this.broken.set(`${p.queue.topic}\u0000${p.queue.partition}`, error);
        for (const job of p.queue.jobs.splice(0)) job.reject(error);
      }
      return;
    }
    for (const p of parts) {
      const { topic, partition } = p.queue;
      const md = meta.find((m) => m.topicName === topic && m.partition === partition);
      const base = BigInt(md?.baseOffset ?? md?.offset ?? '-1');
      let at = 0; // records of this partition before the segment, in this request
      for (const { job, from, to } of p.segments) {
        const n = to - from;
        const result = job.result;
        if (base >= 0n) {
          const first = base + BigInt(at);
          result.firstOffset ??= first.toString();
          result.lastOffset = (first + BigInt(n - 1)).toString();
          for (let k = from; k < to; k++) {
            const sb = job.records[k].snapshotBegin;
            if (sb) job.index.push({ topic, partition, offset: (first + BigInt(k - from)).toString(), epoch: sb.epoch, db: sb.db, timestampMs: timestamp });
          }
        }
        let bytes = 0;
        for (let k = from; k < to; k++) bytes += WIRE_HEADER_BYTES + job.records[k].body.length;
        result.records += n;
        result.bytes += bytes;
        job.next = to;
        at += n;
        if (job.next === job.records.length) {
          p.queue.jobs.shift(); // a request's segments are its queue's oldest sends, in order
          void this.complete(topic, partition, job);
        }
      }
    }
  }

  /** A send whose records are all acknowledged: its snapshot index entry, then its result. */
  private async complete(topic: string, partition: number, job: Job): Promise<void> {
    const latest = job.index[job.index.length - 1];
    try {
      if (latest) await this.writePosition(snapshotIndexKey(topic, partition), latest as unknown as PositionValue);
      job.resolve(job.result);
    } catch (err) {
      job.reject(err);
    }
  }

  /** Wait for every `send` issued so far. */
  async flush(): Promise<void> {
    await Promise.all([...this.unsettled]);
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
    return readLatestPositions(this.kafka, this.positionsTopic, this.logger);
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

/**
 * Every position written to `topic` (latest value per key), the snapshot index excluded: what a
 * starting capture needs before its replication link can start.
 *
 * Read with plain Fetch requests to the partition's leader, from the log start to the high
 * watermark of the moment (no consumer group: a group join costs the broker's
 * `group.initial.rebalance.delay.ms`, 3 s by default). kafkajs has no public API for that, so its
 * cluster client is taken from the `Kafka` object; when that is not possible (another kafkajs
 * version) or the read fails, `readCompactedTopic` (positions.ts, through a throwaway consumer
 * group) does it instead.
 */
/** The symbol of kafkajs's private cluster-client factory on a `Kafka` object (no public API makes one). */
function clusterFactory(kafka: Kafka): symbol | undefined {
  return Object.getOwnPropertySymbols(kafka).find((sym) => sym.description === 'private:Kafka:createCluster');
}

export async function readLatestPositions(kafka: Kafka, topic: string, logger?: Logger): Promise<Map<string, PositionValue>> {
  try {
    const direct = await readCompactedDirect(kafka, topic);
    if (direct) return splitPositions(direct).positions;
  } catch (err) {
    logger?.debug({ err: (err as Error)?.message, topic }, 'direct read of the positions topic failed; reading through a consumer group');
  }
  return splitPositions(await readCompactedTopic(kafka, topic, { logger })).positions;
}

interface FetchedRecord {
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  isControlRecord?: boolean;
}

interface ClusterClient {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  addTargetTopic(topic: string): Promise<void>;
  fetchTopicsOffset(topics: Array<{ topic: string; partitions: Array<{ partition: number }>; fromBeginning: boolean }>): Promise<Array<{ partitions: Array<{ partition: number; offset: string }> }>>;
  findLeaderForPartitions(topic: string, partitions: number[]): Record<string, number[]>;
  findBroker(o: { nodeId: string }): Promise<{
    fetch(o: object): Promise<{ responses: Array<{ partitions: Array<{ partition: number; errorCode: number; messages: FetchedRecord[] }> }> }>;
  }>;
}

/** `readCompactedTopic` for a one-partition topic without a consumer group; null when kafkajs's cluster client is not reachable. */
async function readCompactedDirect(kafka: Kafka, topic: string): Promise<Map<string, PositionValue> | null> {
  const create = clusterFactory(kafka);
  const factory = create ? (kafka as unknown as Record<symbol, unknown>)[create] : undefined;
  if (typeof factory !== 'function') return null;
  const cluster = (factory as (o: object) => ClusterClient)({ allowAutoTopicCreation: false, isolationLevel: 1 });
  const out = new Map<string, PositionValue>();
  await cluster.connect();
  try {
    try {
      await cluster.addTargetTopic(topic);
    } catch (err) {
      if ((err as { type?: string }).type === 'UNKNOWN_TOPIC_OR_PARTITION') return out; // never written yet
      throw err;
    }
    const offsetOf = async (fromBeginning: boolean): Promise<bigint> => {
      const [t] = await cluster.fetchTopicsOffset([{ topic, partitions: [{ partition: 0 }], fromBeginning }]);
      return BigInt(t.partitions.find((p) => p.partition === 0)?.offset ?? '0');
    };
    const [low, high] = await Promise.all([offsetOf(true), offsetOf(false)]);
    const leader = Object.entries(cluster.findLeaderForPartitions(topic, [0])).find(([, parts]) => parts.includes(0))?.[0];
    if (leader === undefined) throw new Error(`no leader for ${topic}[0]`);
    const broker = await cluster.findBroker({ nodeId: leader });
    for (let offset = low; offset < high; ) {
      const res = await broker.fetch({
        replicaId: -1,
        isolationLevel: 1,
        maxWaitTime: 0,
        minBytes: 1,
        maxBytes: 16 * 1024 * 1024,
        topics: [{ topic, partitions: [{ partition: 0, fetchOffset: offset.toString(), maxBytes: 16 * 1024 * 1024 }] }],
      });
      const part = res.responses[0]?.partitions.find((p) => p.partition === 0);
      if (!part) throw new Error(`no fetch response for ${topic}[0]`);
      if (part.errorCode) throw new Error(`fetching ${topic}[0] at ${offset}: error code ${part.errorCode}`);
      let next = offset;
      for (const m of part.messages) {
        const at = BigInt(m.offset);
        if (at < offset) continue; // a batch starts before the offset asked for
        if (at >= high) break;
        next = at + 1n;
        if (m.isControlRecord || !m.key) continue;
        applyPositionRecord(out, m.key, m.value); // not JSON: ignored, as readCompactedTopic does
      }
      if (next === offset) throw new Error(`fetching ${topic}[0] at ${offset} made no progress`); // → the consumer-group read
      offset = next;
    }
    return out;
  } finally {
    await cluster.disconnect().catch(() => undefined);
  }
}
