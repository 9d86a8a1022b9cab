/**
 * Connections to a destination (or, for `verify`, a source) Redis: URL parsing, safe ioredis
 * options, standalone/cluster detection, and a small slot router for cluster servers.
 *
 * Why our own router instead of ioredis `Cluster` for writes: ioredis' cluster pipeline re-sends a
 * whole pipeline when its connection closes before the replies arrive ("connectionClosed"), and
 * its node connections force `enableOfflineQueue: true`. A re-sent MULTI…EXEC whose first copy was
 * executed would double every non-idempotent command in it. The router below sends each
 * transaction once, on a plain `Redis` per master configured with `autoResendUnfulfilledCommands:
 * false` and `enableOfflineQueue: false`; an unknown outcome surfaces as an error and the writer
 * re-reads its positions from the destination instead of guessing.
 */
import { Redis, type RedisOptions } from 'ioredis';
import calculateSlot from 'cluster-key-slot';
import type { ConnectionOptions } from 'node:tls';
import { ReplistreamError } from '../common/errors.js';
import { connections, isTlsSetupFailure, redisTls } from '../common/connection-settings.js';
import { redactUrl } from '../common/log.js';
import { parseRedisUrl as parseUrlParts } from '../common/redis-url.js';
import { redisRefusal } from '../common/redis-errors.js';
import { parseClusterSlots } from '../common/cluster-slots.js';

export interface RedisEndpoint {
  host: string;
  port: number;
  username?: string;
  password?: string;
  tls: boolean;
  /** For rediss://: CA, client certificate, server name from the source-tls-* / destination-tls-* settings. */
  tlsOptions?: ConnectionOptions;
  /** The URL as given, with the password masked, for messages. */
  display: string;
}

export function parseRedisUrl(url: string, setting = 'destination'): RedisEndpoint {
  const { host, port, tls, username, password } = parseUrlParts(url, setting);
  return {
    host,
    port,
    username: username ?? undefined,
    password: password ?? undefined,
    tls,
    tlsOptions: tls ? redisTls(setting === 'source' ? 'source' : 'destination', host) : undefined,
    display: redactUrl(url),
  };
}

/**
 * ioredis options for a connection whose commands must never be silently re-sent:
 * RESP2 (explicit: ioredis 6 defaults to RESP3), no offline queue, no automatic re-send of
 * commands in flight when a connection drops, no per-request retry. Reconnection itself stays on
 * (with backoff) once the first connection succeeded; the first connection fails fast.
 */
export function safeRedisOptions(ep: RedisEndpoint, name: string): { options: RedisOptions; markConnected: () => void } {
  let connectedOnce = false;
  const opts: RedisOptions = {
    host: ep.host,
    port: ep.port,
    username: ep.username,
    password: ep.password,
    protocol: 2,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    enableAutoPipelining: false,
    lazyConnect: true,
    connectTimeout: 10_000,
    connectionName: name,
    retryStrategy: (times: number) => (connectedOnce ? Math.min(50 * 2 ** Math.min(times, 6), 2_000) : null),
  };
  if (ep.tls) opts.tls = ep.tlsOptions ?? { servername: ep.host };
  return {
    options: opts,
    markConnected: () => {
      connectedOnce = true;
    },
  };
}

/** Opens a connection and waits until it is ready; maps refusals to CONNECTION / AUTH errors. */
export async function openRedis(ep: RedisEndpoint, name: string, setting = 'destination'): Promise<Redis> {
  const { options, markConnected } = safeRedisOptions(ep, name);
  // a destination that keeps a connection but never answers (half-open) fails the command after
  // destination-timeout-ms instead of holding the writer; the writer then re-reads its positions
  if (setting === 'destination') options.commandTimeout = connections().redisTimeoutMs.destination;
  const client = new Redis(options);
  let lastError: unknown = null;
  client.on('error', (err: unknown) => {
    // surfaced through the commands that fail; keep the process free of unhandled 'error' events
    lastError = err;
  });
  try {
    await client.connect();
  } catch (err) {
    client.disconnect();
    // ioredis rejects connect() with "Connection is closed." after a refused AUTH; the reason
    // itself came as an 'error' event
    throw mapConnectError(lastError ?? err, ep, setting);
  }
  markConnected();
  return client;
}

/**
 * Why a connection to a Redis server failed, in one of three kinds a user acts on differently:
 * the server is unreachable (address, firewall, server down), refused the user name or password,
 * or accepted them but the user lacks a right (an ACL without a command replistream needs).
 */
export function classifyConnectFailure(err: unknown): { kind: 'unreachable' | 'authentication failed' | 'missing rights' | 'tls'; why: string } {
  const e = err as NodeJS.ErrnoException | undefined;
  const msg = e instanceof Error ? e.message : String(err);
  if (isTlsSetupFailure(err)) return { kind: 'tls', why: msg };
  const refusal = redisRefusal(msg);
  if (refusal === 'missing rights') return { kind: 'missing rights', why: msg.replace(/^NOPERM\s*/, '') };
  if (refusal === 'wrong credentials') return { kind: 'authentication failed', why: 'wrong user name or password' };
  if (refusal === 'password required') return { kind: 'authentication failed', why: 'the server requires a password and none was given' };
  if (e?.code === 'ECONNREFUSED' || /ECONNREFUSED/.test(msg)) return { kind: 'unreachable', why: 'connection refused' };
  if (e?.code === 'ENOTFOUND' || e?.code === 'EAI_AGAIN' || /ENOTFOUND|EAI_AGAIN/.test(msg)) return { kind: 'unreachable', why: 'host name not found' };
  if (e?.code === 'ETIMEDOUT' || /ETIMEDOUT|timed? ?out/i.test(msg)) return { kind: 'unreachable', why: 'no answer (timed out)' };
  if (e?.code === 'EHOSTUNREACH' || e?.code === 'ENETUNREACH') return { kind: 'unreachable', why: 'no route to the host' };
  if (/Connection is closed/i.test(msg)) return { kind: 'unreachable', why: 'the server closed the connection (a TLS port needs rediss://)' };
  return { kind: 'unreachable', why: msg };
}

export function mapConnectError(err: unknown, ep: RedisEndpoint, setting: string): ReplistreamError {
  const { kind, why } = classifyConnectFailure(err);
  const server = `${setting} ${ep.host.includes(':') ? `[${ep.host}]` : ep.host}:${ep.port}`;
  if (kind === 'unreachable' && ep.tls && /ECONNRESET|closed the connection/.test(why)) {
    // TLS 1.3: a server that wants a client certificate refuses it after the handshake, and its
    // alert often loses the race with the reset of the client's first write
    return new ReplistreamError('CONNECTION', `${server}: the TLS server closed the connection (${why}); if it requires a client certificate, set ${setting}-tls-cert and ${setting}-tls-key`, {
      setting: `${setting}-tls-cert`,
      cause: err,
      retriable: true,
    });
  }
  if (kind === 'unreachable') {
    return new ReplistreamError('CONNECTION', `${server}: unreachable: ${why}; check the ${setting} setting`, { setting, cause: err, retriable: true });
  }
  if (kind === 'tls') {
    return new ReplistreamError('CONNECTION', `${server}: TLS handshake failed: ${why}; check the ${setting}-tls-ca, ${setting}-tls-servername, ${setting}-tls-cert and ${setting}-tls-key settings`, {
      setting: `${setting}-tls-ca`,
      cause: err,
    });
  }
  const user = ep.username ? `user ${JSON.stringify(ep.username)}` : 'the default user';
  if (kind === 'authentication failed') {
    return new ReplistreamError('AUTH', `${server}: authentication failed for ${user}: ${why}; check the credentials in the ${setting} setting`, { setting, cause: err });
  }
  return new ReplistreamError('AUTH', `${server}: missing rights for ${user}: ${why}`, { setting, cause: err });
}

/** Waits for `client` to be ready again after a drop (bounded), or throws a retriable error. */
export async function ensureReady(client: Redis, ep: RedisEndpoint, timeoutMs = 10_000): Promise<void> {
  if (client.status === 'ready') return;
  if (client.status === 'end' || client.status === 'wait') {
    try {
      await client.connect();
      return;
    } catch (err) {
      throw mapConnectError(err, ep, 'destination');
    }
  }
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => {
      cleanup();
      reject(new ReplistreamError('CONNECTION', `${ep.display} is not reachable (connection ${client.status})`, { retriable: true }));
    }, timeoutMs);
    const onReady = () => {
      cleanup();
      resolve();
    };
    const onEnd = () => {
      cleanup();
      reject(new ReplistreamError('CONNECTION', `${ep.display}: connection closed`, { retriable: true }));
    };
    const cleanup = () => {
      clearTimeout(t);
      client.off('ready', onReady);
      client.off('end', onEnd);
    };
    client.on('ready', onReady);
    client.on('end', onEnd);
  });
}

/** `INFO <section>` as a map of field → value. */
export async function info(client: Redis, section: string): Promise<Map<string, string>> {
  const text = (await client.call('INFO', section)) as string;
  const out = new Map<string, string>();
  for (const line of String(text).split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0 && !line.startsWith('#')) out.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  return out;
}

export async function isClusterEnabled(client: Redis): Promise<boolean> {
  const m = await info(client, 'cluster');
  return m.get('cluster_enabled') === '1';
}

/** "7.0.15" → [7, 0, 15]; Valkey reports its own `valkey_version` next to a compatible `redis_version`. */
export function parseVersion(v: string | undefined | null): [number, number, number] {
  const m = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(v ?? '');
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : [0, 0, 0];
}

export function versionAtLeast(v: [number, number, number], major: number, minor = 0, patch = 0): boolean {
  return v[0] !== major ? v[0] > major : v[1] !== minor ? v[1] > minor : v[2] >= patch;
}

// ---------------------------------------------------------------------------------------------
// Cluster

export const SLOTS = 16384;

let slotTags: string[] | null = null;

/**
 * One short hash-tag string per slot: `slotTag(s)` hashes to slot `s` (`{<tag>}` in a key puts it
 * there). Computed once (≈ 200k CRC16s, a few tens of ms).
 */
export function slotTag(slot: number): string {
  if (!slotTags) {
    const tags = new Array<string>(SLOTS);
    let missing = SLOTS;
    for (let i = 0; missing > 0; i++) {
      const t = i.toString(36);
      const s = calculateSlot(t);
      if (tags[s] === undefined) {
        tags[s] = t;
        missing--;
      }
    }
    slotTags = tags;
  }
  return slotTags[slot];
}

export function keySlot(key: Buffer | string): number {
  return calculateSlot(key);
}

interface MasterNode {
  id: string;
  host: string;
  port: number;
  client: Redis;
}

/**
 * Slot → master connection map for a Redis Cluster, from `CLUSTER SLOTS`. Connections are plain
 * ioredis `Redis` instances with the safe options above. `refresh()` re-reads the map (after a
 * MOVED reply, a failover or a connection error).
 */
export class ClusterRouter {
  private owners: Array<string | undefined> = new Array(SLOTS);
  private nodes = new Map<string, MasterNode>();
  private refreshing: Promise<void> | null = null;

  private constructor(
    private readonly seed: RedisEndpoint,
    private readonly name: string,
    private readonly setting: string,
  ) {}

  static async open(seed: RedisEndpoint, name: string, setting = 'destination', seedClient?: Redis): Promise<ClusterRouter> {
    const r = new ClusterRouter(seed, name, setting);
    await r.load(seedClient);
    return r;
  }

  private async load(seedClient?: Redis): Promise<void> {
    let client = seedClient;
    let own = false;
    if (!client || client.status !== 'ready') {
      // any known master will do, else the seed
      client = [...this.nodes.values()].find((n) => n.client.status === 'ready')?.client;
      if (!client) {
        client = await openRedis(this.seed, `${this.name}:seed`, this.setting);
        own = true;
      }
    }
    let slots: unknown[];
    try {
      slots = (await client.call('CLUSTER', 'SLOTS')) as unknown[];
    } finally {
      if (own) client.disconnect();
    }
    const owners: Array<string | undefined> = new Array(SLOTS);
    const wanted = new Map<string, { host: string; port: number; id: string }>();
    for (const range of parseClusterSlots(slots)) {
      const host = range.host && range.host !== '?' ? range.host : this.seed.host;
      const port = range.port;
      const key = `${host}:${port}`;
      wanted.set(key, { host, port, id: range.id ?? key });
      for (let s = range.start; s <= range.end; s++) owners[s] = key;
    }
    for (const [key, n] of wanted) {
      if (!this.nodes.has(key)) {
        const ep: RedisEndpoint = { ...this.seed, host: n.host, port: n.port, display: `${this.seed.tls ? 'rediss' : 'redis'}://${n.host}:${n.port}` };
        const c = await openRedis(ep, `${this.name}:${key}`, this.setting);
        this.nodes.set(key, { ...n, client: c });
      }
    }
    for (const [key, n] of [...this.nodes]) {
      if (!wanted.has(key)) {
        n.client.disconnect();
        this.nodes.delete(key);
      }
    }
    this.owners = owners;
  }

  refresh(): Promise<void> {
    if (!this.refreshing) {
      this.refreshing = this.load().finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  /** The master serving `slot`, or a retriable error when no master serves it. */
  forSlot(slot: number): Redis {
    const key = this.owners[slot];
    const n = key ? this.nodes.get(key) : undefined;
    if (!n) throw new ReplistreamError('CONNECTION', `no master of ${this.seed.display} serves slot ${slot}`, { retriable: true });
    return n.client;
  }

  nodeKeyForSlot(slot: number): string | undefined {
    return this.owners[slot];
  }

  /** Slots grouped by the master serving them. */
  slotsByMaster(): Map<string, number[]> {
    const out = new Map<string, number[]>();
    this.owners.forEach((k, s) => {
      if (!k) return;
      let a = out.get(k);
      if (!a) out.set(k, (a = []));
      a.push(s);
    });
    return out;
  }

  masters(): Array<{ key: string; client: Redis }> {
    return [...this.nodes.entries()].map(([key, n]) => ({ key, client: n.client }));
  }

  client(key: string): Redis | undefined {
    return this.nodes.get(key)?.client;
  }

  close(): void {
    for (const n of this.nodes.values()) n.client.disconnect();
    this.nodes.clear();
  }
}

/** A connected server: a plain connection, or a router over the masters of a cluster. */
export type Topology =
  | { kind: 'standalone'; endpoint: RedisEndpoint; client: Redis }
  | { kind: 'cluster'; endpoint: RedisEndpoint; router: ClusterRouter };

export async function openTopology(url: string, name: string, setting = 'destination'): Promise<Topology> {
  const endpoint = parseRedisUrl(url, setting);
  const client = await openRedis(endpoint, name, setting);
  let cluster: boolean;
  try {
    cluster = await isClusterEnabled(client);
  } catch (err) {
    client.disconnect();
    throw mapConnectError(err, endpoint, setting);
  }
  if (!cluster) return { kind: 'standalone', endpoint, client };
  try {
    const router = await ClusterRouter.open(endpoint, name, setting, client);
    return { kind: 'cluster', endpoint, router };
  } finally {
    client.disconnect();
  }
}

export function closeTopology(t: Topology): void {
  if (t.kind === 'standalone') t.client.disconnect();
  else t.router.close();
}

/** Every master (one client for a standalone server). */
export function topologyMasters(t: Topology): Redis[] {
  return t.kind === 'standalone' ? [t.client] : t.router.masters().map((m) => m.client);
}

/** The client that serves `key` (for reads in verify/precheck). */
export function clientForKey(t: Topology, key: Buffer | string): Redis {
  return t.kind === 'standalone' ? t.client : t.router.forSlot(keySlot(key));
}

/** Escapes glob metacharacters so that `pattern*` matches keys that start with `prefix`. */
export function globEscape(prefix: string): string {
  return prefix.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}
