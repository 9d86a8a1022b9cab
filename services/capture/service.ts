/**
 * `replistream capture`: the capture service composed from its parts: the replica link and RDB
 * parser (services/replication), the pipeline (capture.ts), the Kafka transport
 * (services/transport), a heartbeat writer on the source, and the HTTP status endpoint.
 */
import { EventEmitter } from 'node:events';
import { Cluster, Redis } from 'ioredis';
import { Counter, Gauge } from 'prom-client';
import { ReplistreamError } from '../common/errors.js';
import { probeTcp } from '../common/tcp-probe.js';
import { connections, isTlsSetupFailure, redisTlsForUrl } from '../common/connection-settings.js';
import { runUntilStopped, withStartupRetry } from '../common/retry.js';
import { redactUrl, type Logger } from '../common/log.js';
import { logWarmUp } from '../common/idle-slices.js';
import { holdWhilePrecheckFailed, ServiceStatus } from '../common/service-status.js';
import { resolveSentinelMaster, sentinelClientOptions, watchSwitchMaster } from '../common/sentinel.js';
import { isSentinelUrl, masterUrl, parseSentinelUrl } from '../common/sentinel-url.js';
import { LimitSettings, Throttle } from '../common/rate-limit.js';
import type { SealedRecord } from '../events/split.js';
import { createKafka, withinKafkaTimeout } from '../transport/kafka.js';
import type { Compression } from '../transport/producer.js';
import { ensurePositionsTopic, ensureTopics, positionsTopicName, topicName } from '../transport/topics.js';
import { CaptureService, combineSourceLinks, type CapturePosition, type CaptureStats, type EventSink } from './capture.js';
import { assignRanges, decodeOwners, EpochCoordinator, encodeOwners, mastersFromSlots, type ClusterMaster } from './cluster.js';
import { ClusterFollower, type FollowerStats } from './cluster-follow.js';
import { initialLayout, parseClusterNodes, ShardKeyFilter } from './topology.js';
import { KeyFilter } from './key-filter.js';
import type { SnapshotFormat } from './snapshot-events.js';
import { rehearseCommandPath } from './warm-up.js';
import { isAuthRefusal } from '../common/redis-errors.js';

export interface CaptureSettings {
  source: string;
  sourceId: string;
  kafka: string;
  registry: string;
  topicPrefix: string;
  partitions: number;
  replicationFactor: number;
  retentionMs: number;
  dbs?: number[];
  include: string[];
  exclude: string[];
  heartbeatKey: string;
  noHeartbeat: boolean;
  /** Units of the command-path rehearsal at start (warm-up.ts); 0: none. */
  warmUpUnits?: number;
  maxRecordBytes: number;
  compression: Compression;
  /** How long a produce request that is not full waits for more events (default 5 ms). */
  lingerMs?: number;
  httpPort: number;
  /** Bind address of the HTTP port (default loopback). */
  httpHost?: string;
  snapshotFormat?: SnapshotFormat;
  /** How long start-up waits for Kafka and the schema registry (default 30 s). */
  kafkaTimeoutMs?: number;
  /** How long the source link may be down before /readyz fails (default 30 s; it keeps retrying). */
  sourceDownGraceMs?: number;
  /** How long the source link may be down before the task fails (default 10 min; 0: retry forever). */
  sourceDownTimeoutMs?: number;
  /** Full-sync read limit in RDB bytes per second, over all masters (unset or 0: none); changeable through POST /limits. */
  snapshotMaxBytesPerSecond?: number;
}

const POSITION_KEY = 'capture';
/** Positions-topic key of a cluster epoch's slot owners (cluster.ts encodeOwners). */
const SLOT_OWNERS_KEY = 'cluster-slots';

/** Databases of the source: `--dbs`, else every database the server has (CONFIG GET databases). */
async function sourceDatabases(client: Redis, dbs?: number[]): Promise<number[]> {
  if (dbs) return dbs;
  try {
    const [, n] = (await client.config('GET', 'databases')) as string[];
    const count = Number(n);
    if (Number.isInteger(count) && count > 0) return Array.from({ length: count }, (_, i) => i);
  } catch {
    /* CONFIG may be renamed or forbidden on managed services */
  }
  return Array.from({ length: 16 }, (_, i) => i);
}

export interface CaptureView extends EventEmitter {
  readonly stats: CaptureStats;
  ready(): boolean;
  failure(): Promise<ReplistreamError>;
}

export interface RunningCapture {
  /** The pipeline (for a cluster source, a view over one pipeline per master). */
  service: CaptureView;
  /** Task state, progress and the HTTP port. */
  status: ServiceStatus;
  stop(): Promise<void>;
}

/** The replid of each range's stored position (`capture:<range>`), null for a range without one. */
function storedRangeReplids(stored: Map<string, Record<string, unknown>>): Array<string | null> {
  const out: Array<string | null> = [];
  for (const [key, p] of stored) {
    const m = /^capture:(\d+)$/.exec(key);
    if (m) out[Number(m[1])] = typeof p.replid === 'string' ? p.replid : null;
  }
  return Array.from(out, (id) => id ?? null);
}

/** The replication ids a server answers PSYNC for (master_replid, master_replid2); none when unreadable. */
async function replicationIds(url: string): Promise<string[]> {
  const c = new Redis(url, { protocol: 2, lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null, tls: redisTlsForUrl('source', url) } as never);
  c.on('error', () => undefined);
  try {
    await c.connect();
    const text = await c.info('replication');
    return [...text.matchAll(/^master_replid2?:([0-9a-f]{40})/gm)].map((m) => m[1]).filter((id) => !/^0+$/.test(id));
  } catch {
    return [];
  } finally {
    c.disconnect();
  }
}

/** Keys the source holds in `dbs` (INFO keyspace): the total a full sync announces. */
async function keyspaceKeys(client: Redis, dbs: number[]): Promise<number | null> {
  try {
    const text = await client.info('keyspace');
    let n = 0;
    for (const m of text.matchAll(/^db(\d+):keys=(\d+)/gm)) if (dbs.includes(Number(m[1]))) n += Number(m[2]);
    return n;
  } catch {
    return null; // INFO may be renamed on managed services: progress then goes by bytes only
  }
}

/**
 * `status`: pass one to keep the port (and its state) after a failed start, as the CLI does;
 * without it the start makes its own and closes it when the start fails.
 */
export async function startCapture(s: CaptureSettings, log: Logger, status?: ServiceStatus): Promise<RunningCapture> {
  const st = status ?? new ServiceStatus('capture', s.sourceId, log);
  try {
    await st.listen(s.httpPort, s.httpHost);
    st.task.to('prechecking');
    return await startCaptureParts(s, log, st);
  } catch (err) {
    if (!(err instanceof ReplistreamError && err.retriable)) st.startFailed(err, redactUrl(s.source));
    if (!status) await st.close();
    throw err;
  }
}

async function startCaptureParts(s: CaptureSettings, log: Logger, st: ServiceStatus): Promise<RunningCapture> {
  log.info({ source: redactUrl(s.source), sourceId: s.sourceId, kafka: s.kafka }, 'capture starting');
  // The stored position is read from Kafka while the source is inspected, and the producer's
  // modules (the encoder, the registry client) load meanwhile: only the position is needed before
  // the replication link starts.
  const kafka = createKafka({ brokers: s.kafka, clientId: `replistream-capture-${s.sourceId}`, logger: log });
  const positionsTopic = positionsTopicName(s.topicPrefix, s.sourceId);
  const transportModules = Promise.all([import('../transport/producer.js'), import('../transport/registry.js')]);
  transportModules.catch(() => undefined); // awaited below
  const kafkaTimeoutMs = s.kafkaTimeoutMs ?? 30_000;
  const storedRead = withinKafkaTimeout(
    transportModules.then(([{ readLatestPositions }]) => readLatestPositions(kafka, positionsTopic, log)),
    s.kafka,
    kafkaTimeoutMs,
    `reading the stored positions from ${positionsTopic}`,
  );
  storedRead.catch(() => undefined); // awaited below
  // A Sentinel-managed source: its Sentinels say where the master is, now and after a failover.
  const sentinel = isSentinelUrl(s.source) ? parseSentinelUrl(s.source) : null;
  const admin = sentinel
    ? new Redis({ ...sentinelClientOptions(sentinel), protocol: 2, lazyConnect: true, maxRetriesPerRequest: 2, enableOfflineQueue: true, retryStrategy: () => null, sentinelRetryStrategy: () => null } as never)
    : new Redis(s.source, { protocol: 2, lazyConnect: true, maxRetriesPerRequest: 2, enableOfflineQueue: true, retryStrategy: () => null, tls: redisTlsForUrl('source', s.source) } as never);
  // ioredis reports a refused AUTH as an 'error' event and rejects connect() with a generic
  // "Connection is closed": keep the event's message, it names the real cause.
  let lastError: Error | null = null;
  admin.on('error', (e: Error) => (lastError = e));
  try {
    await admin.connect();
  } catch (err) {
    admin.disconnect();
    // ioredis's Sentinel mode hides a refused handshake behind "All sentinels are unreachable …
    // Connection is closed": asking the Sentinels directly names the cause and the setting
    if (sentinel) await resolveSentinelMaster(sentinel);
    const msg = String((lastError as Error | null)?.message ?? (err as Error)?.message ?? err);
    if (isAuthRefusal(msg)) {
      throw new ReplistreamError('AUTH', `the source ${redactUrl(s.source)} refused the credentials: ${msg}`, { cause: err, setting: 'source' });
    }
    if (isTlsSetupFailure(lastError ?? err)) {
      throw new ReplistreamError('CONNECTION', `TLS handshake with the source ${redactUrl(s.source)} failed: ${msg}; check the source-tls-ca, source-tls-servername, source-tls-cert and source-tls-key settings`, {
        cause: err,
        setting: 'source-tls-ca',
      });
    }
    // TLS 1.3: a source that wants a client certificate may reset the connection before its alert arrives
    const hint = /^rediss:/i.test(s.source) && /ECONNRESET|Connection is closed/i.test(msg) ? '; if the source requires a client certificate, set source-tls-cert and source-tls-key' : '';
    throw new ReplistreamError('CONNECTION', `cannot connect to the source ${redactUrl(s.source)}: ${msg}${hint}`, { cause: err, retriable: true, setting: 'source' });
  }
  // Connected: from now on (heartbeats) reconnect after a cut instead of giving up.
  (admin.options as { retryStrategy?: (n: number) => number }).retryStrategy = (n) => Math.min(n * 200, 2000);
  if (sentinel) (admin.options as { sentinelRetryStrategy?: (n: number) => number }).sentinelRetryStrategy = (n) => Math.min(n * 200, 2000);
  const info = await admin.info('server').catch(() => '');
  const isCluster = /redis_mode:cluster/.test(info);
  // One replication stream per master: the source itself, or every master of a cluster.
  let masters: Array<{ url: string; index: number }>;
  let dbs: number[];
  let found: ClusterMaster[] = [];
  /** Ranges of partitions: one per master (a cluster keeps the ranges of masters that left). */
  let rangeCount = 1;
  if (isCluster) {
    if (s.dbs && !(s.dbs.length === 1 && s.dbs[0] === 0)) {
      admin.disconnect();
      throw new ReplistreamError('CONFIG', `dbs: the source ${redactUrl(s.source)} is a Redis Cluster, which has only database 0; remove dbs (or set it to 0)`, { setting: 'dbs' });
    }
    const urlOf = (m: ClusterMaster) => {
      const u = new URL(s.source);
      u.hostname = m.host;
      u.port = String(m.port);
      return u.toString();
    };
    found = mastersFromSlots((await admin.call('CLUSTER', 'SLOTS')) as unknown[]);
    // The range of partitions each master continues: the one its history wrote before (cluster.ts).
    // (A failure to read the positions is reported where they are awaited below.)
    const storedIds = await storedRead.then(storedRangeReplids, () => []);
    const histories = storedIds.length > 0 ? await Promise.all(found.map((m) => replicationIds(urlOf(m)))) : found.map(() => []);
    const ranges = assignRanges(histories, storedIds);
    found = found.map((m, i) => ({ ...m, index: ranges[i] }));
    rangeCount = Math.max(found.length, storedIds.length);
    masters = found.map((m) => ({ url: urlOf(m), index: m.index }));
    dbs = [0];
    log.info({ masters: masters.map((m) => redactUrl(m.url)) }, 'source is a cluster: one replication link per master');
  } else {
    masters = [{ url: sentinel ? masterUrl(sentinel, await resolveSentinelMaster(sentinel)) : s.source, index: 0 }];
    dbs = await sourceDatabases(admin, s.dbs);
  }

  const topics = new Map(dbs.map((db) => [db, topicName(s.topicPrefix, s.sourceId, db)]));
  const totalPartitions = s.partitions * rangeCount;
  let producer: InstanceType<Awaited<typeof transportModules>[0]['EventProducer']>;
  let registry: InstanceType<Awaited<typeof transportModules>[1]['EventRegistry']>;
  try {
    const [{ EventProducer }, { EventRegistry }] = await transportModules;
    registry = new EventRegistry({ url: s.registry, logger: log });
    producer = new EventProducer({ kafka, registry, positionsTopic, maxRecordBytes: s.maxRecordBytes, compression: s.compression, lingerMs: s.lingerMs, logger: log });
  } catch (err) {
    admin.disconnect();
    throw err;
  }

  // Start-up: only the stored position is needed before the replication link starts. Topics,
  // schema registration and the producer's connection are made meanwhile, all at once; the
  // pipeline's first write to Kafka waits for them (the link meanwhile holds at most its buffer of
  // the snapshot, then pauses the source's transfer), and startCapture fails as before if they do.
  // Each side is bounded by kafka-timeout-ms, and its error names its own setting.
  const kadmin = kafka.admin();
  const kafkaSide = withinKafkaTimeout(
    (async () => {
      await kadmin.connect();
      try {
        await Promise.all([
          ensureTopics(kadmin, [...topics.values()], { partitions: totalPartitions, replicationFactor: s.replicationFactor, retentionMs: s.retentionMs, grow: isCluster }),
          ensurePositionsTopic(kadmin, positionsTopic, { replicationFactor: s.replicationFactor }),
          producer.connect(),
        ]);
      } finally {
        await kadmin.disconnect().catch(() => undefined);
      }
    })(),
    s.kafka,
    kafkaTimeoutMs,
    'creating the topics and connecting the producer',
  );
  const registrySide = (async () => {
    const registered = await withinDeadline(Promise.all([...topics.values()].map((t) => registry.registerForTopic(t))).then(() => true), kafkaTimeoutMs, () => null);
    if (registered) return;
    const u = new URL(s.registry);
    const tcp = await probeTcp(u.hostname, Number(u.port || (u.protocol === 'https:' ? 443 : 80)));
    throw new ReplistreamError(
      'CONNECTION',
      `registry: no answer from the schema registry ${redactUrl(s.registry)} within ${kafkaTimeoutMs / 1000} s (${u.host}: ${tcp === 'connects' ? 'TCP connects, but no HTTP answer' : tcp}); check the registry setting, or raise kafka-timeout-ms`,
      { setting: 'registry' },
    );
  })();
  const transportStarted = performance.now();
  const transportReady = Promise.all([
    kafkaSide.then(() => Math.round(performance.now() - transportStarted)),
    registrySide.then(() => Math.round(performance.now() - transportStarted)),
  ]).then(([kafkaMs, registryMs]) => log.info({ kafkaMs, registryMs }, 'topics, producer and schemas ready'));
  transportReady.catch(() => undefined); // awaited below; failures are reported there
  let ready = false;
  const whenReady = async (): Promise<void> => {
    if (!ready) {
      await transportReady;
      ready = true;
    }
  };

  let stored: Map<string, Record<string, unknown>>;
  try {
    stored = await storedRead;
  } catch (err) {
    // not waiting for transportReady: with Kafka gone it would wait out kafkajs's retries
    await withinDeadline(producer.disconnect(), 1000, () => null).catch(() => undefined);
    admin.disconnect();
    throw err;
  }

  let produced = 0;
  const positionKey = (i: number) => (isCluster ? `${POSITION_KEY}:${i}` : POSITION_KEY);
  const sinkFor = (i: number): EventSink => ({
    async sendRecords(db: number, partition: number, records: SealedRecord[], options?: { bulk?: boolean }) {
      await whenReady();
      await producer.sendRecords(topics.get(db)!, partition, records, options);
      for (const r of records) produced += r.count;
    },
    async writePosition(p: CapturePosition) {
      await whenReady();
      await producer.writePosition(positionKey(i), p);
    },
    async readPosition() {
      return (stored.get(positionKey(i)) as CapturePosition | undefined) ?? null;
    },
  });

  const services: CaptureService[] = [];
  const shardFilters: ShardKeyFilter[] = [];
  // One limit for the whole source: a cluster's masters share it.
  const snapshotThrottle = new Throttle({ bytes: s.snapshotMaxBytesPerSecond || null });
  st.limits = new LimitSettings(snapshotThrottle, { snapshotMaxBytesPerSecond: 'bytes' });
  const coordinator = isCluster
    ? new EpochCoordinator(
        masters.map((m) => m.index),
        masters.map((m) => (stored.get(positionKey(m.index)) as CapturePosition | undefined) ?? null),
        log,
        (except) => masters.forEach((m, i) => m.index !== except && void services[i].forceFullSync()),
      )
    : null;
  const pipelineOf = (m: { url: string; index: number }): CaptureService => {
    // a cluster shard's filter also leaves out the slots it does not own (topology.ts)
    const filter = isCluster ? new ShardKeyFilter({ dbs, include: s.include, exclude: s.exclude }) : new KeyFilter({ dbs, include: s.include, exclude: s.exclude });
    if (filter instanceof ShardKeyFilter) shardFilters[m.index] = filter;
    return new CaptureService({
      link: { url: m.url, tls: connections().redis.source, downTimeoutMs: s.sourceDownTimeoutMs ?? 600_000, resolveEndpoint: sentinel ? () => resolveSentinelMaster(sentinel) : undefined },
      sourceDownGraceMs: s.sourceDownGraceMs,
      sink: sinkFor(m.index),
      partitions: s.partitions,
      partitionBase: m.index * s.partitions,
      dbs,
      filter,
      slotGuard: filter instanceof ShardKeyFilter ? filter : undefined,
      heartbeatKey: s.noHeartbeat ? null : s.heartbeatKey,
      snapshotFormat: s.snapshotFormat ?? 'restore',
      maxRecordBytes: s.maxRecordBytes,
      snapshotThrottle,
      logger: isCluster ? log.child({ master: m.index }) : log,
      nextEpoch: coordinator ? () => coordinator.next(m.index) : undefined,
      forceFull: coordinator ? !coordinator.resume : false,
    });
  };
  for (const m of masters) services.push(pipelineOf(m));
  const clusterView = isCluster ? new ClusterCaptureView(services) : null;
  const service: CaptureView = clusterView ?? services[0];

  // Task state and full-sync progress follow the pipelines: a FULLRESYNC starts the count from the
  // current totals (the stats are cumulative over the process's full syncs), +CONTINUE or the end
  // of the snapshot makes the task synchronizing.
  let base = { keys: 0, bytes: 0 };
  let inFullSync = false;
  const readKeyTotal = async () => {
    if (!isCluster) return keyspaceKeys(admin, dbs);
    const counts = await Promise.all(masters.map(async (m) => {
      const c = new Redis(m.url, { protocol: 2, lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null, tls: redisTlsForUrl('source', m.url) } as never);
      c.on('error', () => undefined);
      try {
        await c.connect();
        return await keyspaceKeys(c, dbs);
      } catch {
        return null;
      } finally {
        c.disconnect();
      }
    }));
    return counts.some((n) => n === null) ? null : counts.reduce((a: number, n) => a + (n as number), 0);
  };
  const onFullSync = () => {
    if (inFullSync) return;
    inFullSync = true;
    base = { keys: service.stats.snapshotKeys, bytes: service.stats.snapshotBytes };
    st.fullSyncStarted({ bytes: service.stats.snapshotBytesTotal });
    void readKeyTotal().then((keys) => inFullSync && st.progress.setTotals({ keys }));
  };
  const followPipeline = () => {
    const x = service.stats;
    if (x.state === 'full-sync') onFullSync();
    if (inFullSync) {
      st.progress.update(x.snapshotKeys - base.keys, x.snapshotBytes - base.bytes);
      if (x.snapshotBytesTotal !== null) st.progress.setTotals({ bytes: x.snapshotBytesTotal });
      if (x.state === 'synchronizing') {
        inFullSync = false;
        st.fullSyncEnded();
      }
    } else if (x.state === 'synchronizing') st.task.follow('synchronizing');
  };
  const followStatus = (svc: CaptureService) => {
    svc.on('fullresync', onFullSync);
    svc.on('continue', () => st.task.follow('synchronizing'));
    svc.on('snapshot-end', () => followPipeline()); // at once: bench and operators time the full sync by it
  };
  services.forEach(followStatus);
  const follower = setInterval(followPipeline, 250);
  follower.unref();
  void service.failure().then((e) => st.task.fail({ reason: e.message, code: e.code, ...(e.setting ? { setting: e.setting } : { server: redactUrl(s.source) }) }));

  // A cluster's masters, slots and failovers are followed during the task (cluster-follow.ts).
  let topologyFollower: ClusterFollower | null = null;
  if (clusterView) {
    const nodes = parseClusterNodes(String(await admin.call('CLUSTER', 'NODES')));
    const layout = initialLayout(found, nodes);
    const saveOwners = async (owners: Int16Array) => {
      await whenReady();
      await producer.writePosition(SLOT_OWNERS_KEY, { owners: encodeOwners(owners), updatedAt: Date.now() });
    };
    // Resuming: the slots as the epoch's snapshots saw them (they may have moved since). A new
    // epoch: the slots now, recorded before any of its positions (one producer keeps the order).
    const epochOwners = coordinator?.resume ? decodeOwners(stored.get(SLOT_OWNERS_KEY)) : null;
    if (!epochOwners) saveOwners(layout.owners).catch((err: Error) => log.warn({ err: err.message }, 'cannot record the cluster slot owners of the epoch'));
    const shardsByRange: CaptureService[] = [];
    masters.forEach((m, i) => (shardsByRange[m.index] = services[i]));
    topologyFollower = new ClusterFollower({
      sourceUrl: s.source, layout, epochOwners: epochOwners ?? layout.owners, saveOwners, shards: shardsByRange, filters: shardFilters, log,
      renewEpoch: () => coordinator?.renew(), onFatal: (e) => clusterView.fatal(e),
      // A master added, with no range of partitions free: the topics grow by one range for it, and
      // its pipeline is made here and joins the epoch the follower starts (its own full sync).
      addShard: async (url: string) => {
        const index = rangeCount;
        const count = (index + 1) * s.partitions;
        const ka = kafka.admin();
        await withinKafkaTimeout(
          (async () => {
            await ka.connect();
            try {
              await ensureTopics(ka, [...topics.values()], { partitions: count, replicationFactor: s.replicationFactor, retentionMs: s.retentionMs, grow: true });
            } finally {
              await ka.disconnect().catch(() => undefined);
            }
          })(),
          s.kafka,
          kafkaTimeoutMs,
          `growing the topics to ${count} partitions for a new master`,
        );
        rangeCount++;
        await producer.refreshMetadata();
        const svc = pipelineOf({ url, index });
        masters.push({ url, index });
        services.push(svc);
        coordinator?.add(index);
        clusterView.add(svc);
        followStatus(svc);
        log.warn({ master: index, partitions: `${index * s.partitions}-${count - 1}` }, 'cluster source: a new master gets a new range of partitions (the topics grew)');
        return { index, pipeline: svc, start: () => svc.start() };
      },
    });
    clusterView.topology = topologyFollower.stats;
  }
  for (const svc of services) await svc.start();
  topologyFollower?.start();
  // After the link started (its start is not delayed), in slices, none while a snapshot is under
  // way (it would take the snapshot's CPU). It ends early once real commands flow: from then on
  // they compile the path, and the rest of the rehearsal would only take CPU from them (a restart
  // on a backlog).
  let stopped = false;
  const warmUpUnits = s.warmUpUnits ?? 20_000;
  if (warmUpUnits > 0) {
    logWarmUp(
      log,
      rehearseCommandPath({ dbs, partitions: s.partitions, maxRecordBytes: s.maxRecordBytes, heartbeatKey: s.noHeartbeat ? null : s.heartbeatKey, log }, {
        units: warmUpUnits,
        stopped: () => stopped || services.some((svc) => svc.stats.commands > 0),
        busy: () => services.some((svc) => svc.snapshotUnderWay),
      }),
    );
  }
  try {
    await transportReady;
  } catch (err) {
    clearInterval(follower);
    snapshotThrottle.close();
    await withinDeadline(Promise.all(services.map((svc) => svc.stop())), 1000, () => null).catch(() => undefined);
    await withinDeadline(producer.disconnect(), 1000, () => null).catch(() => undefined);
    admin.disconnect();
    throw err;
  }
  // A Sentinel-managed source: the link moves as soon as a Sentinel announces the new master
  // (from here on: a start that failed above has nothing to close).
  const switchWatch = sentinel ? watchSwitchMaster(sentinel, (addr) => services[0].sourceMoved(addr), log) : null;

  const metrics = st.metrics;
  new Counter({ name: 'replistream_capture_events_total', help: 'Change events produced', registers: [metrics], collect() { this.reset(); this.inc(produced); } });
  new Gauge({ name: 'replistream_capture_source_offset', help: 'Source replication offset seen', registers: [metrics], collect() { this.set(service.stats.sourceOffset); } });
  new Gauge({ name: 'replistream_capture_durable_offset', help: 'Offset durable in Kafka', registers: [metrics], collect() { this.set(service.stats.durableOffset); } });
  new Gauge({ name: 'replistream_capture_epoch', help: 'Snapshot epoch', registers: [metrics], collect() { this.set(service.stats.epoch); } });
  new Counter({ name: 'replistream_capture_source_reconnects_total', help: 'Times the source replication link came back after an outage', registers: [metrics], collect() { this.reset(); this.inc(service.stats.sourceLink.reconnects); } });
  new Gauge({ name: 'replistream_capture_source_link_up', help: 'Source replication link up (1) or down (0)', registers: [metrics], collect() { this.set(service.stats.sourceLink.state === 'connected' ? 1 : 0); } });
  new Gauge({ name: 'replistream_capture_source_down_seconds', help: 'How long the source link has been down (0 while up)', registers: [metrics], collect() { const since = service.stats.sourceLink.since; this.set(since === null ? 0 : (Date.now() - since) / 1000); } });

  // Heartbeat: a key on the source set to the wall-clock time every second; it flows through the
  // stream like any write, so appliers measure end-to-end lag from it.
  let heartbeat: NodeJS.Timeout | null = null;
  const writer: Redis | Cluster = isCluster
    ? new Cluster([{ host: new URL(s.source).hostname, port: Number(new URL(s.source).port) }], {
        redisOptions: { username: decodeURIComponent(new URL(s.source).username) || undefined, password: decodeURIComponent(new URL(s.source).password) || undefined, protocol: 2, tls: redisTlsForUrl('source', s.source) } as never,
      })
    : admin;
  writer.on('error', () => undefined);
  if (!s.noHeartbeat) {
    if (!isCluster) await admin.select(dbs[0]);
    let warned = false;
    heartbeat = setInterval(() => {
      writer.set(s.heartbeatKey, String(Date.now())).catch((err: Error) => {
        if (!warned) log.warn({ err: err.message, key: s.heartbeatKey }, 'cannot write the heartbeat key on the source (lag will not be measured); use --no-heartbeat to silence');
        warned = true;
      });
    }, 1000);
  }

  const lagMs = () => (service.stats.lastHeartbeatMs ? Date.now() - service.stats.lastHeartbeatMs : null);
  st.details = () => {
    const { state: pipeline, ...stats } = service.stats;
    return {
      sourceId: s.sourceId,
      source: redactUrl(s.source),
      pipeline,
      ...stats,
      lagMs: lagMs(),
      backlogWhilePaused: backlogRisk,
      offsets: { epoch: stats.epoch, replid: stats.replid, 'source offset': stats.sourceOffset, 'durable in Kafka': stats.durableOffset },
    };
  };
  st.ready = () => service.ready();
  // Pause: the links stop reading the source and keep their position. The source meanwhile keeps
  // the writes in its output buffer for this replica and in its backlog: while paused, how far
  // behind the capture is, against repl-backlog-size, is checked and warned about before a
  // resume would need a new full sync.
  let backlogWatch: NodeJS.Timeout | null = null;
  let backlogRisk: string | null = null;
  const watchBacklog = async () => {
    if (isCluster) return; // one link per master: the admin connection sees one of them
    const text = await admin.info('replication').catch(() => '');
    const master = Number(/master_repl_offset:(\d+)/.exec(text)?.[1] ?? NaN);
    const size = Number(/repl_backlog_size:(\d+)/.exec(text)?.[1] ?? NaN);
    if (!Number.isFinite(master) || !Number.isFinite(size) || size === 0) return;
    const behind = master - service.stats.sourceOffset;
    const risk = behind > size ? 'lost' : behind > size / 2 ? 'at risk' : null;
    if (risk && risk !== backlogRisk) {
      log.warn({ behindBytes: behind, replBacklogSize: size }, risk === 'lost'
        ? 'paused capture is behind by more than the source repl-backlog-size: resuming needs a new full sync'
        : 'paused capture is behind by half the source repl-backlog-size: resume soon, or raise repl-backlog-size');
    }
    backlogRisk = risk;
  };
  st.control = async (action) => {
    if (action === 'pause') {
      // a held snapshot transfer makes the source drop the link after its repl-timeout
      if (st.task.state !== 'synchronizing') throw new Error(`cannot pause a capture that is ${st.task.state}: only a synchronizing capture pauses (a snapshot transfer held past the source's repl-timeout is dropped)`);
      for (const svc of services) svc.hold(true);
      st.task.pause();
      backlogRisk = null;
      backlogWatch = setInterval(() => void watchBacklog(), 2000);
      backlogWatch.unref();
      log.info('paused: the source is not read; its backlog keeps the position');
    } else {
      if (!st.task.resume()) throw new Error(`cannot resume a capture that is ${st.task.state}, not paused`);
      if (backlogWatch) clearInterval(backlogWatch);
      backlogWatch = null;
      backlogRisk = null;
      for (const svc of services) svc.hold(false);
      log.info('resumed');
    }
  };
  st.startTimers(lagMs);
  followPipeline();

  return {
    service,
    status: st,
    async stop() {
      stopped = true;
      clearInterval(follower);
      await topologyFollower?.stop();
      switchWatch?.close();
      if (backlogWatch) clearInterval(backlogWatch);
      if (heartbeat) clearInterval(heartbeat);
      snapshotThrottle.close(); // a chunk waiting for the limit is not waited for
      for (const svc of services) await svc.stop();
      await producer.disconnect().catch(() => {});
      admin.disconnect();
      if (writer !== admin) writer.disconnect();
      await st.close();
    },
  };
}

/** The status of a cluster capture: its masters' pipelines seen as one. */
class ClusterCaptureView extends EventEmitter {
  /** What the topology follower saw and did (failovers followed, epochs started). */
  topology: FollowerStats | null = null;
  private failedWith: ReplistreamError | null = null;

  constructor(private readonly parts: CaptureService[]) {
    super();
    for (const p of parts) this.listen(p);
  }

  private listen(p: CaptureService): void {
    p.on('failed', (e) => this.emit('failed', e));
    p.on('continue', (e) => this.emit('continue', e));
  }

  /** A pipeline made during the task (a master added); `parts` is the services list, already holding it. */
  add(p: CaptureService): void {
    if (!this.parts.includes(p)) this.parts.push(p);
    this.listen(p);
  }

  /** The task fails for a reason of the cluster as a whole (cluster-follow.ts). */
  fatal(e: ReplistreamError): void {
    if (this.failedWith) return;
    this.failedWith = e;
    this.emit('failed', e);
  }

  get stats(): CaptureStats & { masters: CaptureStats[]; topology: FollowerStats | null } {
    const all = this.parts.map((p) => p.stats);
    const sum = (k: 'sourceOffset' | 'durableOffset' | 'snapshotKeys' | 'snapshotBytes' | 'commands' | 'eventsProduced' | 'fullSyncs' | 'continues') => all.reduce((n, x) => n + x[k], 0);
    const state = this.failedWith || all.some((x) => x.state === 'failed') ? 'failed' : all.some((x) => x.state === 'full-sync' || x.state === 'starting') ? 'full-sync' : all[0].state;
    return {
      state, epoch: Math.max(...all.map((x) => x.epoch)), replid: null, sourceOffset: sum('sourceOffset'), durableOffset: sum('durableOffset'),
      snapshotKeys: sum('snapshotKeys'), snapshotBytes: sum('snapshotBytes'),
      snapshotBytesTotal: all.every((x) => x.snapshotBytesTotal !== null) ? all.reduce((n, x) => n + (x.snapshotBytesTotal as number), 0) : null,
      commands: sum('commands'), eventsProduced: sum('eventsProduced'),
      fullSyncs: sum('fullSyncs'), continues: sum('continues'), lastHeartbeatMs: Math.max(0, ...all.map((x) => x.lastHeartbeatMs ?? 0)) || null,
      error: this.failedWith?.message ?? all.find((x) => x.error)?.error ?? null, masters: all, topology: this.topology,
      linkStartedAt: all.every((x) => x.linkStartedAt !== null) ? Math.min(...all.map((x) => x.linkStartedAt as number)) : null,
      sourceLink: combineSourceLinks(all.map((x) => x.sourceLink)),
    };
  }
  ready(): boolean {
    return !this.failedWith && this.parts.every((p) => p.ready());
  }
  failure(): Promise<ReplistreamError> {
    const own = new Promise<ReplistreamError>((resolve) => {
      if (this.failedWith) resolve(this.failedWith);
      else this.once('failed', resolve);
    });
    return Promise.race([own, ...this.parts.map((p) => p.failure())]);
  }
}

/**
 * `work`, or past `ms` the error `onTimeout` makes (null: resolve undefined, for a bounded
 * clean-up). The abandoned work's late failure is ignored.
 */
async function withinDeadline<T>(work: Promise<T>, ms: number, onTimeout: () => Error | null): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  work.catch(() => undefined);
  try {
    return await Promise.race([
      work,
      new Promise<undefined>((resolve, reject) => {
        timer = setTimeout(() => {
          const e = onTimeout();
          if (e) reject(e);
          else resolve(undefined);
        }, ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** CLI entry: runs until SIGTERM/SIGINT (exit 0) or a fatal error (exit 1). */
export async function runCapture(config: Record<string, unknown>, log: Logger): Promise<number> {
  const s = config as unknown as CaptureSettings;
  const status = new ServiceStatus('capture', s.sourceId, log);
  let running: RunningCapture;
  try {
    running = await withStartupRetry('capture', log, () => startCapture(s, log, status));
  } catch (err) {
    status.startFailed(err, redactUrl(s.source));
    await holdWhilePrecheckFailed(status, log);
    await status.close();
    throw err;
  }
  return runUntilStopped('capture', log, running.service.failure(), () => running.stop());
}
