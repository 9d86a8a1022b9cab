/**
 * Sentinel-managed sources: `redis+sentinel://[user:password@]host:port[,host:port…]/master-name`,
 * or `rediss+sentinel://…` for TLS to the Sentinels and to the servers alike (with the
 * source-tls-* settings; a set whose Sentinels speak TLS has servers that do too, as Redis's
 * own `tls-replication` makes them share one configuration).
 *
 * The hosts are Sentinels; the master set's name is the path; the credentials are those of the
 * Redis servers (master and replicas). Sentinels with a password of their own (their
 * `requirepass`) take it from the source-sentinel-password setting (and source-sentinel-username
 * for an ACL user), not from the URL: the URL is shown, masked, in logs and errors, and a query
 * string would not be masked by readers of URLs that only know the userinfo part.
 *
 * Capture asks the Sentinels which server is the master (SENTINEL get-master-addr-by-name) before
 * every attempt of its replication link, and listens to their `+switch-master` announcements, so
 * after a failover the link goes to the promoted replica (even while the old master's socket
 * still looks alive: a frozen or cut-off master sends no FIN), which continues the stream by PSYNC
 * with the old replication id when it holds it (services/replication/link/). The admin connection
 * (heartbeat, INFO) uses ioredis's own Sentinel support, which follows failovers too.
 */
import { ReplistreamError } from './errors.js';

export interface SentinelSource {
  sentinels: Array<{ host: string; port: number }>;
  masterName: string;
  username: string | null;
  password: string | null;
  /** rediss+sentinel: TLS to the Sentinels and the servers. */
  tls: boolean;
  /** The URL as given, credentials masked. */
  display: string;
}

const SCHEME = /^rediss?\+sentinel:\/\//i;
const EXAMPLE = 'e.g. redis+sentinel://user:password@sentinel-1:26379,sentinel-2:26379/mymaster (rediss+sentinel:// for TLS)';

export function isSentinelUrl(url: string): boolean {
  return SCHEME.test(url);
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** Parses a Sentinel URL; the problem in words when it is not one (null when it is). */
export function sentinelUrlProblem(url: string): string | null {
  try {
    parseSentinelUrl(url);
    return null;
  } catch (err) {
    return (err as Error).message.replace(/^source: /, '');
  }
}

export function parseSentinelUrl(url: string): SentinelSource {
  const bad = (why: string) => new ReplistreamError('CONFIG', `source: ${why}, ${EXAMPLE}`, { setting: 'source' });
  if (!isSentinelUrl(url)) throw bad('a Sentinel URL starts with redis+sentinel:// or rediss+sentinel://');
  const tls = /^rediss/i.test(url);
  // A query would be the natural place for options, and for the Sentinels' password in other
  // tools: refuse it rather than ignore it (a password given there would be dropped silently).
  if (/^[^?#]*\?/.test(url)) throw bad('options in a query (?…) are not read; the Sentinels\' password is the source-sentinel-password setting');
  const rest = url.replace(SCHEME, '').replace(/[?#].*$/, '');
  const slash = rest.indexOf('/', rest.lastIndexOf('@') + 1);
  if (slash < 0) throw bad('the master set name is missing (the path)');
  const authority = rest.slice(0, slash);
  const masterName = decode(rest.slice(slash + 1));
  if (!masterName || masterName.includes('/')) throw bad('the path must be the master set name');
  const at = authority.lastIndexOf('@');
  const credentials = at >= 0 ? authority.slice(0, at) : '';
  const hosts = at >= 0 ? authority.slice(at + 1) : authority;
  let username: string | null = null;
  let password: string | null = null;
  if (credentials) {
    const colon = credentials.indexOf(':');
    username = colon >= 0 ? decode(credentials.slice(0, colon)) || null : decode(credentials) || null;
    password = colon >= 0 ? decode(credentials.slice(colon + 1)) : null;
    if (username && !password) throw bad('a user name needs a password');
  }
  const sentinels = hosts.split(',').map((h) => {
    const m = /^(\[[^\]]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(h.trim());
    if (!m) throw bad(`${JSON.stringify(h)} is not host:port`);
    const port = m[2] ? Number(m[2]) : 26379;
    if (port < 1 || port > 65535) throw bad(`the port of ${m[1]} is not from 1 to 65535`);
    return { host: m[1].replace(/^\[(.*)\]$/, '$1'), port };
  });
  if (sentinels.length === 0) throw bad('no Sentinel given');
  const display = `${tls ? 'rediss' : 'redis'}+sentinel://${credentials ? '***@' : ''}${hosts}/${masterName}`;
  return { sentinels, masterName, username, password, tls, display };
}

/** A redis:// (rediss:// with TLS) URL of the master at `addr`, with the source's credentials. */
export function masterUrl(src: SentinelSource, addr: { host: string; port: number }): string {
  const u = new URL(`${src.tls ? 'rediss' : 'redis'}://placeholder`);
  u.hostname = addr.host.includes(':') ? `[${addr.host}]` : addr.host;
  u.port = String(addr.port);
  if (src.username) u.username = encodeURIComponent(src.username);
  if (src.password) u.password = encodeURIComponent(src.password);
  return u.toString();
}
