/**
 * Topic names and creation.
 *
 * - `<prefix>.<sourceId>.db<N>`: the change events of source database N (EventBatch records,
 *   delete retention).
 * - `<prefix>.<sourceId>.positions`: capture's durable positions and the snapshot index, one
 *   partition, `cleanup.policy=compact` (only the latest value per key matters).
 */
import type { Admin, ITopicConfig } from 'kafkajs';
import { ReplistreamError } from '../common/errors.js';
import { kafkaError } from './kafka.js';

const NAME_PART = /^[A-Za-z0-9_-]+$/;
const PREFIX = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

function checkParts(prefix: string, sourceId: string): void {
  if (!PREFIX.test(prefix)) {
    throw new ReplistreamError('CONFIG', `topic-prefix: ${JSON.stringify(prefix)} may hold only letters, digits, '.', '_' and '-'`, { setting: 'topic-prefix' });
  }
  if (!NAME_PART.test(sourceId)) {
    throw new ReplistreamError('CONFIG', `source-id: ${JSON.stringify(sourceId)} may hold only letters, digits, '_' and '-'`, { setting: 'source-id' });
  }
}

function checkLength(name: string): string {
  if (name.length > 249) throw new ReplistreamError('CONFIG', `topic name ${name.slice(0, 60)}… is longer than Kafka's 249 characters`, { setting: 'topic-prefix' });
  return name;
}

/** `<prefix>.<sourceId>.db<N>` */
export function topicName(prefix: string, sourceId: string, db: number): string {
  checkParts(prefix, sourceId);
  if (!Number.isInteger(db) || db < 0) throw new ReplistreamError('CONFIG', `dbs: ${db} is not a database number`, { setting: 'dbs' });
  return checkLength(`${prefix}.${sourceId}.db${db}`);
}

/** `<prefix>.<sourceId>.positions` */
export function positionsTopicName(prefix: string, sourceId: string): string {
  checkParts(prefix, sourceId);
  return checkLength(`${prefix}.${sourceId}.positions`);
}

/** The database number of an events topic name, or null when it is not one. */
export function parseTopicName(name: string): { prefix: string; sourceId: string; db: number } | null {
  const m = /^(.+)\.([A-Za-z0-9_-]+)\.db(\d+)$/.exec(name);
  return m ? { prefix: m[1], sourceId: m[2], db: Number(m[3]) } : null;
}

export interface TopicOptions {
  partitions: number;
  /** Default: the broker's `default.replication.factor`. */
  replicationFactor?: number;
  /** `retention.ms`; default: the broker's. -1 keeps forever. */
  retentionMs?: number;
  /** More topic configs (`cleanup.policy`, `min.insync.replicas` …). */
  configs?: Record<string, string>;
  /**
   * An existing topic with fewer partitions grows to `partitions` instead of being refused (a
   * cluster source with a master more than when the topics were made: one range more).
   */
  grow?: boolean;
}

export interface EnsureResult {
  created: string[];
  existing: string[];
}

const TRANSIENT_CREATE_ERRORS = new Set(['TOPIC_ALREADY_EXISTS', 'UNKNOWN_TOPIC_OR_PARTITION', 'LEADER_NOT_AVAILABLE', 'NOT_LEADER_FOR_PARTITION', 'NOT_CONTROLLER', 'REQUEST_TIMED_OUT']);

/**
 * Create the missing topics; check that existing ones have `partitions` partitions (a different
 * count would move keys between partitions and break per-key order: a CONFIG error naming the
 * actual count). Idempotent; safe against a concurrent creator.
 */
export async function ensureTopics(admin: Admin, names: string[], options: TopicOptions): Promise<EnsureResult> {
  if (!Number.isInteger(options.partitions) || options.partitions < 1) {
    throw new ReplistreamError('CONFIG', `partitions: ${options.partitions} must be a positive integer`, { setting: 'partitions' });
  }
  const wanted = [...new Set(names)];
  let existingNames: Set<string>;
  try {
    existingNames = new Set(await admin.listTopics());
  } catch (err) {
    throw kafkaError('listing topics', err);
  }
  const missing = wanted.filter((n) => !existingNames.has(n));
  const configEntries = Object.entries({
    ...(options.retentionMs === undefined ? {} : { 'retention.ms': String(options.retentionMs) }),
    ...options.configs,
  }).map(([name, value]) => ({ name, value }));
  if (missing.length) {
    const topics: ITopicConfig[] = missing.map((topic) => ({
      topic,
      numPartitions: options.partitions,
      ...(options.replicationFactor === undefined ? {} : { replicationFactor: options.replicationFactor }),
      configEntries,
    }));
    try {
      await admin.createTopics({ topics, waitForLeaders: true });
    } catch (err) {
      // A concurrent creator wins the race: fine, the partition check below still applies.
      // A new topic's partitions may briefly be unknown to the broker that answers (leaders not
      // elected yet): the metadata loop below waits for them.
      const inner = (err as { errors?: Array<{ type?: string }> }).errors ?? [];
      const cause = (err as { cause?: { type?: string } }).cause;
      const types = [(err as { type?: string }).type, cause?.type, ...inner.map((e) => e.type)];
      const tolerated = types.every((t) => t === undefined || TRANSIENT_CREATE_ERRORS.has(t)) && types.some((t) => t !== undefined);
      if (!tolerated) throw kafkaError(`creating topics ${missing.join(', ')}`, err);
    }
  }
  let metadata: Awaited<ReturnType<Admin['fetchTopicMetadata']>> | null = null;
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      metadata = await admin.fetchTopicMetadata({ topics: wanted });
      const leaderless = metadata.topics.some((t) => t.partitions.length === 0 || t.partitions.some((p) => p.leader < 0));
      if (!leaderless) break;
      if (Date.now() > deadline) throw new Error('partitions without a leader');
    } catch (err) {
      if (Date.now() > deadline) throw kafkaError(`reading metadata of ${wanted.join(', ')}`, err);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const short = options.grow ? metadata.topics.filter((t) => t.partitions.length < options.partitions) : [];
  if (short.length > 0) {
    try {
      await admin.createPartitions({ topicPartitions: short.map((t) => ({ topic: t.name, count: options.partitions })) });
      metadata = await admin.fetchTopicMetadata({ topics: wanted });
    } catch (err) {
      throw kafkaError(`growing ${short.map((t) => t.name).join(', ')} to ${options.partitions} partitions`, err);
    }
  }
  for (const t of metadata.topics) {
    if (t.partitions.length !== options.partitions) {
      throw new ReplistreamError(
        'CONFIG',
        `partitions: topic ${t.name} exists with ${t.partitions.length} partitions, not ${options.partitions}; use --partitions ${t.partitions.length} or another topic prefix`,
        { setting: 'partitions', details: { topic: t.name, actual: t.partitions.length, wanted: options.partitions } },
      );
    }
  }
  return { created: missing, existing: wanted.filter((n) => existingNames.has(n)) };
}

/** The compacted positions topic (1 partition). Checks `cleanup.policy` of an existing one. */
export async function ensurePositionsTopic(admin: Admin, name: string, options: { replicationFactor?: number } = {}): Promise<EnsureResult> {
  const res = await ensureTopics(admin, [name], {
    partitions: 1,
    replicationFactor: options.replicationFactor,
    configs: { 'cleanup.policy': 'compact', 'min.cleanable.dirty.ratio': '0.1', 'segment.ms': String(6 * 3600_000) },
  });
  if (res.existing.length) {
    try {
      const desc = await admin.describeConfigs({ resources: [{ type: 2 /* TOPIC */, name, configNames: ['cleanup.policy'] }], includeSynonyms: false });
      const policy = desc.resources[0]?.configEntries.find((c) => c.configName === 'cleanup.policy')?.configValue ?? '';
      if (!policy.split(',').includes('compact')) {
        throw new ReplistreamError('CONFIG', `topic-prefix: positions topic ${name} exists with cleanup.policy=${policy}, not compact`, { setting: 'topic-prefix' });
      }
    } catch (err) {
      if (err instanceof ReplistreamError) throw err;
      throw kafkaError(`describing topic ${name}`, err);
    }
  }
  return res;
}
