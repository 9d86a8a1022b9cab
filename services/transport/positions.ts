/**
 * The positions topic `<prefix>.<sourceId>.positions` (compacted, one partition): JSON values
 * keyed by strings. Two users:
 * - capture's durable positions (`EventProducer.writePosition(key, value)`; keys are the caller's);
 * - the snapshot index: whenever `EventProducer.send` has a record holding a `snapshot-begin`
 *   acknowledged, it writes `__snapshot-begin/<topic>/<partition>` = `SnapshotIndexEntry`, the
 *   exact offset of that record. `--from latest-snapshot` reads it instead of scanning topics
 *   backwards (Kafka cannot read backwards cheaply). If the capture dies between the ack and the
 *   index write, the index still names the previous snapshot: replaying from it is correct, only
 *   longer (later epochs supersede earlier ones).
 *
 * Reading it (`readCompactedTopic`) takes a throwaway consumer group (kafkajs has no manual
 * partition assignment) that reads from the beginning up to the end offsets taken at the start,
 * then deletes the group. Cost: one group join (the broker's `group.initial.rebalance.delay.ms`,
 * 3 s by default) plus the read.
 */
import { randomBytes } from 'node:crypto';
import type { Kafka } from 'kafkajs';
import { ReplistreamError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { kafkaError } from './kafka.js';

export const SNAPSHOT_INDEX_PREFIX = '__snapshot-begin/';

export function snapshotIndexKey(topic: string, partition: number): string {
  return `${SNAPSHOT_INDEX_PREFIX}${topic}/${partition}`;
}

/** Where the latest acknowledged `snapshot-begin` of one topic-partition is. */
export interface SnapshotIndexEntry {
  topic: string;
  partition: number;
  /** Offset of the record holding the snapshot-begin event. */
  offset: string;
  epoch: number;
  db: number;
  /** Record timestamp (CreateTime, ms): to place partitions without an entry. */
  timestampMs: number;
}

export type PositionValue = Record<string, unknown>;

/**
 * Folds one record of the compacted positions topic into `out` (latest value per key; an empty
 * value is a tombstone). False when the value is not JSON (the record is ignored).
 */
export function applyPositionRecord(out: Map<string, PositionValue>, key: Buffer, value: Buffer | null): boolean {
  const k = key.toString('utf8');
  if (value === null || value.length === 0) {
    out.delete(k);
    return true;
  }
  try {
    out.set(k, JSON.parse(value.toString('utf8')) as PositionValue);
    return true;
  } catch {
    return false;
  }
}

/**
 * Every key's latest JSON value in a compacted topic (tombstones remove keys), read from the
 * beginning to the end offsets of the moment of the call.
 */
export async function readCompactedTopic(
  kafka: Kafka,
  topic: string,
  options: { timeoutMs?: number; logger?: Logger } = {},
): Promise<Map<string, PositionValue>> {
  const out = new Map<string, PositionValue>();
  const admin = kafka.admin();
  try {
    await admin.connect();
    if (!(await admin.listTopics()).includes(topic)) return out; // never written yet
    const ends = await admin.fetchTopicOffsets(topic);
    const remaining = new Map<number, bigint>();
    for (const e of ends) if (BigInt(e.high) > BigInt(e.low)) remaining.set(e.partition, BigInt(e.high) - 1n);
    if (remaining.size === 0) return out;

    const groupId = `replistream-reader-${randomBytes(6).toString('hex')}`;
    const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 200, retry: { retries: 3 } });
    const timeoutMs = options.timeoutMs ?? 60_000;
    try {
      await consumer.connect();
      await consumer.subscribe({ topics: [topic], fromBeginning: true });
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new ReplistreamError('CONNECTION', `reading ${topic} took more than ${timeoutMs} ms`, { retriable: true, setting: 'kafka' })),
          timeoutMs,
        );
        consumer.on(consumer.events.CRASH, (ev) => {
          clearTimeout(timer);
          reject(ev.payload.error);
        });
        consumer
          .run({
            autoCommit: false,
            eachBatch: async ({ batch }) => {
              const last = remaining.get(batch.partition);
              if (last === undefined) return;
              for (const m of batch.messages) {
                if (BigInt(m.offset) > last) break;
                if (!m.key) continue;
                if (!applyPositionRecord(out, m.key, m.value)) {
                  options.logger?.warn({ topic, offset: m.offset, key: m.key.toString('utf8') }, 'ignoring a positions record that is not JSON');
                }
              }
              if (BigInt(batch.lastOffset()) >= last) remaining.delete(batch.partition);
              if (remaining.size === 0) {
                clearTimeout(timer);
                resolve();
              }
            },
          })
          .catch((err) => {
            clearTimeout(timer);
            reject(err);
          });
      });
    } finally {
      await consumer.disconnect().catch(() => undefined);
      await admin.deleteGroups([groupId]).catch(() => undefined);
    }
    return out;
  } catch (err) {
    throw kafkaError(`reading topic ${topic}`, err);
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/** Split what `readCompactedTopic` returns into the caller's positions and the snapshot index. */
export function splitPositions(all: Map<string, PositionValue>): { positions: Map<string, PositionValue>; snapshots: SnapshotIndexEntry[] } {
  const positions = new Map<string, PositionValue>();
  const snapshots: SnapshotIndexEntry[] = [];
  for (const [k, v] of all) {
    if (k.startsWith(SNAPSHOT_INDEX_PREFIX)) snapshots.push(v as unknown as SnapshotIndexEntry);
    else positions.set(k, v);
  }
  return { positions, snapshots };
}
