/**
 * Where a Sentinel-managed source's master is (the URL: sentinel-url.ts), asked of its Sentinels.
 */
import { Redis, type RedisOptions } from 'ioredis';
import { ReplistreamError } from './errors.js';
import { isSentinelUrl, masterUrl, parseSentinelUrl, type SentinelSource } from './sentinel-url.js';

/**
 * The current master of the set, from the first Sentinel that knows it. Throws a retriable
 * CONNECTION error naming the Sentinels and the set when none answers with an address.
 */
export async function resolveSentinelMaster(src: SentinelSource, timeoutMs = 2000): Promise<{ host: string; port: number }> {
  const problems: string[] = [];
  for (const s of src.sentinels) {
    const c = new Redis({ host: s.host, port: s.port, protocol: 2, lazyConnect: true, connectTimeout: timeoutMs, commandTimeout: timeoutMs, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false } as RedisOptions);
    c.on('error', () => undefined);
    try {
      await c.connect();
      const reply = (await c.call('SENTINEL', 'get-master-addr-by-name', src.masterName)) as [string, string] | null;
      if (reply && reply.length === 2) return { host: reply[0], port: Number(reply[1]) };
      problems.push(`${s.host}:${s.port}: knows no master set ${JSON.stringify(src.masterName)}`);
    } catch (err) {
      problems.push(`${s.host}:${s.port}: ${(err as Error).message}`);
    } finally {
      c.disconnect();
    }
  }
  throw new ReplistreamError('CONNECTION', `no Sentinel of ${src.display} gave the master of ${JSON.stringify(src.masterName)} (${problems.join('; ')})`, {
    retriable: true,
    setting: 'source',
  });
}

/** ioredis options of a connection to the set's current master, followed across failovers. */
export function sentinelClientOptions(src: SentinelSource): RedisOptions {
  return {
    sentinels: src.sentinels,
    name: src.masterName,
    username: src.username ?? undefined,
    password: src.password ?? undefined,
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
