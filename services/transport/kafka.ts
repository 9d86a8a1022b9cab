/**
 * The Kafka client factory: the one place that builds a kafkajs `Kafka` (brokers, TLS, SASL,
 * retries, logging). kafkajs's own logger is routed to pino (warn level by default), and the
 * snappy codec is registered once for producers and consumers.
 */
import kafkajs from 'kafkajs';
import type { Kafka, KafkaConfig, LogEntry, RetryOptions, SASLOptions } from 'kafkajs';
import type { ConnectionOptions } from 'node:tls';
import SnappyCodec from 'kafkajs-snappy';
import { ReplistreamError } from '../common/errors.js';
import { createLogger, type Logger } from '../common/log.js';

const { Kafka: KafkaClient, logLevel, CompressionCodecs, CompressionTypes } = kafkajs;

// kafkajs ships gzip only; snappy comes from kafkajs-snappy (pure JS). Registered on import so
// every consumer can read snappy batches too.
(CompressionCodecs as Record<number, unknown>)[CompressionTypes.Snappy] = SnappyCodec;

export type { Kafka };

export interface KafkaClientConfig {
  /** `host:port` list, or one comma-separated string (`REPLISTREAM_KAFKA`). */
  brokers: string[] | string;
  clientId?: string;
  ssl?: boolean | ConnectionOptions;
  sasl?: SASLOptions;
  /** pino logger for kafkajs's messages (default: a `kafka` logger on stderr). */
  logger?: Logger;
  /** kafkajs log level routed to the logger: 'error' | 'warn' (default) | 'info' | 'debug'. */
  logLevel?: 'error' | 'warn' | 'info' | 'debug';
  /** Retries of every request (default: 8 retries, 300 ms doubling, ≤ 30 s each). */
  retry?: RetryOptions;
  connectionTimeoutMs?: number;
  requestTimeoutMs?: number;
}

export const DEFAULT_RETRY: RetryOptions = { initialRetryTime: 300, maxRetryTime: 30_000, factor: 0.2, multiplier: 2, retries: 8 };

const LEVELS = { error: logLevel.ERROR, warn: logLevel.WARN, info: logLevel.INFO, debug: logLevel.DEBUG } as const;

/** `"a:1, b:2"` → `["a:1", "b:2"]`, with a CONFIG error naming `kafka` when empty or malformed. */
export function parseBrokers(brokers: string[] | string): string[] {
  const list = (Array.isArray(brokers) ? brokers : brokers.split(','))
    .map((b) => b.trim().replace(/^(kafka|tcp|plaintext|ssl):\/\//i, ''))
    .filter(Boolean);
  if (list.length === 0) throw new ReplistreamError('CONFIG', 'kafka: no broker given (expected host:port[,host:port…])', { setting: 'kafka' });
  for (const b of list) {
    if (!/^[^\s:]+:\d{1,5}$/.test(b) && !/^\[[0-9a-f:]+\]:\d{1,5}$/i.test(b)) {
      throw new ReplistreamError('CONFIG', `kafka: broker address ${JSON.stringify(b)} is not host:port`, { setting: 'kafka' });
    }
  }
  return list;
}

export function createKafka(config: KafkaClientConfig): Kafka {
  const logger = config.logger ?? createLogger(undefined, 'kafka');
  const level = LEVELS[config.logLevel ?? 'warn'];
  const kafkaConfig: KafkaConfig = {
    brokers: parseBrokers(config.brokers),
    clientId: config.clientId ?? 'replistream',
    ssl: config.ssl,
    sasl: config.sasl,
    connectionTimeout: config.connectionTimeoutMs ?? 3_000,
    requestTimeout: config.requestTimeoutMs ?? 30_000,
    retry: { ...DEFAULT_RETRY, ...config.retry },
    logLevel: level,
    logCreator: () => (entry: LogEntry) => {
      const { message, timestamp: _t, logger: _l, ...extra } = entry.log as { message: string; timestamp: string; logger?: string };
      const fields = { kafkajs: entry.namespace, ...extra };
      if (entry.level === logLevel.ERROR) logger.error(fields, message);
      else if (entry.level === logLevel.WARN) logger.warn(fields, message);
      else if (entry.level === logLevel.INFO) logger.info(fields, message);
      else logger.debug(fields, message);
    },
  };
  return new KafkaClient(kafkaConfig);
}

/**
 * A kafkajs error as a ReplistreamError: CONNECTION (retriable) for unreachable brokers and
 * timeouts, AUTH for refused credentials, otherwise INTERNAL keeping kafkajs's `retriable` flag.
 */
export function kafkaError(what: string, err: unknown): ReplistreamError {
  if (err instanceof ReplistreamError) return err;
  const e = err as { name?: string; message?: string; retriable?: boolean; type?: string };
  const name = e?.name ?? '';
  const msg = `${what}: ${e?.message ?? String(err)}`;
  if (/SASLAuthentication/.test(name) || /SASL|authentication/i.test(e?.message ?? '')) {
    return new ReplistreamError('AUTH', msg, { cause: err, setting: 'kafka' });
  }
  if (/Connection|Timeout|NoBrokerAvailable|BrokerNotFound|NumberOfRetriesExceeded/.test(name)) {
    return new ReplistreamError('CONNECTION', msg, { cause: err, retriable: true, setting: 'kafka' });
  }
  return new ReplistreamError('INTERNAL', msg, { cause: err, retriable: e?.retriable ?? false });
}
