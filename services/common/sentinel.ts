/**
 * Where a Sentinel-managed source's master is (the URL: sentinel-url.ts), asked of its Sentinels.
 */
import { Redis, type RedisOptions } from 'ioredis';
import { connections, isTlsSetupFailure, redisTls, tlsOptionsOf } from './connection-settings.js';
import { ReplistreamError } from './errors.js';
import type { Logger } from './log.js';
import { isSentinelUrl, masterUrl, parseSentinelUrl, type SentinelSource } from './sentinel-url.js';
import { isAuthRefusal, redisRefusal } from './redis-errors.js';

/**
 * The current master of the set, from the first Sentinel that knows it. When none answers with an
 * address, throws an error naming the Sentinels, the set and each one's problem: not retriable
 * when only a setting can fix it (every Sentinel refused the credentials, or the TLS handshake
 * failed for a certificate reason), else a retriable CONNECTION error.
 */
export async function resolveSentinelMaster(src: SentinelSource, timeoutMs = 2000): Promise<{ host: string; port: number }> {
  const problems: string[] = [];
  let auth = 0;
  let tls = 0;
  for (const s of src.sentinels) {
    const c = new Redis({ ...sentinelConnection(src, s.host), host: s.host, port: s.port, protocol: 2, lazyConnect: true, connectTimeout: timeoutMs, commandTimeout: timeoutMs, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false } as RedisOptions);
    // ioredis rejects connect() with "Connection is closed" after a failed TLS handshake: the
    // 'error' event carries the cause
    let cause: Error | null = null;
    c.on('error', (e: Error) => (cause ??= e));
    try {
      await c.connect();
      const reply = (await c.call('SENTINEL', 'get-master-addr-by-name', src.masterName)) as [string, string] | null;
      if (reply && reply.length === 2) return { host: reply[0], port: Number(reply[1]) };
      problems.push(`${s.host}:${s.port}: knows no master set ${JSON.stringify(src.masterName)}`);
    } catch (err) {
      const e = cause ?? err;
      if (isTlsSetupFailure(e)) tls++;
      if (isAuthRefusal((e as Error)?.message ?? '')) auth++;
      problems.push(`${s.host}:${s.port}: ${sentinelProblem(e)}`);
    } finally {
      c.disconnect();
    }
  }
  const all = src.sentinels.length;
  const why = `no Sentinel of ${src.display} gave the master of ${JSON.stringify(src.masterName)} (${problems.join('; ')})`;
  if (auth === all) throw new ReplistreamError('AUTH', `${why}; set source-sentinel-password (and source-sentinel-username) to the Sentinels' credentials`, { setting: 'source-sentinel-password' });
  if (tls === all) throw new ReplistreamError('CONNECTION', `${why}; check the source-tls-ca, source-tls-servername, source-tls-cert and source-tls-key settings`, { setting: 'source-tls-ca' });
  throw new ReplistreamError('CONNECTION', why, { retriable: true, setting: 'source' });
}

/** Credentials and TLS of a connection to one Sentinel (the source-sentinel-* and source-tls-* settings). */
function sentinelConnection(src: SentinelSource, host: string): RedisOptions {
  const { username, password } = connections().sentinel;
  return { username, password, ...(src.tls ? { tls: redisTls('source', host) } : {}) };
}

/** A Sentinel's refusal in words that name the setting to change (the password itself never). */
function sentinelProblem(err: unknown): string {
  const msg = (err as Error)?.message ?? String(err);
  const refusal = redisRefusal(msg);
  if (refusal === 'wrong credentials') return `${msg} (check source-sentinel-password and source-sentinel-username)`;
  if (refusal === 'password required') return `${msg} (this Sentinel requires a password: set source-sentinel-password)`;
  return msg;
}

/** ioredis options of a connection to the set's current master, followed across failovers. */
export function sentinelClientOptions(src: SentinelSource): RedisOptions {
  const { username, password } = connections().sentinel;
  // no host: ioredis connects to whichever server the Sentinels name, and Node checks the
  // certificate against that host (source-tls-servername, when set, overrides it)
  const tls = () => tlsOptionsOf(connections().redis.source);
  return {
    sentinels: src.sentinels,
    name: src.masterName,
    username: src.username ?? undefined,
    password: src.password ?? undefined,
    sentinelUsername: username,
    sentinelPassword: password,
    // rediss+sentinel: TLS to the Sentinels and to the master (the same source-tls-* material)
    ...(src.tls ? { enableTLSForSentinelMode: true, sentinelTLS: tls(), tls: tls() } : {}),
  };
}

/**
 * Listens to every Sentinel's `+switch-master` announcements for the set and calls `onSwitch`
 * with the new master's address. A failover is announced as soon as Sentinel has promoted the
 * replica; the old master's socket may still look alive long after (a frozen process, a cut
 * network send nothing), so the replication link moves when told, not when it times out. Each
 * Sentinel announces it (the same address): `onSwitch` must be idempotent. Subscriptions that
 * drop are made again; `close` ends them.
 */
export function watchSwitchMaster(src: SentinelSource, onSwitch: (addr: { host: string; port: number }) => void, log: Logger): { close(): void } {
  const clients = src.sentinels.map((s) => {
    const c = new Redis({
      ...sentinelConnection(src, s.host),
      host: s.host,
      port: s.port,
      protocol: 2,
      maxRetriesPerRequest: null,
      // a Sentinel that is down is asked again, less often; the others still announce meanwhile
      retryStrategy: (n: number) => Math.min(n * 500, 5000),
    } as RedisOptions);
    let warned = false;
    c.on('error', (err: Error) => {
      if (warned) return;
      warned = true;
      log.warn({ sentinel: `${s.host}:${s.port}`, err: sentinelProblem(err) }, 'cannot listen to a Sentinel for failovers (the link still follows a failover when its connection drops)');
    });
    c.on('ready', () => (warned = false));
    c.on('message', (channel: string, message: string) => {
      if (channel !== '+switch-master') return;
      // "<master-name> <old-ip> <old-port> <new-ip> <new-port>"
      const parts = message.split(' ');
      if (parts.length !== 5 || parts[0] !== src.masterName) return;
      const port = Number(parts[4]);
      if (!Number.isInteger(port) || port < 1 || port > 65535) return;
      log.warn({ sentinel: `${s.host}:${s.port}`, from: `${parts[1]}:${parts[2]}`, to: `${parts[3]}:${port}` }, 'Sentinel announced a new master (+switch-master)');
      onSwitch({ host: parts[3], port });
    });
    // queued until connected; ioredis subscribes again by itself after a reconnect
    c.subscribe('+switch-master').catch(() => undefined);
    return c;
  });
  return {
    close() {
      for (const c of clients) c.disconnect();
    },
  };
}

/**
 * The source's current master as a redis:// URL when `url` names a Sentinel-managed set, else
 * `url` itself: for commands that look at the source once (precheck, verify).
 */
export async function currentSourceUrl(url: string): Promise<string> {
  if (!isSentinelUrl(url)) return url;
  const src = parseSentinelUrl(url);
  return masterUrl(src, await resolveSentinelMaster(src));
}
