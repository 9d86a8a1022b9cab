/**
 * `replistream apply`: the applier service composed from the Kafka transport (services/transport),
 * the pipeline (applier.ts) and the destination writer (services/destination), plus the HTTP
 * status endpoint. One consumer group per destination; N instances of a group share its
 * partitions.
 */
import { Counter, Gauge } from 'prom-client';
import { ReplistreamError } from '../common/errors.js';
import { runUntilStopped, withStartupRetry } from '../common/retry.js';
import { redactUrl, type Logger } from '../common/log.js';
import { logWarmUp } from '../common/idle-slices.js';
import { holdWhilePrecheckFailed, ServiceStatus } from '../common/service-status.js';
import { checkDestinationDbsAt } from '../destination/precheck.js';
import { checkDestinationItems, PrecheckItems } from '../destination/precheck-items.js';
import { hasGroupProgress } from '../destination/progress.js';
import { DestinationWriter } from '../destination/writer.js';
import { rehearseApplyPath } from './warm-up.js';
import { SnapshotTracker } from './snapshot-tracker.js';
import { limitWrites } from '../destination/write-limits.js';
import type { AssignmentStrategy } from '../transport/assignment.js';
import { EventConsumer, fetchGroupLag, parseStartFrom, type PartitionLag } from '../transport/consumer.js';
import { createKafka, withinKafkaTimeout, type Kafka } from '../transport/kafka.js';
import { EventRegistry } from '../transport/registry.js';
import { parseTopicName, positionsTopicName, topicName } from '../transport/topics.js';
import { Applier } from './applier.js';
import { keepOriginKey, OriginTracker } from './origin-lag.js';
import { youngGenerationHint } from './young-generation.js';

export interface ApplySettings {
  destination: string;
  group: string;
  sourceId: string;
  /** Units of the command-path rehearsal at start (warm-up.ts); 0: none. */
  warmUpUnits?: number;
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
  /** How the group shares partitions (default db: a db's partitions in one member). */
  assignment?: AssignmentStrategy;
  httpPort: number;
  /** How long start-up waits for the Kafka brokers (default 30 s). */
  kafkaTimeoutMs?: number;
  /** Bind address of the HTTP port (default loopback). */
  httpHost?: string;
  /** A migration: completed (and the CLI exits 0) once the full sync is written and the stream caught up. */
  stopWhenCaughtUp?: boolean;
  /** Rate limits of the writes (unset or 0: none), changeable through POST /limits. */
  maxOpsPerSecond?: number;
  maxBytesPerSecond?: number;
}

/** Heartbeat lag under which an applier counts as caught up with its source. */
const CAUGHT_UP_MS = 2000;

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
  /** Task state, progress, pause/resume and the HTTP port. */
  status: ServiceStatus;
  /** Resolves when the task is completed (`stopWhenCaughtUp`); never otherwise. */
  completed: Promise<void>;
  stop(): Promise<void>;
}

/**
 * `status`: pass one to keep the port (and its state) after a failed start, as the CLI does;
 * without it the start makes its own and closes it when the start fails.
 */
export async function startApplier(s: ApplySettings, log: Logger, status?: ServiceStatus): Promise<RunningApplier> {
  const st = status ?? new ServiceStatus('applier', s.group, log);
  try {
    await st.listen(s.httpPort, s.httpHost);
    st.task.to('prechecking');
    return await startApplierParts(s, log, st);
  } catch (err) {
    if (!(err instanceof ReplistreamError && err.retriable)) st.startFailed(err, redactUrl(s.destination));
    if (!status) await st.close();
    throw err;
  }
}

async function startApplierParts(s: ApplySettings, log: Logger, st: ServiceStatus): Promise<RunningApplier> {
  log.info({ destination: redactUrl(s.destination), group: s.group, sourceId: s.sourceId }, 'applier starting');
  const kafka = createKafka({ brokers: s.kafka, clientId: `replistream-apply-${s.group}`, logger: log });
  const registry = new EventRegistry({ url: s.registry, logger: log });
  // Fail fast on an unreachable or auth-refusing destination, before waiting for topics.
  const positionKeyPrefix = `replistream:pos:${s.group}`;
  const hadProgress = await hasGroupProgress(s.destination, positionKeyPrefix);
  // db-map names destination dbs that exist (checked before waiting for topics when it is given)
  if (s.dbMap) await checkDestinationDbsAt(s.destination, [...s.dbMap.values()]);
  const topics = await discoverTopics(kafka, s, log);
  // not awaited: the schema look-ups run while the destination is checked and the group joins
  void registry.prime([...topics.values()]);
  const dbMap = s.dbMap ?? new Map([...topics.keys()].map((db) => [db, db]));
  if (!s.dbMap) await checkDestinationDbsAt(s.destination, [...dbMap.values()]);

  // A new group (nothing committed yet) runs the destination's precheck items, all of them, the
  // table shown on the status page; a failure (in intercept mode, a destination holding keys)
  // stops the start in precheck-failed.
  // (a destination with this group's positions is not new: no need to ask Kafka)
  const lag: PartitionLag[] = hadProgress ? [] : await fetchGroupLag(kafka, s.group, [...topics.values()]).catch(() => []);
  if (!hadProgress && lag.every((l) => l.committed === null)) {
    const items = new PrecheckItems();
    await checkDestinationItems(items, { destination: s.destination, conflictMode: s.conflictMode, dbMap, sourceDbs: [...dbMap.keys()] });
    st.precheck = items.list;
    for (const i of items.list) if (i.result === 'warn') log.warn({ item: i.item }, `precheck: ${i.detail}`);
    const err = items.firstError;
    // Another member of this group starting at the same moment may have written already: its
    // positions are stored in the transactions that write its keys, so they are there too.
    if (err && (!(err instanceof ReplistreamError && err.code === 'PRECHECK') || !(await hasGroupProgress(s.destination, positionKeyPrefix)))) throw err;
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
  const tracker = new SnapshotTracker(
    () => st.fullSyncStarted(),
    () => {
      st.progress.update(tracker.keys, tracker.bytes);
      st.fullSyncEnded();
      warmUp('after the snapshot');
    },
  );
  let applier: Applier | null = null;
  /**
   * Decoded records that held real command events, counted while a warm-up runs (it stops at the
   * first one after it began: see below).
   */
  let commandRecords = 0;
  let rehearsing = 0;
  const origins = new OriginTracker(); // end-to-end lag in a cascade (origin-lag.ts)
  // a key the writer restores from its payload is decoded without its typed value, and a command
  // it sends as it came is read straight into RESP
  const readOptions = () => ({ skipValuesUpToRdbVersion: writer.restoredPayloadsUpTo(), encodeCommands: writer.takesEncodedCommands() });
  const consumer = new EventConsumer({
    kafka,
    registry,
    groupId: s.group,
    topics: topicList,
    from: parseStartFrom(s.from),
    positionsTopic: positionsTopicName(s.topicPrefix, s.sourceId),
    logger: log,
    // the handler only queues records (the applier's loop decodes what it is about to write)
    partitionsConsumedConcurrently: 4,
    deferDecoding: true,
    readOptions,
    maxBytesPerPartition: 1024 * 1024,
    assignment: s.assignment ?? 'db',
    onAssignment: (assignment) => {
      tracker.assigned(assignment);
      applier?.setAssignment(assignment);
    },
  });
  // Pause (operator): every topic stops fetching, and the applier's own backpressure resumes
  // (a drained queue) wait for the operator's resume; the partitions the applier had paused stay
  // paused after it. The applier stops writing after the plan in flight: its position is kept.
  let paused = false;
  const backpressured = new Set<string>();
  const tp = (t: string, p: number) => `${p}\u0000${t}`;
  const applierConsumer: ConstructorParameters<typeof Applier>[0]['consumer'] = {
    commit: async (offsets) => {
      await consumer.commit(offsets);
      tracker.committed(offsets);
    },
    pause: (topic, partitions) => {
      for (const p of partitions ?? []) backpressured.add(tp(topic, p));
      consumer.pause(topic, partitions);
    },
    resume: (topic, partitions) => {
      for (const p of partitions ?? []) backpressured.delete(tp(topic, p));
      if (!paused) consumer.resume(topic, partitions);
    },
    seek: (topic, partition, offset) => consumer.seek(topic, partition, offset),
    stop: (err) => consumer.stop(err),
  };
  st.control = async (action) => {
    if (action === 'pause') {
      if (!st.task.pause()) throw new Error(`cannot pause an applier that is ${st.task.state}`);
      paused = true;
      applier?.pause();
      for (const t of topicList) consumer.pause(t);
      log.info({ group: s.group }, 'paused: no more events are read; the position is kept');
    } else {
      if (!st.task.resume()) throw new Error(`cannot resume an applier that is ${st.task.state}, not paused`);
      paused = false;
      applier?.resume();
      for (const t of topicList) consumer.resume(t);
      for (const key of backpressured) {
        const cut = key.indexOf('\u0000');
        consumer.pause(key.slice(cut + 1), [Number(key.slice(0, cut))]);
      }
      log.info({ group: s.group }, 'resumed');
    }
  };
  const limited = limitWrites(writer, s); // rate limits: each plan paid for before it is written
  st.limits = limited.settings;
  applier = new Applier({
    writer: limited.writer,
    ...(limited.maxEventsPerPlan ? { maxEventsPerPlan: limited.maxEventsPerPlan, strictPlanSize: true } : {}),
    consumer: applierConsumer,
    topicOfDb: (db) => topics.get(db) ?? null,
    cluster: writer.destination?.topology === 'cluster',
    explicitStarts: () => consumer.startOffsets(),
    logger: log,
    decode: (topic, partition, record) => consumer.decodeRecord(topic, partition, record),
    // full-sync progress follows the events as the applier decodes them, just before writing
    onDecoded: (batch) => {
      for (const r of batch.records) origins.observe(r.events);
      if (rehearsing > 0) for (const r of batch.records) if (r.events.some((e) => e.kind === 'command')) commandRecords++;
      const snapshot = tracker.received(batch);
      if (!snapshot && !tracker.active && st.task.state === 'prechecking') st.task.follow('synchronizing');
    },
  });
  const running = applier;
  running.start();

  const metrics = st.metrics;
  new Gauge({ name: 'replistream_apply_lag_ms', help: 'Lag from the source heartbeat', registers: [metrics], collect() { this.set(writer.lagMs() ?? -1); } });
  new Gauge({
    name: 'replistream_applier_origin_lag_seconds',
    help: 'In a cascade: lag from the first source (the origin), by its source id',
    labelNames: ['origin'],
    registers: [metrics],
    collect() {
      this.reset();
      const o = origins.report();
      if (o) this.set({ origin: o.sourceId }, o.ms / 1000);
    },
  });
  new Gauge({ name: 'replistream_apply_events', help: 'Events applied', registers: [metrics], collect() { this.set(running.stats.events); } });
  new Counter({ name: 'replistream_apply_started_total', help: 'Applier starts', registers: [metrics] }).inc();
  let lastLag: PartitionLag[] = [];
  // Nothing to read once the group has joined and no snapshot came: synchronizing.
  const readLag = () =>
    consumer.fetchLag().then((l) => {
      lastLag = l;
      if (st.task.state === 'prechecking' && l.reduce((n, x) => n + x.lag, 0) === 0) st.task.follow('synchronizing');
    }, () => {});
  const lagTimer = setInterval(readLag, 5000);
  lagTimer.unref();
  const progressTimer = setInterval(() => {
    if (!tracker.active) return;
    st.progress.update(tracker.keys, tracker.bytes);
    const r = tracker.records();
    st.progress.setRecords(r.done, r.total);
  }, 500);
  progressTimer.unref();

  let failed: Error | null = null;
  consumer.done.catch((err: Error) => {
    failed = err;
    const e = err instanceof ReplistreamError ? err : null;
    st.task.fail({ reason: err.message, ...(e ? { code: e.code } : {}), ...(e?.setting ? { setting: e.setting } : { server: redactUrl(s.destination) }) });
  });
  // The command path rehearsed while the group is joined (warm-up.ts), and again after every
  // snapshot the applier wrote: in slices, a db the writer maps, none while a snapshot is being
  // applied (it would take the snapshot's CPU). It ends early once real commands are decoded: from
  // then on they compile the path, and the rest of the rehearsal would only take CPU from them (a
  // restart on a backlog).
  let stopping = false;
  const rehearsedDb = [...dbMap.keys()][0];
  const warmUpUnits = s.warmUpUnits ?? 20_000;
  function warmUp(when: string): void {
    if (warmUpUnits <= 0 || rehearsedDb === undefined || stopping || failed !== null || rehearsing > 0) return;
    const commandsBefore = commandRecords;
    rehearsing++;
    const run = rehearseApplyPath(writer, readOptions, rehearsedDb, {
      units: warmUpUnits,
      stopped: () => stopping || failed !== null || commandRecords > commandsBefore,
      busy: () => tracker.active,
    });
    logWarmUp(log, run.then((r) => ({ ...r, when })).finally(() => rehearsing--));
  }
  warmUp('at start');
  try {
    await consumer.start(async (batch, ctx) => {
      // Paused: a batch fetched before the pause waits here, the group membership kept alive.
      while (paused && ctx.isRunning() && !ctx.isStale()) {
        await new Promise((r) => setTimeout(r, 500));
        await ctx.heartbeat().catch(() => undefined);
      }
      return running.handle(batch, ctx);
    });
  } catch (err) {
    // a start that fails here (--from naming a partition the topic lacks, Kafka gone) closes the
    // writer's connections and the applier's loop, each bounded: the CLI exits right after
    clearInterval(lagTimer);
    clearInterval(progressTimer);
    const bounded = (p: Promise<unknown>) => Promise.race([p.catch(() => undefined), new Promise((r) => setTimeout(r, 1000).unref())]);
    limited.close();
    await bounded(running.stop());
    await bounded(writer.close());
    throw err;
  }
  void readLag();
  const originKey = keepOriginKey({ destination: s.destination, sourceId: s.sourceId, latestHeartbeatMs: () => writer.latestHeartbeatMs(), tracker: origins, logger: log });

  st.details = () => ({
    group: s.group,
    sourceId: s.sourceId,
    destination: redactUrl(s.destination),
    lagMs: writer.lagMs(),
    // a cascade: the lag from its first source, null when nothing upstream reports one
    originLag: origins.report(),
    offsetLag: lastLag.reduce((n, l) => n + l.lag, 0),
    offsets: Object.fromEntries(lastLag.map((l) => [`${l.topic}[${l.partition}]`, `committed ${l.committed ?? 'none'} of ${l.high}`])),
    skipped: { ...writer.stats.skipped },
    applier: { ...running.stats },
    writer: { ...writer.stats },
    error: failed ? (failed as Error).message : null,
  });
  st.ready = () => !failed;
  st.startTimers(() => writer.lagMs());

  // Completed: synchronizing, and the heartbeat written within CAUGHT_UP_MS of the source's clock
  // (without heartbeats: no record left to read in any partition).
  let complete: () => void = () => undefined;
  const completed = new Promise<void>((r) => (complete = r));
  const caughtUpTimer = setInterval(() => {
    if (!s.stopWhenCaughtUp || st.task.state !== 'synchronizing') return;
    const lag = writer.lagMs();
    const caughtUp = lag !== null ? lag < CAUGHT_UP_MS : lastLag.length > 0 && lastLag.every((l) => l.lag === 0);
    if (caughtUp && st.task.to('completed', lag !== null ? `caught up: lag ${lag} ms` : 'caught up: no records left')) {
      log.info({ lagMs: lag }, 'caught up with the source: task completed (stop-when-caught-up)');
      complete();
    }
  }, 1000);
  caughtUpTimer.unref();

  return {
    completed,
    applier: running,
    writer,
    consumer,
    status: st,
    async stop() {
      stopping = true;
      clearInterval(lagTimer);
      clearInterval(progressTimer);
      clearInterval(caughtUpTimer);
      originKey.close();
      limited.close(); // a plan waiting for the limits is written now, not after its wait
      await running.stop().catch(() => {});
      await consumer.stop().catch(() => {});
      await writer.close().catch(() => {});
      await st.close();
    },
  };
}

export async function runApplier(config: Record<string, unknown>, log: Logger): Promise<number> {
  const s = config as unknown as ApplySettings;
  const hint = youngGenerationHint(process.execArgv, process.env.NODE_OPTIONS);
  if (hint) log.info(hint);
  const status = new ServiceStatus('applier', s.group, log);
  let running: RunningApplier;
  try {
    running = await withStartupRetry('applier', log, () => startApplier(s, log, status));
  } catch (err) {
    status.startFailed(err, redactUrl(s.destination));
    await holdWhilePrecheckFailed(status, log);
    await status.close();
    throw err;
  }
  return runUntilStopped('applier', log, Promise.race([running.consumer.done, running.completed]), () => running.stop());
}
