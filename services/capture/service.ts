/**
 * `replistream capture`: the capture service composed from its parts: the replica link and RDB
 * parser (services/replication), the pipeline (capture.ts), the Kafka transport
 * (services/transport), a heartbeat writer on the source, and the HTTP status endpoint.
 */
import { Redis } from 'ioredis';
import { Gauge, Counter } from 'prom-client';
import { ReplistreamError } from '../common/errors.js';
import { withStartupRetry } from '../common/retry.js';
import { redactUrl, type Logger } from '../common/log.js';
import { newMetricsRegistry, startHttpStatus } from '../common/http-status.js';
import type { ChangeEvent } from '../events/model.js';
import { createKafka } from '../transport/kafka.js';
import { EventProducer, type Compression } from '../transport/producer.js';
import { EventRegistry } from '../transport/registry.js';
import { ensurePositionsTopic, ensureTopics, positionsTopicName, topicName } from '../transport/topics.js';
import { CaptureService, type CapturePosition, type EventSink } from './capture.js';
import { KeyFilter } from './key-filter.js';

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
  maxRecordBytes: number;
  compression: Compression;
  httpPort: number;
}

const POSITION_KEY = 'capture';

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

export interface RunningCapture {
  service: CaptureService;
  stop(): Promise<void>;
}

export async function startCapture(s: CaptureSettings, log: Logger): Promise<RunningCapture> {
  log.info({ source: redactUrl(s.source), sourceId: s.sourceId, kafka: s.kafka }, 'capture starting');
  const admin = new Redis(s.source, { protocol: 2, lazyConnect: true, maxRetriesPerRequest: 2, enableOfflineQueue: true } as never);
  try {
    await admin.connect();
  } catch (err) {
    admin.disconnect();
    throw new ReplistreamError('CONNECTION', `cannot connect to the source ${redactUrl(s.source)}`, { cause: err, retriable: true, setting: 'source' });
  }
  const info = await admin.info('server').catch(() => '');
  if (/redis_mode:cluster/.test(info)) {
    admin.disconnect();
    throw new ReplistreamError('CONFIG', 'the source is a Redis Cluster: capture of clusters (one link per master) is not supported yet', { setting: 'source' });
  }
  const dbs = await sourceDatabases(admin, s.dbs);

  const kafka = createKafka({ brokers: s.kafka, clientId: `replistream-capture-${s.sourceId}`, logger: log });
  const registry = new EventRegistry({ url: s.registry, logger: log });
  const kadmin = kafka.admin();
  await kadmin.connect();
  const topics = new Map(dbs.map((db) => [db, topicName(s.topicPrefix, s.sourceId, db)]));
  await ensureTopics(kadmin, [...topics.values()], { partitions: s.partitions, replicationFactor: s.replicationFactor, retentionMs: s.retentionMs });
  const positionsTopic = positionsTopicName(s.topicPrefix, s.sourceId);
  await ensurePositionsTopic(kadmin, positionsTopic, { replicationFactor: s.replicationFactor });
  await kadmin.disconnect();
  for (const t of topics.values()) await registry.registerForTopic(t);

  const producer = new EventProducer({ kafka, registry, positionsTopic, maxRecordBytes: s.maxRecordBytes, compression: s.compression, logger: log });
  await producer.connect();

  const metrics = newMetricsRegistry('capture');
  const produced = new Counter({ name: 'replistream_capture_events_total', help: 'Change events produced', registers: [metrics] });
  const sink: EventSink = {
    async send(db: number, partition: number, events: ChangeEvent[]) {
      await producer.send(topics.get(db)!, partition, events);
      produced.inc(events.length);
    },
    async writePosition(p: CapturePosition) {
      await producer.writePosition(POSITION_KEY, p);
    },
    async readPosition() {
      const all = await producer.readLatestPositions();
      const p = all.get(POSITION_KEY) as CapturePosition | undefined;
      return p ?? null;
    },
  };

  const service = new CaptureService({
    link: { url: s.source },
    sink,
    partitions: s.partitions,
    dbs,
    filter: new KeyFilter({ dbs, include: s.include, exclude: s.exclude }),
    heartbeatKey: s.noHeartbeat ? null : s.heartbeatKey,
    logger: log,
  });
  new Gauge({ name: 'replistream_capture_source_offset', help: 'Source replication offset seen', registers: [metrics], collect() { this.set(service.stats.sourceOffset); } });
  new Gauge({ name: 'replistream_capture_durable_offset', help: 'Offset durable in Kafka', registers: [metrics], collect() { this.set(service.stats.durableOffset); } });
  new Gauge({ name: 'replistream_capture_epoch', help: 'Snapshot epoch', registers: [metrics], collect() { this.set(service.stats.epoch); } });

  await service.start();

  // Heartbeat: a key on the source set to the wall-clock time every second; it flows through the
  // stream like any write, so appliers measure end-to-end lag from it.
  let heartbeat: NodeJS.Timeout | null = null;
  if (!s.noHeartbeat) {
    await admin.select(dbs[0]);
    let warned = false;
    heartbeat = setInterval(() => {
      admin.set(s.heartbeatKey, String(Date.now())).catch((err: Error) => {
        if (!warned) log.warn({ err: err.message, key: s.heartbeatKey }, 'cannot write the heartbeat key on the source (lag will not be measured); use --no-heartbeat to silence');
        warned = true;
      });
    }, 1000);
  }

  const http = await startHttpStatus(s.httpPort, {
    status: () => ({ role: 'capture', sourceId: s.sourceId, source: redactUrl(s.source), ...service.stats, lagMs: service.stats.lastHeartbeatMs ? Date.now() - service.stats.lastHeartbeatMs : null }),
    ready: () => service.ready(),
  }, metrics);

  return {
    service,
    async stop() {
      if (heartbeat) clearInterval(heartbeat);
      await service.stop();
      await producer.disconnect().catch(() => {});
      admin.disconnect();
      http?.close();
    },
  };
}

/** CLI entry: runs until SIGTERM/SIGINT (exit 0) or a fatal error (exit 1). */
export async function runCapture(config: Record<string, unknown>, log: Logger): Promise<number> {
  const running = await withStartupRetry('capture', log, () => startCapture(config as unknown as CaptureSettings, log));
  const outcome = await new Promise<number>((resolve) => {
    const onSignal = (sig: string) => {
      log.info({ signal: sig }, 'stopping');
      resolve(0);
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
    running.service.failure().then((err) => {
      log.error({ err: err.message }, 'capture stopped on an error');
      resolve(1);
    });
  });
  await running.stop();
  return outcome;
}
