/**
 * Consuming change events: one Kafka consumer group per destination.
 *
 * - The handler gets decoded batches per topic-partition (`DecodedBatch`: records in offset order,
 *   each with its events). Offsets are never committed automatically: the caller commits with
 *   `commit()` once its destination write is done (`offset` = the next offset to read, i.e. the
 *   last applied record's offset + 1). After a crash the group resumes from the last commit and
 *   the applier recognises re-read events by position.
 * - Start positions (`--from`): committed (default; a group without commits starts at the
 *   earliest retained offset) | earliest | latest | latest-snapshot | offset:P@O (partition P of
 *   every subscribed topic; the others: committed) | time:ISO8601. Anything but `committed` is
 *   resolved to offsets before joining, then applied at this member's first assignment (seek, and
 *   committed at once so the group keeps it). It is applied only when the group has no running
 *   member; joining a running group uses its committed offsets (logged).
 * - `latest-snapshot` reads the snapshot index from the positions topic (positions.ts): per topic
 *   the newest epoch's snapshot-begin offsets; partitions without an entry of that epoch start at
 *   the index entry's timestamp.
 * - Backpressure: `pause`/`resume` per topic-partition. Lag: `highWatermarks()` (from fetches) and
 *   `fetchLag()` (committed offsets vs end offsets, from the brokers).
 * - A non-retriable error thrown by the handler (or a record that cannot be decoded) stops the
 *   consumer: `done` rejects with it. A retriable one makes kafkajs retry the batch with backoff.
 */
import type { Admin, Consumer, EachBatchPayload, Kafka } from 'kafkajs';
import { ReplistreamError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { ReadOptions } from '../events/fast-reader.js';
import type { ChangeEvent } from '../events/model.js';
import { partitionAssigners, type AssignmentStrategy } from './assignment.js';
import { kafkaError } from './kafka.js';
import { readCompactedTopic, splitPositions, type SnapshotIndexEntry } from './positions.js';
import type { EventRegistry } from './registry.js';

export type StartFrom =
  | { mode: 'committed' }
  | { mode: 'earliest' }
  | { mode: 'latest' }
  | { mode: 'latest-snapshot' }
  | { mode: 'offset'; partition: number; offset: string }
  | { mode: 'time'; timestampMs: number };

/** Parse `--from`: committed | earliest | latest | latest-snapshot | offset:P@O | time:ISO8601 (or time:<epoch ms>). */
export function parseStartFrom(text: string): StartFrom {
  const t = text.trim();
  if (t === 'committed' || t === 'earliest' || t === 'latest' || t === 'latest-snapshot') return { mode: t };
  let m = /^offset:(\d+)@(\d+)$/.exec(t);
  if (m) return { mode: 'offset', partition: Number(m[1]), offset: BigInt(m[2]).toString() };
  m = /^time:(.+)$/.exec(t);
  if (m) {
    const ms = /^\d+$/.test(m[1]) ? Number(m[1]) : Date.parse(m[1]);
    if (Number.isFinite(ms) && ms >= 0) return { mode: 'time', timestampMs: ms };
  }
  throw new ReplistreamError(
    'CONFIG',
    `from: ${JSON.stringify(text)} is not one of committed, earliest, latest, latest-snapshot, offset:P@O, time:ISO8601`,
    { setting: 'from' },
  );
}

export interface DecodedRecord {
  offset: string;
  /** Record timestamp (ms since epoch, as kafkajs gives it). */
  timestamp: string;
  /** Size of the record value (wire format). */
  bytes: number;
  /** The record's events; empty with `deferDecoding` until `decodeRecord` is called. */
  events: ChangeEvent[];
  /** The record value, kept with `deferDecoding` (null once decoded, or for an empty record). */
  value: Buffer | null;
}

export interface DecodedBatch {
  topic: string;
  partition: number;
  /** The partition's high watermark when fetched (end offset: last offset + 1). */
  highWatermark: string;
  records: DecodedRecord[];
  /** Offset of the last record; commit `lastOffset + 1` once all of it is applied. */
  lastOffset: string;
}

export interface BatchContext {
  heartbeat(): Promise<void>;
  isRunning(): boolean;
  /** True when a seek made this batch obsolete: skip it. */
  isStale(): boolean;
  /** Pause this topic-partition; returns a function resuming it. */
  pause(): () => void;
}

export type BatchHandler = (batch: DecodedBatch, ctx: BatchContext) => Promise<void>;

export interface TopicPartitionOffset {
  topic: string;
  partition: number;
  offset: string;
}

export interface PartitionLag {
  topic: string;
  partition: number;
  /** Committed offset of the group, null without a commit. */
  committed: string | null;
  low: string;
  high: string;
  /** Records between the committed offset (or the log start) and the end. */
  lag: number;
}

export interface EventConsumerOptions {
  kafka: Kafka;
  registry: EventRegistry;
  groupId: string;
  topics: string[];
  from?: StartFrom;
  /** Needed for `latest-snapshot`. */
  positionsTopic?: string;
  logger?: Logger;
  sessionTimeoutMs?: number;
  /**
   * Default 300 ms. A member learns that the group rebalances from its next heartbeat; until then
   * it goes on applying the partitions it is about to give up, and their new owners apply what it
   * wrote meanwhile again (skipped as duplicates). Three appliers restarted together under 400
   * mixed commands/s, two runs each: 1,135 and 984 events skipped with 1 s, none with 300 ms.
   */
  heartbeatIntervalMs?: number;
  /** Max bytes fetched per partition per request (default 2 MB; at least one record anyway). */
  maxBytesPerPartition?: number;
  /** Partitions handled in parallel (default 1; each partition stays sequential). */
  partitionsConsumedConcurrently?: number;
  /** Called with this member's assignment after every (re)join. */
  onAssignment?: (assignment: Array<{ topic: string; partitions: number[] }>) => void;
  /**
   * Hand records over undecoded (`value` set, `events` empty); the handler decodes each with
   * `decodeRecord` when it needs its events. A record of small events decodes into thousands of
   * objects: decoded at fetch time, everything a paused partition holds lives long enough to be
   * promoted to V8's old generation, and the applier's heap was mostly queued events.
   */
  deferDecoding?: boolean;
  /** How the group shares partitions (assignment.ts; default `db`: a db's partitions stay together). */
  assignment?: AssignmentStrategy;
  /** What decoding may leave out, asked at each record (e.g. what the writer will not look at). */
  readOptions?: () => ReadOptions;
}

const key = (topic: string, partition: number) => `${topic}\u0000${partition}`;

export class EventConsumer {
  readonly groupId: string;
  readonly topics: string[];
  /** Resolves when stopped, rejects when the consumer crashed for good. */
  readonly done: Promise<void>;
  private readonly consumer: Consumer;
  private readonly kafka: Kafka;
  private readonly registry: EventRegistry;
  private readonly options: EventConsumerOptions;
  private readonly logger?: Logger;
  private readonly targets = new Map<string, TopicPartitionOffset>();
  private readonly watermarks = new Map<string, { topic: string; partition: number; highWatermark: string; position: string }>();
  private firstJoin = true;
  private fatal: Error | null = null;
  private running = false;
  private resolveDone!: () => void;
  private rejectDone!: (err: Error) => void;

  constructor(options: EventConsumerOptions) {
    if (!options.groupId) throw new ReplistreamError('CONFIG', 'group: a consumer group name is required', { setting: 'group' });
    if (!options.topics.length) throw new ReplistreamError('CONFIG', 'no topic to consume', { setting: 'dbs' });
    this.options = options;
    this.kafka = options.kafka;
    this.registry = options.registry;
    this.groupId = options.groupId;
    this.topics = [...options.topics];
    this.logger = options.logger;
    this.done = new Promise<void>((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
    this.done.catch(() => undefined); // observed through `done` by the caller
    this.consumer = this.kafka.consumer({
      groupId: options.groupId,
      sessionTimeout: options.sessionTimeoutMs ?? 10_000,
      heartbeatInterval: options.heartbeatIntervalMs ?? 300,
      maxBytesPerPartition: options.maxBytesPerPartition ?? 2 * 1024 * 1024,
      maxWaitTimeInMs: 100,
      // Partitions added to a topic (a cluster source's new master gets a range of its own) are
      // seen at the next metadata refresh, which then rebalances the group: 10 s, not kafkajs's 5 min.
      metadataMaxAge: 10_000,
      allowAutoTopicCreation: false,
      partitionAssigners: partitionAssigners(options.assignment ?? 'db'),
      retry: {
        restartOnFailure: async (err: Error) => {
          const root = rootCause(err);
          return !(root instanceof ReplistreamError && !root.retriable);
        },
      },
    });
  }

  /** Offsets the start position resolved to (empty for `committed` or a running group). */
  startOffsets(): TopicPartitionOffset[] {
    return [...this.targets.values()];
  }

  /** Resolve the start position, join the group and run `handler` until `stop()`. */
  async start(handler: BatchHandler): Promise<void> {
    if (this.running) throw new ReplistreamError('INTERNAL', 'EventConsumer already started');
    this.running = true;
    const from = this.options.from ?? { mode: 'committed' };
    const admin = this.kafka.admin();
    try {
      await admin.connect();
      if (from.mode !== 'committed') {
        await primeBrokerPool(admin, this.topics);
        const groups = await admin.describeGroups([this.groupId]);
        const state: string = groups.groups[0]?.state ?? 'Dead';
        if (state === 'Empty' || state === 'Dead' || state === '' || state === 'Unknown') {
          for (const t of await this.resolveTargets(admin, from)) this.targets.set(key(t.topic, t.partition), t);
        } else {
          this.logger?.warn({ group: this.groupId, state, from }, 'consumer group has running members: joining at its committed offsets, --from ignored');
        }
      }
    } catch (err) {
      this.running = false;
      throw err instanceof ReplistreamError ? err : kafkaError(`preparing consumer group ${this.groupId}`, err);
    } finally {
      await admin.disconnect().catch(() => undefined);
    }

    this.consumer.on(this.consumer.events.GROUP_JOIN, (ev) => this.onJoin(ev.payload.memberAssignment));
    this.consumer.on(this.consumer.events.CRASH, (ev) => {
      if (!ev.payload.restart) this.finish(this.fatal ?? ev.payload.error);
    });
    try {
      await this.consumer.connect();
      await this.consumer.subscribe({ topics: this.topics, fromBeginning: true });
      await this.consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: this.options.partitionsConsumedConcurrently ?? 1,
        eachBatch: (payload) => this.eachBatch(payload, handler),
      });
    } catch (err) {
      this.running = false;
      throw kafkaError(`starting consumer group ${this.groupId}`, err);
    }
  }

  private onJoin(assignment: Record<string, number[]>): void {
    const list = Object.entries(assignment).map(([topic, partitions]) => ({ topic, partitions: [...partitions].sort((a, b) => a - b) }));
    this.logger?.info({ group: this.groupId, assignment: list }, 'consumer group joined');
    if (this.firstJoin) {
      this.firstJoin = false;
      const mine = new Set(list.flatMap((a) => a.partitions.map((p) => key(a.topic, p))));
      for (const k of [...this.targets.keys()]) if (!mine.has(k)) this.targets.delete(k);
      const seeks = [...this.targets.values()];
      for (const t of seeks) this.consumer.seek({ topic: t.topic, partition: t.partition, offset: t.offset });
      if (seeks.length) {
        this.consumer.commitOffsets(seeks).catch((err) => this.logger?.warn({ err: (err as Error).message }, 'could not commit the start offsets yet'));
      }
    } else {
      this.targets.clear();
    }
    this.options.onAssignment?.(list);
  }

  private async eachBatch(payload: EachBatchPayload, handler: BatchHandler): Promise<void> {
    const { batch, resolveOffset, heartbeat, isRunning, isStale, pause } = payload;
    if (this.fatal || !isRunning() || isStale()) return;
    const { topic, partition } = batch;
    const k = key(topic, partition);
    const target = this.targets.get(k);
    if (target) {
      // onJoin seeked every target before the first fetch; a batch from before it is stale
      if (BigInt(batch.firstOffset() ?? '-1') < BigInt(target.offset)) {
        this.consumer.seek({ topic, partition, offset: target.offset });
        return;
      }
      this.targets.delete(k); // at the target, or after it when records there were deleted
    }
    try {
      const records: DecodedRecord[] = [];
      for (const m of batch.messages) {
        const value = m.value && m.value.length > 0 ? m.value : null;
        const record: DecodedRecord = { offset: m.offset, timestamp: m.timestamp, bytes: m.value?.length ?? 0, events: [], value };
        if (!this.options.deferDecoding) record.events = await this.decodeRecord(topic, partition, record);
        records.push(record);
      }
      const lastOffset = batch.lastOffset();
      this.watermarks.set(k, { topic, partition, highWatermark: batch.highWatermark, position: (BigInt(lastOffset) + 1n).toString() });
      if (records.length) {
        await handler({ topic, partition, highWatermark: batch.highWatermark, records, lastOffset: records[records.length - 1].offset }, { heartbeat, isRunning, isStale, pause });
      }
      if (isStale()) return;
      resolveOffset(lastOffset);
    } catch (err) {
      const root = rootCause(err);
      if (root instanceof ReplistreamError && !root.retriable) {
        this.fatal = root;
        this.logger?.error({ err: root.message, topic, partition }, 'stopping the consumer');
        void this.stop(root);
        return;
      }
      throw err;
    }
  }

  /** The events of a record (decoded once: its value is dropped). Errors name the record. */
  async decodeRecord(topic: string, partition: number, record: DecodedRecord): Promise<ChangeEvent[]> {
    const value = record.value;
    if (value === null) return record.events;
    try {
      record.events = await this.registry.decode(value, this.options.readOptions?.());
      record.value = null;
      return record.events;
    } catch (err) {
      const e = err instanceof ReplistreamError ? err : new ReplistreamError('PROTOCOL', String(err), { cause: err });
      throw new ReplistreamError(e.code, `${topic}[${partition}] offset ${record.offset}: ${e.message}`, {
        cause: err,
        retriable: e.retriable,
        details: { topic, partition, offset: record.offset },
      });
    }
  }

  /** Commit offsets (each the next offset to read) for this group. */
  async commit(offsets: TopicPartitionOffset[]): Promise<void> {
    if (!offsets.length) return;
    try {
      await this.consumer.commitOffsets(offsets.map((o) => ({ topic: o.topic, partition: o.partition, offset: o.offset })));
    } catch (err) {
      const e = kafkaError(`committing offsets of group ${this.groupId}`, err);
      throw new ReplistreamError(e.code, e.message, { cause: err, retriable: true, details: { offsets } });
    }
  }

  /** Move this member's read position (the batch being handled becomes stale: it is not resolved). */
  seek(topic: string, partition: number, offset: string): void {
    this.consumer.seek({ topic, partition, offset });
  }

  pause(topic: string, partitions?: number[]): void {
    this.consumer.pause([partitions ? { topic, partitions } : { topic }]);
  }

  resume(topic: string, partitions?: number[]): void {
    this.consumer.resume([partitions ? { topic, partitions } : { topic }]);
  }

  /** Per topic-partition: the high watermark seen at the last fetch, and the next offset to deliver. */
  highWatermarks(): Array<{ topic: string; partition: number; highWatermark: string; position: string }> {
    return [...this.watermarks.values()].map((w) => ({ ...w }));
  }

  /** Committed offsets against end offsets, asked from the brokers (for status and lag metrics). */
  async fetchLag(): Promise<PartitionLag[]> {
    return fetchGroupLag(this.kafka, this.groupId, this.topics);
  }

  /** Leave the group and disconnect; `done` resolves (or rejects with `error`). */
  async stop(error?: Error): Promise<void> {
    try {
      await this.consumer.disconnect();
    } catch (err) {
      this.logger?.warn({ err: (err as Error).message }, 'consumer disconnect failed');
    }
    this.finish(error ?? this.fatal ?? undefined);
  }

  private finish(error?: Error): void {
    this.running = false;
    if (error) this.rejectDone(error);
    else this.resolveDone();
  }

  private async resolveTargets(admin: Admin, from: StartFrom): Promise<TopicPartitionOffset[]> {
    const out: TopicPartitionOffset[] = [];
    const snapshots = from.mode === 'latest-snapshot' ? await this.readSnapshotIndex() : [];
    for (const topic of this.topics) {
      const ends = await admin.fetchTopicOffsets(topic);
      const byPartition = new Map(ends.map((e) => [e.partition, e]));
      switch (from.mode) {
        case 'earliest':
        case 'latest':
          for (const e of ends) out.push({ topic, partition: e.partition, offset: from.mode === 'earliest' ? e.low : e.high });
          break;
        case 'offset': {
          const e = byPartition.get(from.partition);
          if (!e) {
            throw new ReplistreamError('CONFIG', `from: topic ${topic} has no partition ${from.partition} (it has ${ends.length})`, { setting: 'from' });
          }
          if (BigInt(from.offset) < BigInt(e.low) || BigInt(from.offset) > BigInt(e.high)) {
            throw new ReplistreamError('CONFIG', `from: offset ${from.offset} is outside ${topic}[${from.partition}]'s retained range ${e.low}..${e.high}`, {
              setting: 'from',
            });
          }
          out.push({ topic, partition: from.partition, offset: from.offset });
          break;
        }
        case 'time':
          for (const e of await admin.fetchTopicOffsetsByTimestamp(topic, from.timestampMs)) out.push({ topic, partition: e.partition, offset: e.offset });
          break;
        case 'latest-snapshot': {
          const mine = snapshots.filter((s) => s.topic === topic);
          if (!mine.length) {
            throw new ReplistreamError('CONFIG', `from: no snapshot of ${topic} is recorded in ${this.options.positionsTopic}; use --from earliest`, { setting: 'from' });
          }
          const epoch = Math.max(...mine.map((s) => s.epoch));
          const newest = mine.filter((s) => s.epoch === epoch);
          const at = new Map(newest.map((s) => [s.partition, s.offset]));
          const missing = ends.filter((e) => !at.has(e.partition));
          if (missing.length) {
            const ts = Math.min(...newest.map((s) => s.timestampMs));
            for (const e of await admin.fetchTopicOffsetsByTimestamp(topic, ts)) if (!at.has(e.partition)) at.set(e.partition, e.offset);
          }
          for (const e of ends) {
            const offset = at.get(e.partition)!;
            if (BigInt(offset) < BigInt(e.low)) {
              throw new ReplistreamError(
                'CONFIG',
                `from: the latest snapshot of ${topic} (epoch ${epoch}, ${topic}[${e.partition}] offset ${offset}) is no longer retained (log starts at ${e.low}); use --from earliest`,
                { setting: 'from' },
              );
            }
            out.push({ topic, partition: e.partition, offset });
          }
          break;
        }
        case 'committed':
          break;
      }
    }
    return out;
  }

  private async readSnapshotIndex(): Promise<SnapshotIndexEntry[]> {
    if (!this.options.positionsTopic) throw new ReplistreamError('INTERNAL', 'latest-snapshot needs the positions topic');
    return splitPositions(await readCompactedTopic(this.kafka, this.options.positionsTopic, { logger: this.logger })).snapshots;
  }
}

/** Committed offsets of `groupId` against the end offsets of `topics`. */
export async function fetchGroupLag(kafka: Kafka, groupId: string, topics: string[]): Promise<PartitionLag[]> {
  const admin = kafka.admin();
  try {
    await admin.connect();
    await primeBrokerPool(admin, topics);
    const committed = await admin.fetchOffsets({ groupId, topics });
    const out: PartitionLag[] = [];
    for (const topic of topics) {
      const ends = await admin.fetchTopicOffsets(topic);
      const c = committed.find((x) => x.topic === topic)?.partitions ?? [];
      for (const e of ends) {
        const off = c.find((p) => p.partition === e.partition)?.offset ?? '-1';
        const has = BigInt(off) >= 0n;
        const from = has ? BigInt(off) : BigInt(e.low);
        out.push({ topic, partition: e.partition, committed: has ? off : null, low: e.low, high: e.high, lag: Number(BigInt(e.high) - from) });
      }
    }
    return out;
  } catch (err) {
    throw kafkaError(`reading the lag of group ${groupId}`, err);
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/**
 * A fresh kafkajs admin client knows only its seed brokers: its first group request (offsets,
 * describe) finds an empty broker pool and waits a retry (~300 ms) before it reads the metadata.
 * Reading the topics' metadata first fills the pool, so the group request goes out at once.
 */
async function primeBrokerPool(admin: ReturnType<Kafka['admin']>, topics: string[]): Promise<void> {
  await admin.fetchTopicMetadata({ topics });
}

function rootCause(err: unknown): unknown {
  let cur = err;
  for (let i = 0; i < 10; i++) {
    if (cur instanceof ReplistreamError) return cur;
    const next = (cur as { cause?: unknown; originalError?: unknown })?.cause ?? (cur as { originalError?: unknown })?.originalError;
    if (!next) return cur;
    cur = next;
  }
  return cur;
}
