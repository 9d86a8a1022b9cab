/**
 * Where the source is and how to reach it: its URL (host, port, TLS, credentials), the address it
 * moves to after a failover, and the TCP or TLS socket opened to it.
 */
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { parseRedisUrl as parseUrlParts } from '../../common/redis-url.js';
import { redactUrl, type Logger } from '../../common/log.js';
import type { ReplicaLinkTlsOptions } from './link-types.js';

export interface Endpoint {
  host: string;
  port: number;
  tls: boolean;
  username: string | null;
  password: string | null;
  safeUrl: string;
}

/** Parses a source URL; throws ReplistreamError('CONFIG', setting 'source'). */
export function parseRedisUrl(url: string): Endpoint {
  return { ...parseUrlParts(url, 'source'), safeUrl: redactUrl(url) };
}

/** Points `ep` at the source's new address (a failover); scheme and credentials stay, `safeUrl` follows. */
export function moveEndpoint(ep: Endpoint, host: string, port: number, log: Logger): void {
  log.warn({ from: `${ep.host}:${ep.port}`, to: `${host}:${port}` }, 'the source moved (failover): following it');
  ep.host = host;
  ep.port = port;
  const u = new URL(`redis://${host.includes(':') ? `[${host}]` : host}:${port}`);
  ep.safeUrl = `${ep.tls ? 'rediss' : 'redis'}://${ep.username || ep.password ? '***@' : ''}${u.host}`;
}

/** Asks `resolve` where the source is and moves `ep` there; keeps the last known address when it cannot say. */
export async function locateSource(
  ep: Endpoint,
  resolve: (() => Promise<{ host: string; port: number }>) | undefined,
  log: Logger,
): Promise<void> {
  if (!resolve) return;
  try {
    const { host, port } = await resolve();
    if (host === ep.host && port === ep.port) return;
    moveEndpoint(ep, host, port, log);
  } catch (err) {
    log.warn({ err: (err as Error).message, at: `${ep.host}:${ep.port}` }, 'cannot tell where the source is now: trying its last address');
  }
}

/** Opens a TCP connection to `ep`, or a TLS one for `rediss://`. */
export function openSocket(ep: Endpoint, tlsOpts: ReplicaLinkTlsOptions): Socket {
  if (ep.tls) {
    return tlsConnect({
      host: ep.host,
      port: ep.port,
      servername: tlsOpts.servername ?? (isIP(ep.host) ? undefined : ep.host),
      ca: tlsOpts.ca,
      cert: tlsOpts.cert,
      key: tlsOpts.key,
      rejectUnauthorized: !tlsOpts.insecure,
    });
  }
  return netConnect({ host: ep.host, port: ep.port });
}
