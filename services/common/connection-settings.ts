/**
 * Secured connections: the TLS and credential settings for the Redis servers, the Kafka brokers
 * and the schema registry, read once and turned into what each client library takes.
 *
 * They are set once per process from the command's settings (cli.ts) and read where the clients
 * are made (transport/kafka.ts, transport/registry.ts, destination/connection.ts, the capture
 * service, precheck and verify). Those clients are made deep inside the services — a writer
 * connection per cluster master, the consumer's admin client, verify's two topologies — and all
 * of one process's clients reach the same servers with the same credentials: passing the options
 * through every constructor would repeat them at each call site, and one missed site would
 * quietly connect without the CA or the password.
 *
 * Certificate and key files are read here, at start, so a wrong path is a configuration error
 * that names its setting before anything connects. Their contents and the passwords are never
 * logged nor put in error messages.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import { ReplistreamError } from './errors.js';

export type RedisRole = 'source' | 'destination';
export type SaslMechanism = 'plain' | 'scram-sha-256' | 'scram-sha-512';

export interface TlsMaterial {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  servername?: string;
  /** Certificate verification off: only when asked for explicitly (a warning is logged). */
  insecure: boolean;
}

export interface SaslCredentials {
  mechanism: SaslMechanism;
  username: string;
  password: string;
}

export interface ConnectionSettings {
  redis: Record<RedisRole, TlsMaterial>;
  /**
   * How long a Redis server may stay silent before its connection counts as dead (ms): the
   * replication link with no byte from the source, a destination request with no reply. A
   * half-open connection (a partition, a dead NAT entry) sends neither FIN nor RST, and TCP
   * itself notices only after many minutes; past this the connection is dropped and made again
   * (the link by PSYNC, the writer from its stored positions).
   */
  redisTimeoutMs: Record<RedisRole, number>;
  kafka: { tls: TlsMaterial | null; sasl: SaslCredentials | null };
  registry: { username?: string; password?: string };
  /** The Sentinels' own credentials of a Sentinel-managed source (their requirepass / ACL user). */
  sentinel: { username?: string; password?: string };
}

/** source-timeout-ms and destination-timeout-ms when unset (options.ts shows the same in README). */
export const DEFAULT_REDIS_TIMEOUT_MS: Record<RedisRole, number> = { source: 60_000, destination: 30_000 };

const NONE: ConnectionSettings = {
  redis: { source: { insecure: false }, destination: { insecure: false } },
  redisTimeoutMs: { ...DEFAULT_REDIS_TIMEOUT_MS },
  kafka: { tls: null, sasl: null },
  registry: {},
  sentinel: {},
};

let current: ConnectionSettings = NONE;

function readPem(path: unknown, setting: string): Buffer | undefined {
  if (path === undefined || path === null || path === '') return undefined;
  try {
    return readFileSync(String(path));
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new ReplistreamError('CONFIG', `${setting}: cannot read the file ${JSON.stringify(String(path))} (${why})`, { setting, cause: err });
  }
}

function tlsMaterial(config: Record<string, unknown>, prefix: string): TlsMaterial {
  const c = (suffix: string) => config[`${prefix}Tls${suffix}`];
  const cert = readPem(c('Cert'), `${kebab(prefix)}-tls-cert`);
  const key = readPem(c('Key'), `${kebab(prefix)}-tls-key`);
  if (Boolean(cert) !== Boolean(key)) {
    const missing = cert ? 'key' : 'cert';
    throw new ReplistreamError('CONFIG', `${kebab(prefix)}-tls-${missing}: a client certificate needs both ${kebab(prefix)}-tls-cert and ${kebab(prefix)}-tls-key`, {
      setting: `${kebab(prefix)}-tls-${missing}`,
    });
  }
  return {
    ca: readPem(c('Ca'), `${kebab(prefix)}-tls-ca`),
    cert,
    key,
    servername: c('Servername') ? String(c('Servername')) : undefined,
    insecure: c('Insecure') === true,
  };
}

const kebab = (s: string) => s.replace(/[A-Z]/g, (ch) => `-${ch.toLowerCase()}`);
const hasAny = (m: TlsMaterial) => Boolean(m.ca || m.cert || m.servername || m.insecure);

/**
 * The connection settings of a command, from its resolved settings (camelCase keys, as
 * config/load.ts returns them). Throws a CONFIG error naming the setting for unreadable files
 * and for settings that contradict each other; `warn` hears about verification turned off.
 */
export function connectionSettingsFrom(config: Record<string, unknown>, warn: (message: string) => void = () => {}): ConnectionSettings {
  const redis = { source: tlsMaterial(config, 'source'), destination: tlsMaterial(config, 'destination') };
  for (const role of ['source', 'destination'] as const) {
    const url = config[role];
    if (typeof url === 'string' && /^redis(\+sentinel)?:\/\//i.test(url) && hasAny(redis[role])) {
      const set = ['ca', 'cert', 'servername', 'insecure'].find((k) => (k === 'insecure' ? redis[role].insecure : redis[role][k as 'ca']));
      const sentinel = /^redis\+sentinel/i.test(url);
      throw new ReplistreamError('CONFIG', `${role}-tls-${set}: set, but the ${role} URL is ${sentinel ? 'redis+sentinel' : 'redis'}:// (plain TCP); use ${sentinel ? 'rediss+sentinel' : 'rediss'}:// to connect over TLS`, {
        setting: role,
      });
    }
    if (redis[role].insecure) warn(`${role}-tls-insecure: the ${role}'s TLS certificate is NOT verified; anyone on the path can read and change the data`);
  }

  const kafkaTlsMaterial = tlsMaterial(config, 'kafka');
  const kafkaTls = config.kafkaTls === true || hasAny(kafkaTlsMaterial) ? kafkaTlsMaterial : null;
  if (kafkaTls?.insecure) warn('kafka-tls-insecure: the Kafka brokers\' TLS certificates are NOT verified');

  const mechanism = config.kafkaSaslMechanism as SaslMechanism | undefined;
  const username = config.kafkaSaslUsername as string | undefined;
  const password = config.kafkaSaslPassword as string | undefined;
  let sasl: SaslCredentials | null = null;
  if (mechanism) {
    if (!username) throw new ReplistreamError('CONFIG', `kafka-sasl-username: required with kafka-sasl-mechanism ${mechanism}`, { setting: 'kafka-sasl-username' });
    if (password === undefined) throw new ReplistreamError('CONFIG', `kafka-sasl-password: required with kafka-sasl-mechanism ${mechanism}`, { setting: 'kafka-sasl-password' });
    sasl = { mechanism, username, password };
  } else if (username || password !== undefined) {
    throw new ReplistreamError('CONFIG', 'kafka-sasl-mechanism: Kafka SASL credentials are set but no mechanism (plain, scram-sha-256 or scram-sha-512)', {
      setting: 'kafka-sasl-mechanism',
    });
  }

  const registry = { username: config.registryUsername as string | undefined, password: config.registryPassword as string | undefined };
  if (registry.password !== undefined && !registry.username) {
    throw new ReplistreamError('CONFIG', 'registry-username: required with registry-password', { setting: 'registry-username' });
  }
  const sentinel = { username: config.sourceSentinelUsername as string | undefined, password: config.sourceSentinelPassword as string | undefined };
  if (sentinel.username && sentinel.password === undefined) {
    throw new ReplistreamError('CONFIG', 'source-sentinel-password: required with source-sentinel-username', { setting: 'source-sentinel-password' });
  }
  if ((sentinel.username || sentinel.password !== undefined) && typeof config.source === 'string' && !/^rediss?\+sentinel:\/\//i.test(config.source)) {
    throw new ReplistreamError('CONFIG', `source-sentinel-${sentinel.password !== undefined ? 'password' : 'username'}: set, but the source is not a Sentinel-managed set (redis+sentinel:// or rediss+sentinel://)`, {
      setting: 'source',
    });
  }
  const timeout = (v: unknown, role: RedisRole) => (typeof v === 'number' && v > 0 ? v : DEFAULT_REDIS_TIMEOUT_MS[role]);
  const redisTimeoutMs = { source: timeout(config.sourceTimeoutMs, 'source'), destination: timeout(config.destinationTimeoutMs, 'destination') };
  return { redis, redisTimeoutMs, kafka: { tls: kafkaTls, sasl }, registry, sentinel };
}

/** Sets this process's connection settings (cli.ts, once the command's settings are resolved). */
export function configureConnections(config: Record<string, unknown>, warn?: (message: string) => void): ConnectionSettings {
  current = connectionSettingsFrom(config, warn);
  return current;
}

/** Back to no TLS material and no credentials (tests that configure a process more than once). */
export function resetConnections(): void {
  current = NONE;
}

export function connections(): ConnectionSettings {
  return current;
}

/**
 * A TLS handshake that failed for a reason only a setting can fix: the certificate is not signed
 * by a trusted CA, does not carry the name connected to, has expired, or the server wanted a
 * client certificate. Retrying cannot help.
 */
export function isTlsSetupFailure(err: unknown): boolean {
  const e = err as { code?: string; message?: string; cause?: { code?: string } } | undefined;
  const code = e?.code ?? e?.cause?.code ?? '';
  if (/^(DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|CERT_\w+|ERR_TLS_CERT_ALTNAME_INVALID|ERR_SSL_\w*(CERTIFICATE|UNKNOWN_CA)\w*)$/.test(code)) return true;
  return /self[- ]signed certificate|unable to verify the first certificate|unable to get (local )?issuer certificate|certificate has expired|Hostname\/IP does not match certificate|certificate required|unknown ca/i.test(e?.message ?? '');
}

/** Node TLS options from TLS material; the server name defaults to `host` unless it is an IP. */
export function tlsOptionsOf(m: TlsMaterial, host?: string): ConnectionOptions {
  const opts: ConnectionOptions = { rejectUnauthorized: !m.insecure };
  const servername = m.servername ?? (host && !isIP(host) ? host : undefined);
  if (servername) opts.servername = servername;
  if (m.ca) opts.ca = m.ca;
  if (m.cert) opts.cert = m.cert;
  if (m.key) opts.key = m.key;
  return opts;
}

/** TLS options for a `rediss://` URL of `role` (undefined for `redis://`: plain TCP). */
export function redisTlsForUrl(role: RedisRole, url: string): ConnectionOptions | undefined {
  if (!/^rediss:\/\//i.test(url)) return undefined;
  let host: string | undefined;
  try {
    host = new URL(url).hostname.replace(/^\[(.*)\]$/, '$1');
  } catch {
    host = undefined;
  }
  return tlsOptionsOf(current.redis[role], host);
}

/** TLS options for a Redis server of `role` at `host`. */
export function redisTls(role: RedisRole, host: string): ConnectionOptions {
  return tlsOptionsOf(current.redis[role], host);
}
