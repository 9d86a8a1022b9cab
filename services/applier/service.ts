/**
 * `replistream apply`: the applier service composed from the Kafka transport (services/transport),
 * the pipeline (applier.ts) and the destination writer (services/destination), plus the HTTP
 * status endpoint. One consumer group per destination; N instances of a group share its
 * partitions.
 */
import { Counter, Gauge } from 'prom-client';
import { ReplistreamError } from '../common/errors.js';
import { runUntilStopped, withStartupRetry } from '../common/retry.js';
import { newMetricsRegistry, startHttpStatus } from '../common/http-status.js';
import { redactUrl, type Logger } from '../common/log.js';
import { checkDestinationDbsAt, precheckDestination } from '../destination/precheck.js';
import { hasGroupProgress } from '../destination/progress.js';
import { DestinationWriter } from '../destination/writer.js';
import { EventConsumer, fetchGroupLag, parseStartFrom, type PartitionLag } from '../transport/consumer.js';
import { createKafka, withinKafkaTimeout, type Kafka } from '../transport/kafka.js';
import { EventRegistry } from '../transport/registry.js';
import { parseTopicName, positionsTopicName, topicName } from '../transport/topics.js';
import { Applier } from './applier.js';

export interface ApplySettings {
  destination: string;
  group: string;
  sourceId: string;
  kafka: string;
  registry: string;
  topicPrefix: string;
  dbMap?: Map<number, number>;
  conflictMode: 'intercept' | 'ignore';
  writeMode: 'restore' | 'commands';
  restoreFallback: boolean;
  from: string;
  refuseFlush: boolean;
  onCommandError: 'fail' | 'skip';
  httpPort: number;
  /** How long start-up waits for the Kafka brokers (default 30 s). */
  kafkaTimeoutMs?: number;
}

/** The source's db topics, waiting (with a log line) until capture has created at least one. */
async function discoverTopics(kafka: Kafka, s: ApplySettings, log: Logger, timeoutMs = 10 * 60_000): Promise<Map<number, string>> {
  const admin = kafka.admin();
  // bounded: kafkajs alone would retry an unreachable broker for minutes
  await withinKafkaTimeout(admin.connect(), s.kafka, s.kafkaTimeoutMs ?? 30_000, 'looking for the topics').catch(async (err) => {
    await admin.disconnect().catch(() => undefined);
    throw err;
  });
  const deadline = Date.now() + timeoutMs;
  let warned = false;
  let pollMs = 100;
  try {
    for (;;) {
      const names = await admin.listTopics();
      const found = new Map<number, string>();
      for (const n of names) {
        const t = parseTopicName(n);
        if (t && t.prefix === s.topicPrefix && t.sourceId === s.sourceId && (!s.dbMap || s.dbMap.has(t.db))) found.set(t.db, n);
      }
      if (found.size > 0) return found;
      if (Date.now() > deadline) {
        throw new ReplistreamError('CONFIG', `no topic ${topicName(s.topicPrefix, s.sourceId, 0)} (or another db) exists: is capture running for source-id ${s.sourceId}?`, { setting: 'source-id' });
      }
      if (!warned) log.info({ prefix: s.topicPrefix, sourceId: s.sourceId }, 'waiting for capture to create the topics');
      warned = true;
      // Capture creates the topics within a second of its start: look again soon, then less often.
      await new Promise((r) => setTimeout(r, pollMs));
      pollMs = Math.min(2000, pollMs * 2);
    }
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

export interface RunningApplier {
  applier: Applier;
  writer: DestinationWriter;
  consumer: EventConsumer;
  stop(): Promise<void>;
}

export async function startApplier(s: ApplySettings, log: Logger): Promise<RunningApplier> {
  log.info({ destination: redactUrl(s.destination), group: s.group, sourceId: s.sourceId }, 'applier starting');
  const kafka = createKafka({ brokers: s.kafka, clientId: `replistream-apply-${s.group}`, logger: log });
  const registry = new EventRegistry({ url: s.registry, logger: log });
  // Fail fast on an unreachable or auth-refusing destination, before waiting for topics.
  const positionKeyPrefix = `replistream:pos:${s.group}`;
  const hadProgress = await hasGroupProgress(s.destination, positionKeyPrefix);
  // db-map names destination dbs that exist (checked before waiting for topics when it is given)
  if (s.dbMap) await checkDestinationDbsAt(s.destination, [...s.dbMap.values()]);
  const topics = await discoverTopics(kafka, s, log);
  const dbMap = s.dbMap ?? new Map([...topics.keys()].map((db) => [db, db]));
  if (!s.dbMap) await checkDestinationDbsAt(s.destination, [...dbMap.values()]);

  // Intercept: a new group (nothing committed yet) refuses a destination holding keys.
  if (s.conflictMode === 'intercept') {
    const lag: PartitionLag[] = await fetchGroupLag(kafka, s.group, [...topics.values()]).catch(() => []);
    const isNew = lag.every((l) => l.committed === null) && !hadProgress;
    if (isNew) {
      try {
        await precheckDestination(s.destination, [...new Set(dbMap.values())], 'intercept');
      } catch (err) {
        // Another member of this group starting at the same moment may have written already: its
        // positions are stored in the transactions that write its keys, so they are there too.
        if (!(err instanceof ReplistreamError && err.code === 'PRECHECK') || !(await hasGroupProgress(s.destination, positionKeyPrefix))) throw err;
      }
    }
  }

  const writer = new DestinationWriter({
    url: s.destination,
    dbMap,
    writeMode: s.writeMode,
    allowRestoreFallback: s.restoreFallback,
    refuseFlush: s.refuseFlush,
    onUnknownCommand: s.onCommandError,
    positionKeyPrefix,
    logger: log,
  });
  await writer.start();

  const topicList = [...topics.values()];
  let applier: Applier | null = null;
  const consumer = new EventConsumer({
    kafka,
    registry,
    groupId: s.group,
    topics: topicList,
    from: parseStartFrom(s.from),
    positionsTopic: positionsTopicName(s.topicPrefix, s.sourceId),
    logger: log,
    // the handler only queues (the applier's loop writes): decoding is all it does per batch
    partitionsConsumedConcurrently: 4,
    // a fetch lands in the applier's queues whole: 1 MiB of small events is ~15k objects
    maxBytesPerPartition: 1024 * 1024,
    onAssignment: (assignment) => applier?.setAssignment(assignment),
  });
  applier = new Applier({
    writer,
    consumer,
    topicOfDb: (db) => topics.get(db) ?? null,
    cluster: writer.destination?.topology === 'cluster',
    logger: log,
  });
  const running = applier;
  running.start();

  const metrics = newMetricsRegistry('applier');
  new Gauge({ name: 'replistream_apply_lag_ms', help: 'Lag from the source heartbeat', registers: [metrics], collect() { this.set(writer.lagMs() ?? -1); } });
  new Gauge({ name: 'replistream_apply_events', help: 'Events applied', registers: [metrics], collect() { this.set(running.stats.events); } });
  new Counter({ name: 'replistream_apply_started_total', help: 'Applier starts', registers: [metrics] }).inc();
  let lastLag: PartitionLag[] = [];
  const lagTimer = setInterval(() => {
    consumer.fetchLag().then((l) => (lastLag = l), () => {});
  }, 5000);
  lagTimer.unref();

  let failed: Error | null = null;
  consumer.done.catch((err: Error) => (failed = err));
  await consumer.start((batch, ctx) => running.handle(batch, ctx));

  const http = await startHttpStatus(
    s.httpPort,
    {
      status: () => {
        const offsetLag = lastLag.reduce((n, l) => n + l.lag, 0);
        return {
          role: 'applier',
          group: s.group,
          destination: redactUrl(s.destination),
          state: failed ? 'failed' : 'synchronizing',
          lagMs: writer.lagMs(),
          offsetLag,
          applier: { ...running.stats },
          writer: { ...writer.stats },
          error: failed ? (failed as Error).message : null,
        };
      },
      ready: () => !failed,
    },
    metrics,
  );

  return {
    applier: running,
    writer,
    consumer,
    async stop() {
      clearInterval(lagTimer);
      await running.stop().catch(() => {});
      await consumer.stop().catch(() => {});
      await writer.close().catch(() => {});
      http?.close();
    },
  };
}

export async function runApplier(config: Record<string, unknown>, log: Logger): Promise<number> {
  const running = await withStartupRetry('applier', log, () => startApplier(config as unknown as ApplySettings, log));
  return runUntilStopped('applier', log, running.consumer.done, () => running.stop());
}
