/**
 * What is wrong with a Redis URL, in words a user can act on. One rule for every place a Redis URL
 * is accepted (the source and destination settings, the destination's connection layer), so both
 * sides of a task report a bad URL the same way. Never echoes the credentials.
 *
 * `parseRedisUrl` is the one parser of a Redis URL's parts: the replica link (source) and the
 * destination's connection layer each add what they need to it (TLS options, a display form).
 */
import { ReplistreamError } from './errors.js';

const EXAMPLE = 'e.g. redis://user:password@host:6379 (rediss:// for TLS)';

/** null when `url` is a usable redis:// or rediss:// URL, else why not. */
export function redisUrlProblem(url: string): string | null {
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(url);
  if (!scheme) return `must start with redis:// or rediss://, ${EXAMPLE}`;
  if (!/^rediss?$/i.test(scheme[1])) return `the scheme ${scheme[1]}:// is not redis:// or rediss://, ${EXAMPLE}`;
  // credentials end at the last '@' (a password may hold '@' or '/' unencoded)
  const rest = url.slice(scheme[0].length).replace(/[?#].*$/, '');
  const afterCredentials = rest.slice(rest.lastIndexOf('@') + 1);
  const slash = afterCredentials.indexOf('/');
  const hostPort = slash < 0 ? afterCredentials : afterCredentials.slice(0, slash);
  const path = slash < 0 ? '' : afterCredentials.slice(slash);
  const m = /^(\[[^\]]*\]|[^:]*)(?::(.*))?$/.exec(hostPort)!;
  const host = m[1];
  const port = m[2];
  if (host === '' || host === '[]') return `has no host name, ${EXAMPLE}`;
  if (port !== undefined && port !== '' && !(/^\d{1,5}$/.test(port) && Number(port) >= 1 && Number(port) <= 65535)) {
    return `the port ${JSON.stringify(port)} is not a number from 1 to 65535`;
  }
  try {
    new URL(url);
  } catch {
    return `is not a valid URL (a password with special characters must be percent-encoded), ${EXAMPLE}`;
  }
  if (path !== '' && path !== '/' && !/^\/\d+$/.test(path)) return `the path ${JSON.stringify(path)} is not a database number (redis://host:6379/0)`;
  return null;
}

/**
 * A Redis URL for an error message: credentials, query and fragment masked. Unlike a log
 * redaction it works on URLs too broken to parse, since those are the ones errors quote.
 */
export function maskRedisUrl(url: string): string {
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*:\/\/)?/.exec(url)![0];
  let rest = url.slice(scheme.length).replace(/[?#].*$/, (q) => (q.length > 1 ? `${q[0]}***` : q));
  const at = rest.replace(/[?#].*$/, '').lastIndexOf('@');
  if (at >= 0) rest = `***@${rest.slice(at + 1)}`;
  return scheme + rest;
}

/** What a Redis URL says: where, whether TLS, who. */
export interface RedisUrlParts {
  host: string;
  port: number;
  tls: boolean;
  username: string | null;
  password: string | null;
}

/**
 * The parts of a redis:// or rediss:// URL (port 6379 when absent, IPv6 brackets removed,
 * credentials percent-decoded). A bad URL throws a CONFIG error naming `setting` and what is
 * wrong, with the credentials masked.
 */
export function parseRedisUrl(url: string, setting: string): RedisUrlParts {
  const problem = redisUrlProblem(url);
  if (problem) throw new ReplistreamError('CONFIG', `${setting}: invalid value ${maskRedisUrl(url)}: ${problem}`, { setting });
  const u = new URL(url);
  return {
    host: u.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: u.port ? Number(u.port) : 6379,
    tls: u.protocol === 'rediss:',
    username: u.username ? percentDecoded(u.username) : null,
    password: u.password ? percentDecoded(u.password) : null,
  };
}

/** A URL's user or password decoded; as written when it is not valid percent-encoding. */
function percentDecoded(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
