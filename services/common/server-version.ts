/**
 * Which server, of which version, from its `INFO server` reply.
 *
 * Valkey answers `redis_version:7.2.4` for client compatibility, and its own release in
 * `valkey_version` (with `server_name:valkey`). Comparing `valkey_version` 8.1.8 with a Redis
 * version would be wrong both ways: Valkey 8.1 writes the RDB format of Redis 7.2 (11) and cannot
 * read Redis 7.4/8's (12). So versions are compared through the RDB format each release writes,
 * which is what decides whether a RESTORE payload of one can be read by the other.
 */

export type ServerProduct = 'Redis' | 'Valkey';

export interface ServerVersion {
  product: ServerProduct;
  /** The product's own release ("7.0.15" for Redis, "8.1.8" for Valkey). */
  version: string;
  /** `redis_version`: the Redis release it behaves like for commands (7.2.4 for every Valkey so far). */
  redisCompatible: string;
  /** RDB version this release writes (and the newest it reads); null for a release not known here. */
  rdbVersion: number | null;
  /** "Valkey 8.1.8", for messages. */
  label: string;
}

/** "7.0.15" → [7, 0, 15] (missing parts are 0; anything unparsable is [0, 0, 0]). */
export function versionParts(v: string | undefined | null): [number, number, number] {
  const m = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(v ?? '');
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : [0, 0, 0];
}

function atLeast(v: [number, number, number], major: number, minor = 0): boolean {
  return v[0] !== major ? v[0] > major : v[1] >= minor;
}

/**
 * The RDB version a release writes. Redis: 2.6–3.0 → 6, 3.2 → 7, 4.0 → 8, 5.0–6.2 → 9, 7.0 → 10,
 * 7.2 → 11, 7.4–8.4 → 12. Valkey: 7.2–8.1 → 11, 9.0 → 80 (its own `VALKEY` numbering), 9.2 → 81.
 * Null for releases outside these (too old, or newer than this table).
 */
export function rdbVersionOfRelease(product: ServerProduct, version: string): number | null {
  const v = versionParts(version);
  if (v[0] === 0) return null;
  if (product === 'Valkey') {
    if (atLeast(v, 9, 3)) return null;
    if (atLeast(v, 9, 2)) return 81;
    if (atLeast(v, 9, 0)) return 80;
    if (atLeast(v, 7, 2)) return 11;
    return null;
  }
  if (atLeast(v, 8, 5)) return null; // 8.6 writes 13, not confirmed here
  if (atLeast(v, 7, 4)) return 12;
  if (atLeast(v, 7, 2)) return 11;
  if (atLeast(v, 7, 0)) return 10;
  if (atLeast(v, 5, 0)) return 9;
  if (atLeast(v, 4, 0)) return 8;
  if (atLeast(v, 3, 2)) return 7;
  if (atLeast(v, 2, 6)) return 6;
  return null;
}

/** Parses `INFO server` (the raw reply, or its fields as a map). */
export function serverVersionFromInfo(info: string | Map<string, string>): ServerVersion {
  const fields = typeof info === 'string' ? infoFields(info) : info;
  const redisCompatible = fields.get('redis_version') ?? 'unknown';
  const valkey = fields.get('valkey_version');
  const isValkey = valkey !== undefined || fields.get('server_name')?.toLowerCase() === 'valkey';
  const product: ServerProduct = isValkey ? 'Valkey' : 'Redis';
  // a Valkey without valkey_version would be one that only renamed itself: its redis_version is all we have
  const version = isValkey ? (valkey ?? redisCompatible) : redisCompatible;
  return { product, version, redisCompatible, rdbVersion: rdbVersionOfRelease(product, version), label: `${product} ${version}` };
}

/** A version given as a plain string ("7.0.15", from an RDB's redis-ver field) is a Redis one. */
export function serverVersionOf(product: ServerProduct, version: string): ServerVersion {
  return { product, version, redisCompatible: product === 'Redis' ? version : 'unknown', rdbVersion: rdbVersionOfRelease(product, version), label: `${product} ${version}` };
}

function infoFields(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0 && !line.startsWith('#')) out.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  return out;
}

/**
 * Why RESTORE payloads of `source` may not be readable by `destination`, or null when they are
 * (or when it cannot be told: a release newer than the table above; the writer checks the real
 * payloads against the destination's own DUMP format anyway).
 */
export function restoreIncompatibility(source: ServerVersion, destination: ServerVersion): string | null {
  if (source.rdbVersion !== null && destination.rdbVersion !== null) {
    if (source.rdbVersion <= destination.rdbVersion) return null;
    return `the source (${source.label}) writes RDB version ${source.rdbVersion}, the destination (${destination.label}) reads RDB versions up to ${destination.rdbVersion}`;
  }
  if (source.product === destination.product) {
    const s = versionParts(source.version);
    const d = versionParts(destination.version);
    const older = d[0] !== s[0] ? d[0] < s[0] : d[1] !== s[1] ? d[1] < s[1] : d[2] < s[2];
    if (older) return `the destination (${destination.label}) is older than the source (${source.label})`;
  }
  return null;
}
