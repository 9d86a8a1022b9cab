/**
 * The Kafka client factory: the one place that builds a kafkajs `Kafka` (brokers, TLS, SASL,
 * retries, logging). kafkajs's own logger is routed to pino (warn level by default), and the
 * snappy codec is registered once for producers and consumers.
 */
import kafkajs from 'kafkajs';
import type { Kafka, KafkaConfig, LogEntry, RetryOptions, SASLOptions } from 'kafkajs';
import type { ConnectionOptions } from 'node:tls';
import { ReplistreamError } from '../common/errors.js';
import { probeTcp } from '../common/tcp-probe.js';
import { createLogger, type Logger } from '../common/log.js';
import { connections, tlsOptionsOf, type ConnectionSettings } from '../common/connection-settings.js';
import { SnappyCodec } from './snappy-codec.js';
import { installEncoderPatch } from './kafkajs-encoder.js';
import { installDecoderPatch } from './kafkajs-decoder.js';

const { Kafka: KafkaClient, logLevel, CompressionCodecs, CompressionTypes } = kafkajs;

// kafkajs ships gzip only; snappy is ours (snappy-codec.ts, native). Registered on import so
// every consumer can read snappy batches too.
(CompressionCodecs as Record<number, unknown>)[CompressionTypes.Snappy] = SnappyCodec;
// Fewer copies of every produce request (kafkajs-encoder.ts says why); a changed kafkajs is
// reported once and left as it is.
const encoderPatch = installEncoderPatch();
// A cheaper reader of fetched record batches (kafkajs-decoder.ts says why), likewise.
const decoderPatch = installDecoderPatch();
let encoderPatchReported = false;
let decoderPatchReported = false;

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

/**
 * kafkajs's `ssl` and `sasl` from the kafka-tls-* and kafka-sasl-* settings: TLS with the CA and
 * client certificate when given (the system's CAs otherwise), SASL PLAIN or SCRAM. The broker's
 * host name is verified against its certificate unless kafka-tls-servername names another.
 */
export function kafkaSecurityOf(k: ConnectionSettings['kafka']): { ssl?: ConnectionOptions; sasl?: SASLOptions } {
  const out: { ssl?: ConnectionOptions; sasl?: SASLOptions } = {};
  if (k.tls) out.ssl = tlsOptionsOf(k.tls);
  if (k.sasl) out.sasl = { mechanism: k.sasl.mechanism, username: k.sasl.username, password: k.sasl.password } as SASLOptions;
  return out;
}

/**
 * Broker answers kafkajs logs as errors on every response, although it retries the request
 * itself: a fresh topic's leader or a group coordinator still being elected. They are normal for a
 * few hundred milliseconds after a topic is created or a broker starts, so they go to debug; if
 * the retries run out, the request's own error reaches the service and is reported there.
 */
const RETRIED_BY_KAFKAJS =
  /does not host this topic-partition|no leader for this topic-partition|coordinator is loading|group coordinator is not available|not the correct coordinator|leader is not available|not the leader for that topic-partition/i;

export function createKafka(config: KafkaClientConfig): Kafka {
  const logger = config.logger ?? createLogger(undefined, 'kafka');
  if (encoderPatch.skipped && !encoderPatchReported) {
    encoderPatchReported = true;
    logger.warn({ reason: encoderPatch.skipped }, 'kafkajs request encoder left unpatched: produce requests are copied more');
  }
  if (decoderPatch.skipped && !decoderPatchReported) {
    decoderPatchReported = true;
    logger.warn({ reason: decoderPatch.skipped }, "kafkajs record-batch decoder left unpatched: fetched records cost more CPU");
  }
  const level = LEVELS[config.logLevel ?? 'warn'];
  const kafkaConfig: KafkaConfig = {
    brokers: parseBrokers(config.brokers),
    clientId: config.clientId ?? 'replistream',
    ...(config.ssl === undefined && config.sasl === undefined ? kafkaSecurityOf(connections().kafka) : { ssl: config.ssl, sasl: config.sasl }),
    connectionTimeout: config.connectionTimeoutMs ?? 3_000,
    requestTimeout: config.requestTimeoutMs ?? 30_000,
    retry: { ...DEFAULT_RETRY, ...config.retry },
    logLevel: level,
    logCreator: () => (entry: LogEntry) => {
      const { message, timestamp: _t, logger: _l, ...extra } = entry.log as { message: string; timestamp: string; logger?: string };
      const fields = { kafkajs: entry.namespace, ...extra };
      if (entry.level === logLevel.ERROR && entry.namespace === 'Connection' && RETRIED_BY_KAFKAJS.test(String((extra as { error?: unknown }).error))) {
        logger.debug(fields, message);
      } else if (entry.level === logLevel.ERROR) logger.error(fields, message);
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
    return new ReplistreamError('AUTH', `${msg} (check kafka-sasl-mechanism, kafka-sasl-username and kafka-sasl-password)`, { cause: err, setting: 'kafka-sasl-username' });
  }
  const cause = (e as { cause?: { code?: string } })?.cause;
  const code = (e as { code?: string })?.code ?? cause?.code ?? '';
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ERR_TLS|ERR_SSL/.test(code)) {
    return new ReplistreamError('CONNECTION', `${msg} (${code}: check kafka-tls-ca and kafka-tls-servername)`, { cause: err, setting: 'kafka-tls-ca' });
  }
  // after its retries kafkajs may hand back a KafkaJSNonRetriableError whose cause is the
  // connection error: look along the cause chain, and at what the socket said
  const names: string[] = [name];
  for (let c = (e as { cause?: unknown })?.cause, i = 0; c && i < 5; c = (c as { cause?: unknown }).cause, i++) names.push((c as { name?: string }).name ?? '');
  if (names.some((n) => /Connection|Timeout|NoBrokerAvailable|BrokerNotFound|NumberOfRetriesExceeded/.test(n)) || /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|Connection error/.test(e?.message ?? '')) {
    return new ReplistreamError('CONNECTION', `kafka: ${msg} (check the kafka setting and that its brokers are up)`, { cause: err, retriable: true, setting: 'kafka' });
  }
  return new ReplistreamError('INTERNAL', msg, { cause: err, retriable: e?.retriable ?? false });
}

/**
 * `work` bounded by `timeoutMs`. kafkajs retries an unreachable broker for minutes (8 retries of
 * up to 30 s each, per request); at start-up that is a service that neither works nor exits.
 * Past the bound this rejects with a CONNECTION error that names the brokers, the `kafka` setting
 * and what a plain TCP connection to each broker says (refused, no answer, or connected: then
 * the broker answers on TCP but not as Kafka, or advertises an address this host cannot reach).
 * A failure of `work` before the bound is returned as a kafka error naming the brokers too.
 */
export async function withinKafkaTimeout<T>(work: Promise<T>, brokers: string, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<'expired'>((resolve) => (timer = setTimeout(() => resolve('expired'), timeoutMs)));
  try {
    const r = await Promise.race([work.then((v) => ({ v })), expired]);
    if (r !== 'expired') return r.v;
  } catch (err) {
    const e = kafkaError(what, err);
    if (e.setting !== 'kafka' || e.message.includes(brokers)) throw e;
    throw new ReplistreamError(e.code, `${e.message.replace(/^kafka: /, `kafka ${brokers}: `)}; check the kafka setting`, { cause: e.cause, setting: 'kafka', retriable: false });
  } finally {
    clearTimeout(timer);
  }
  work.catch(() => undefined); // abandoned: its late failure is not news
  const probes = await Promise.all(
    parseBrokers(brokers).map(async (b) => {
      const i = b.lastIndexOf(':');
      const said = await probeTcp(b.slice(0, i), Number(b.slice(i + 1)));
      return `${b}: ${said === 'connects' ? 'TCP connects, but no Kafka answer' : said}`;
    }),
  );
  throw new ReplistreamError(
    'CONNECTION',
    `kafka: no answer from the brokers ${brokers} within ${timeoutMs / 1000} s while ${what} (${probes.join('; ')}); check the kafka setting, or raise kafka-timeout-ms`,
    { setting: 'kafka', retriable: false },
  );
}
