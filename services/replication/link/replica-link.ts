import { EventEmitter } from 'node:events';
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { connections } from '../../common/connection-settings.js';
import { ReplistreamError } from '../../common/errors.js';
import { createLogger, redactUrl, type Logger } from '../../common/log.js';
import { CommandGrouper, isGetAck, type CommandUnit } from '../resp/grouper.js';
import { RespParser, type RespCommand } from '../resp/parser.js';
import { PACK_ARGS_FROM } from '../../events/packed-args.js';

const PARSER_OPTIONS = { views: true, packArgsFrom: PACK_ARGS_FROM };
import { ReplyReader, SnapshotReader, type HandshakeReply } from '../resp/reply-reader.js';

/**
 * The replica side of Redis replication, as a library: connects to a source Redis, performs the
 * replica handshake, receives the snapshot (RDB) and then the command stream, ACKs its offset,
 * and reconnects with PSYNC after a cut.
 *
 * Offsets are Redis replication offsets: the number of stream bytes before a point, the value
 * `INFO replication` shows as `master_repl_offset`. A unit spans `[startOffset, endOffset)`.
 *
 * Delivery and flow control
 * - The RDB goes to `onRdbChunk` (raw bytes, unparsed), then `onRdbEnd`; both may return a
 *   promise. Events `rdb-chunk` / `rdb-end` fire at the same moments, for observers.
 * - The socket is always read at full speed (the source drops replicas whose output buffer grows
 *   past its limits, and a diskless transfer stalls the source's fork). While a consumer promise
 *   is pending, incoming bytes are queued in memory, in order (snapshot bytes, then stream bytes,
 *   which are only parsed after `onRdbEnd` resolved). Only when the queue exceeds
 *   `maxBufferedBytes` (default 256 MiB) is the socket paused, until the queue falls to half.
 *   A pause longer than the source's `repl-timeout` (60 s) during a diskless transfer makes the
 *   source drop the link, and a long pause during streaming moves the backlog to the source's
 *   output buffer (`client-output-buffer-limit replica`) — size `maxBufferedBytes` for that.
 * - Units are emitted synchronously as `unit` events, in order, as soon as they are complete.
 * - Delivery yields the event loop after `sliceMs` (10 ms) of work in one turn; what arrives
 *   meanwhile is queued. Node reads a busy socket up to 32 times in a row before it looks at any
 *   other socket or timer, and each read was delivered at once: when the stream comes in faster
 *   than the consumer handles it (code not optimized yet in the first second of a load, a burst),
 *   a turn grew to hundreds of milliseconds, during which the consumer's own I/O (capture's Kafka
 *   acknowledgements, its linger timers) waited: at 100,000 SET/s right after a full sync capture
 *   sent one produce request every ~350 ms, and the lag reached 0.6 s.
 *
 * Acknowledgements
 * - Every `ackIntervalMs` (1 s) the link sends `REPLCONF ACK <offset>`; `REPLCONF GETACK` is
 *   answered at once, with the offset before the GETACK.
 * - With `manualConfirm: false` (default) the ACKed offset is the processed offset.
 * - With `manualConfirm: true` the consumer calls `confirm(endOffset)` once a unit is durable
 *   (e.g. acknowledged by Kafka); the ACKed offset and `position` then stop at the start of the
 *   oldest unconfirmed unit (everything before it — confirmed units, SELECT, PING, REPLCONF — is
 *   done). Units may be confirmed in any batch size, in order. `maxUnconfirmedBytes` (default
 *   256 MiB) pauses the socket while that much stream is emitted but unconfirmed. The link keeps
 *   only the offsets and database of an unconfirmed unit, not the unit: a consumer that encodes
 *   units as they come holds the only copy.
 *
 * Reconnection
 * - After a cut, the link reconnects with exponential backoff (`reconnect.initialDelayMs` doubling
 *   up to `reconnect.maxDelayMs`) and asks `PSYNC <replid> <processed offset + 1>`; the database
 *   is kept (a master does not resend SELECT after `+CONTINUE`). A transaction cut in the middle
 *   is dropped and received again. Units already emitted are not emitted again (in manual-confirm
 *   mode they stay pending until confirmed).
 * - A cut during a snapshot transfer (or between `+FULLRESYNC` and its end) drops the snapshot
 *   bytes not yet delivered, emits `rdb-abort` once the chunk being consumed is done, and the next
 *   attempt asks for a new full sync (`PSYNC ? -1`): a partial snapshot is never continued.
 * - `-LOADING` / `-NOMASTERLINK`, a snapshot aborted by the source and connection errors are
 *   retriable; a refused AUTH (or missing PSYNC permission), a TLS verification failure, a
 *   protocol violation or a consumer failure stops the link (`close`).
 * - A source that refuses PSYNC (≤ 2.6) gets an inline `SYNC`: `fullresync` then carries
 *   `legacySync: true` and replid '?', offsets count from 0, no ACKs are sent, `position` stays
 *   null and every reconnect is a new full sync.
 *
 * Buffers handed to `onRdbChunk` / `rdb-chunk` may share memory with socket reads: do not modify
 * them. Unit arguments are copies.
 *
 * Errors are reported as `error` events only when a listener is attached (an unhandled `error`
 * event would otherwise crash the process); they are always logged. `close` fires once when the
 * link stops for good, with the fatal error or null after `stop()`.
 */

export interface ReplicaPosition {
  replid: string;
  /** Replication offset (bytes of stream processed), as `master_repl_offset`. */
  offset: number;
  /** Database selected at `offset`. */
  db: number;
}

export interface ReplicaLinkTlsOptions {
  /** CA certificate(s) (PEM) to trust instead of the system store. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Client certificate and key (PEM), for servers that require them. */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** Skip certificate verification (testing only). */
  insecure?: boolean;
  /** SNI / name to verify; defaults to the URL's host when it is a name. */
  servername?: string;
}

export interface ReplicaLinkOptions {
  /** `redis://[user:pass@]host:port` or `rediss://…` (TLS). A path (db number) is ignored. */
  url: string;
  /** Override the URL's user name / password. */
  username?: string;
  password?: string;
  tls?: ReplicaLinkTlsOptions;
  /** Resume from a durable position (PSYNC replid offset+1); a new full sync when null. */
  start?: ReplicaPosition | null;
  /** Port announced with `REPLCONF listening-port` (shown in the source's INFO; default 0). */
  listeningPort?: number;
  /** Optional `REPLCONF ip-address`. */
  announceIp?: string;
  manualConfirm?: boolean;
  ackIntervalMs?: number;
  connectTimeoutMs?: number;
  /**
   * Silence after which the link is considered dead (default: the source-timeout-ms setting, 60 s,
   * like the source's own repl-timeout). The source sends a PING every repl-ping-replica-period
   * (10 s by default) while streaming and a newline every second while it prepares a snapshot,
   * so a shorter bound than that period drops a healthy idle link.
   */
  readTimeoutMs?: number;
  reconnect?: { initialDelayMs?: number; maxDelayMs?: number };
  /**
   * How long the link may stay down (lost, and no new attempt accepted by the source since) before
   * it gives up: it then stops with a CONNECTION error naming the source and `downTimeoutSetting`.
   * 0 or unset: it retries forever.
   */
  downTimeoutMs?: number;
  /** The setting that sets `downTimeoutMs`, named in that error (default `source-down-timeout-ms`). */
  downTimeoutSetting?: string;
  /**
   * Where the source is now, asked before every attempt (a Sentinel-managed source: the current
   * master). The URL's host and port are the first guess and the fallback when it fails. After a
   * failover the link thus asks the promoted replica for `PSYNC <old replid> <offset>`, which it
   * grants (`+CONTINUE <new id>`) when its history holds that offset, else a full sync follows.
   */
  resolveEndpoint?: () => Promise<{ host: string; port: number }>;
  maxBufferedBytes?: number;
  maxUnconfirmedBytes?: number;
  /**
   * Milliseconds of delivery in one turn of the event loop after which the link lets it turn
   * (default 10; 0 never yields). See "Delivery and flow control".
   */
  sliceMs?: number;
  onRdbChunk?: (chunk: Buffer) => void | Promise<void>;
  onRdbEnd?: () => void | Promise<void>;
  onRdbAbort?: (err: ReplistreamError) => void | Promise<void>;
  /**
   * Called after each `unit` event; a promise holds back the delivery of the next units (and of
   * the bytes after them) until it settles, as the `onRdb*` promises do. Capture returns one while
   * the records of a huge command are still being made, so that no later unit overtakes them.
   */
  afterUnit?: () => void | Promise<void>;
  logger?: Logger;
}

export interface FullResyncInfo {
  replid: string;
  offset: number;
  /** True after a legacy `SYNC` (no replid, offsets counted from 0, no resume). */
  legacySync: boolean;
}

export interface ContinueInfo {
  replid: string;
  /** Offset the stream continues from. */
  offset: number;
  /** The replid before a `+CONTINUE <newid>` (after a failover), else equal to `replid`. */
  previousReplid: string;
}

export interface RdbEndInfo {
  bytes: number;
  diskless: boolean;
}

/** Whether the link is up, and since when it is down. */
export interface LinkHealth {
  /** False from a loss until the source accepts a new attempt (PSYNC answered). */
  up: boolean;
  /** When the current outage started (epoch ms); null while up. */
  downSince: number | null;
  /** Attempts made in the current outage (0 while up). */
  retries: number;
  /** Times the link came back after an outage, since the link started. */
  reconnects: number;
  /** The error that ended the last attempt of the current outage; null while up. */
  lastError: string | null;
}

export interface DisconnectedInfo {
  error: ReplistreamError;
  /** Delay before the next attempt. */
  retryInMs: number;
}

export type ReplicaLinkEvents = {
  connected: [info: { host: string; port: number; tls: boolean }];
  fullresync: [info: FullResyncInfo];
  continue: [info: ContinueInfo];
  /** The snapshot's length as the source announced it; null for a diskless transfer (no length). */
  'rdb-size': [info: { bytes: number | null }];
  'rdb-chunk': [chunk: Buffer];
  'rdb-end': [info: RdbEndInfo];
  'rdb-abort': [error: ReplistreamError];
  unit: [unit: CommandUnit];
  disconnected: [info: DisconnectedInfo];
  /** The source accepted an attempt after an outage of `downMs`. */
  reconnected: [info: { downMs: number; retries: number }];
  error: [error: ReplistreamError];
  close: [info: { error: ReplistreamError | null }];
};

export type ReplicaLinkState = 'idle' | 'connecting' | 'handshake' | 'transfer' | 'streaming' | 'waiting' | 'closed';

interface Endpoint {
  host: string;
  port: number;
  tls: boolean;
  username: string | null;
  password: string | null;
  safeUrl: string;
}

/** Parses a source URL; throws ReplistreamError('CONFIG', setting 'source'). */
export function parseRedisUrl(url: string): Endpoint {
  let u: URL;
  try {
    u = new URL(url);
  } catch (err) {
    throw new ReplistreamError('CONFIG', `source: not a URL: ${redactUrl(url)}`, { setting: 'source', cause: err });
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new ReplistreamError('CONFIG', `source: expected redis:// or rediss://, got ${u.protocol}//`, { setting: 'source' });
  }
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  if (!host) throw new ReplistreamError('CONFIG', 'source: URL has no host', { setting: 'source' });
  const port = u.port ? Number(u.port) : 6379;
  const decode = (s: string) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  };
  return {
    host,
    port,
    tls: u.protocol === 'rediss:',
    username: u.username ? decode(u.username) : null,
    password: u.password ? decode(u.password) : null,
    safeUrl: redactUrl(url),
  };
}

type QueueItem =
  | { kind: 'rdb'; buf: Buffer }
  | { kind: 'rdb-end'; info: RdbEndInfo }
  | { kind: 'rdb-abort'; error: ReplistreamError }
  | { kind: 'stream'; buf: Buffer };

interface Session {
  id: number;
  socket: Socket;
  mode: 'handshake' | 'transfer' | 'stream';
  reader: ReplyReader;
  wake: (() => void) | null;
  ended: boolean;
  endError: ReplistreamError | null;
  snapshot: SnapshotReader | null;
  lastReadAt: number;
  timer: NodeJS.Timeout | null;
  /** Legacy SYNC: the master knows no offsets, so no ACKs. */
  legacy: boolean;
  /** FULLRESYNC seen and the snapshot not complete yet. */
  inFullSync: boolean;
  lastAckAt: number;
}

export class ReplicaLink extends EventEmitter<ReplicaLinkEvents> {
  private readonly endpoint: Endpoint;
  private readonly opts: ReplicaLinkOptions;
  private readonly log: Logger;
  private readonly ackIntervalMs: number;
  private readonly connectTimeoutMs: number;
  private readonly readTimeoutMs: number;
  private readonly initialDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly maxBufferedBytes: number;
  private readonly maxUnconfirmedBytes: number;
  private readonly manualConfirm: boolean;

  private linkState: ReplicaLinkState = 'idle';
  private stopped = false;
  private session: Session | null = null;
  private sessionSeq = 0;
  private attempts = 0;
  private readonly linkHealth: LinkHealth = { up: true, downSince: null, retries: 0, reconnects: 0, lastError: null };
  private reconnectTimer: NodeJS.Timeout | null = null;

  /** Replication id of the stream being followed (null before the first sync). */
  private replid: string | null = null;
  /** True when (replid, grouper.offset, grouper.db) is a valid resume point. */
  private synced = false;
  // views: socket chunks are fresh buffers, never reused (see RespParserOptions.views); commands of
  // very many arguments packed (an HSET of a million fields: 38 MB instead of 216 MB of Buffers)
  private parser = new RespParser(PARSER_OPTIONS);
  private grouper = new CommandGrouper();
  /**
   * Manual-confirm mode: the units emitted and not confirmed yet, oldest first. Only their offsets
   * and databases are kept (the units themselves belong to the consumer, which may drop them as
   * soon as it has encoded them).
   */
  private pending = new PendingUnits();

  private queue: QueueItem[] = [];
  private queuedBytes = 0;
  private waitingConsumer = false;
  private readonly sliceMs: number;
  /** performance.now() of the first delivery in this turn of the event loop; -1 between turns. */
  private sliceStart = -1;
  /** The slice is used up: deliveries wait for the end of the turn (`endSlice`). */
  private yielding = false;
  private idleWaiters: Array<() => void> = [];
  private paused = false;
  /** Held by the operator (capture paused): the socket stays paused whatever the queues. */
  private held = false;
  private closeWaiters: Array<() => void> = [];

  constructor(opts: ReplicaLinkOptions) {
    super();
    this.opts = opts;
    this.endpoint = parseRedisUrl(opts.url);
    if (opts.username !== undefined) this.endpoint.username = opts.username || null;
    if (opts.password !== undefined) this.endpoint.password = opts.password || null;
    if (this.endpoint.username && !this.endpoint.password) {
      throw new ReplistreamError('CONFIG', 'source: a user name needs a password', { setting: 'source' });
    }
    this.log = (opts.logger ?? createLogger()).child({ component: 'replica-link', source: this.endpoint.safeUrl });
    this.ackIntervalMs = opts.ackIntervalMs ?? 1000;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 10_000;
    this.readTimeoutMs = opts.readTimeoutMs ?? connections().redisTimeoutMs.source;
    this.initialDelayMs = opts.reconnect?.initialDelayMs ?? 100;
    this.maxDelayMs = opts.reconnect?.maxDelayMs ?? 30_000;
    this.maxBufferedBytes = opts.maxBufferedBytes ?? 256 * 1024 * 1024;
    this.maxUnconfirmedBytes = opts.maxUnconfirmedBytes ?? 256 * 1024 * 1024;
    this.sliceMs = opts.sliceMs ?? 10;
    this.manualConfirm = opts.manualConfirm ?? false;
    const start = opts.start;
    if (start) {
      if (!/^[0-9a-zA-Z]{40}$/.test(start.replid) || !Number.isSafeInteger(start.offset) || start.offset < 0 ||
          !Number.isInteger(start.db) || start.db < 0) {
        throw new ReplistreamError('CONFIG', 'start position must be { replid: 40 characters, offset ≥ 0, db ≥ 0 }', {
          setting: 'start',
        });
      }
      this.adoptPosition(start.replid, start.offset, start.db);
      this.synced = true;
    }
  }

  // ------------------------------------------------------------------ public API

  get state(): ReplicaLinkState {
    return this.linkState;
  }

  /** Where a restarted capture may resume from: confirmed (manual mode) or processed offset. */
  get position(): ReplicaPosition | null {
    if (!this.synced || this.replid === null || this.replid === '?') return null;
    const first = this.firstPending();
    if (first) return { replid: this.replid, offset: first.startOffset, db: first.db };
    return { replid: this.replid, offset: this.grouper.offset, db: this.grouper.db };
  }

  /** Offset after the last unit (or PING/SELECT/REPLCONF) handled; null before a sync. */
  get processedOffset(): number | null {
    return this.synced ? this.grouper.offset : null;
  }

  /** The offset the link reports in `REPLCONF ACK`. */
  get ackOffset(): number | null {
    if (!this.synced) return null;
    const first = this.firstPending();
    return first ? first.startOffset : this.grouper.offset;
  }

  /** Replication id currently followed. */
  get replicationId(): string | null {
    return this.replid;
  }

  start(): void {
    if (this.stopped) throw new ReplistreamError('INTERNAL', 'replica link already stopped');
    if (this.linkState !== 'idle') return;
    this.connectSoon(0);
  }

  /** Stops for good: closes the connection, cancels reconnects, drops undelivered data. */
  async stop(): Promise<void> {
    if (this.linkState === 'closed') return;
    this.shutdown(null);
    const s = this.session;
    if (s && !s.socket.closed) await new Promise<void>((r) => s.socket.once('close', () => r()));
  }

  /** Resolves when the link is closed (after `stop()` or a fatal error). */
  closed(): Promise<void> {
    if (this.linkState === 'closed') return Promise.resolve();
    return new Promise((r) => this.closeWaiters.push(r));
  }

  /**
   * Manual-confirm mode: every unit ending at or before `offset` is durable. The next ACK and
   * `position` move up to the oldest unit still unconfirmed (or the processed offset).
   * Offsets belong to the current sync: a `fullresync` forgets every unconfirmed unit, so
   * confirmations of units emitted before it must not be made after it.
   */
  confirm(offset: number): void {
    if (!this.manualConfirm) return;
    this.pending.confirm(offset);
    this.updateFlow();
  }

  /**
   * Stops reading from the source (true) or reads again (false). ACKs go on, so the source keeps
   * the link; what it sends meanwhile waits in its output buffer for this replica, and a link it
   * drops for exceeding that buffer resumes from the backlog by PSYNC (a full sync once the
   * backlog no longer holds the position).
   */
  hold(on: boolean): void {
    this.held = on;
    this.updateFlow();
  }

  /**
   * The source is now at `addr` (a Sentinel announced a failover): a session with another address
   * ends now and the next attempt goes to `addr` (asking `resolveEndpoint` again, as every attempt
   * does), instead of waiting for the old socket to fail or time out. A wait before the next
   * attempt is cut short. Nothing happens when the link already uses `addr`, so the same news
   * from several Sentinels moves it once.
   */
  moveTo(addr: { host: string; port: number }): void {
    if (this.stopped) return;
    const ep = this.endpoint;
    if (ep.host === addr.host && ep.port === addr.port) return;
    this.setEndpoint(addr.host, addr.port);
    const s = this.session;
    if (s && !s.ended) {
      this.endSession(s, connectionError(`the source moved to ${ep.safeUrl} (Sentinel announced a failover)`));
    } else if (this.reconnectTimer) {
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = null;
      this.connectSoon(0);
    }
  }

  private firstPending(): { startOffset: number; db: number } | undefined {
    return this.pending.first();
  }

  // ------------------------------------------------------------------ connection lifecycle

  private connectSoon(delayMs: number): void {
    this.linkState = delayMs > 0 ? 'waiting' : 'connecting';
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.stopped) return;
      this.linkState = 'connecting';
      void this.locate().then(() => {
        if (!this.stopped) void this.runSession();
      });
    }, delayMs);
  }

  /** Asks `resolveEndpoint` where the source is; keeps the last known address when it cannot say. */
  private async locate(): Promise<void> {
    const resolve = this.opts.resolveEndpoint;
    if (!resolve) return;
    try {
      const { host, port } = await resolve();
      const ep = this.endpoint;
      if (host === ep.host && port === ep.port) return;
      this.setEndpoint(host, port);
    } catch (err) {
      this.log.warn({ err: (err as Error).message, at: `${this.endpoint.host}:${this.endpoint.port}` }, 'cannot tell where the source is now: trying its last address');
    }
  }

  private setEndpoint(host: string, port: number): void {
    const ep = this.endpoint;
    this.log.warn({ from: `${ep.host}:${ep.port}`, to: `${host}:${port}` }, 'the source moved (failover): following it');
    ep.host = host;
    ep.port = port;
    const u = new URL(`redis://${host.includes(':') ? `[${host}]` : host}:${port}`);
    ep.safeUrl = `${ep.tls ? 'rediss' : 'redis'}://${ep.username || ep.password ? '***@' : ''}${u.host}`;
  }

  private async runSession(): Promise<void> {
    const id = ++this.sessionSeq;
    if (!this.linkHealth.up) this.linkHealth.retries++;
    const ep = this.endpoint;
    let socket: Socket;
    const tlsOpts = this.opts.tls ?? {};
    if (ep.tls) {
      socket = tlsConnect({
        host: ep.host,
        port: ep.port,
        servername: tlsOpts.servername ?? (isIP(ep.host) ? undefined : ep.host),
        ca: tlsOpts.ca,
        cert: tlsOpts.cert,
        key: tlsOpts.key,
        rejectUnauthorized: !tlsOpts.insecure,
      });
    } else {
      socket = netConnect({ host: ep.host, port: ep.port });
    }
    const s: Session = {
      id,
      socket,
      mode: 'handshake',
      reader: new ReplyReader(),
      wake: null,
      ended: false,
      endError: null,
      snapshot: null,
      lastReadAt: Date.now(),
      timer: null,
      legacy: false,
      inFullSync: false,
      lastAckAt: 0,
    };
    this.paused = false;
    this.session = s;
    socket.on('data', (chunk: Buffer) => this.onData(s, chunk));
    socket.on('error', (err) => this.endSession(s, socketError(ep, err)));
    socket.on('close', () => this.endSession(s, connectionError(`connection to ${ep.safeUrl} closed`)));
    try {
      await this.waitConnected(s);
      socket.setNoDelay(true);
      socket.setKeepAlive(true, 10_000);
      s.lastReadAt = Date.now();
      s.timer = setInterval(() => this.tick(s), Math.min(this.ackIntervalMs, 250));
      this.linkState = 'handshake';
      this.log.info({ host: ep.host, port: ep.port, tls: ep.tls }, 'connected to source');
      this.emit('connected', { host: ep.host, port: ep.port, tls: ep.tls });
      await this.handshake(s);
    } catch (err) {
      this.endSession(s, toLinkError(err));
    }
  }

  private waitConnected(s: Session): Promise<void> {
    const event = this.endpoint.tls ? 'secureConnect' : 'connect';
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(connectionError(`connecting to ${this.endpoint.safeUrl} timed out after ${this.connectTimeoutMs} ms`));
      }, this.connectTimeoutMs);
      s.socket.once(event, () => {
        clearTimeout(timer);
        resolve();
      });
      s.socket.once('close', () => {
        clearTimeout(timer);
        reject(s.endError ?? connectionError('connection closed'));
      });
    });
  }

  /** Periodically: ACK when streaming, and detect a silent master. */
  private tick(s: Session): void {
    if (s.ended) return;
    const now = Date.now();
    if (!this.paused && now - s.lastReadAt > this.readTimeoutMs) {
      this.endSession(s, connectionError(`no data from the source for ${Math.round(this.readTimeoutMs / 1000)} s (source-timeout-ms): the link is made again`));
      return;
    }
    if (s.mode === 'stream' && !s.legacy && now - s.lastAckAt >= this.ackIntervalMs - 50) this.sendAck(s);
  }

  private endSession(s: Session, error: ReplistreamError): void {
    if (s.ended) return;
    s.ended = true;
    s.endError = error;
    if (s.timer) clearInterval(s.timer);
    s.socket.destroy();
    const wake = s.wake;
    s.wake = null;
    wake?.();
    if (this.session !== s || this.stopped) return;

    if (s.inFullSync) {
      // Snapshot bytes not delivered yet are useless now; the consumer learns of the abort in order.
      // The next attempt asks for a new full sync (the old position was given up at FULLRESYNC).
      this.queue = this.queue.filter((q) => q.kind !== 'rdb');
      this.recountQueue();
      this.synced = false;
      this.enqueue({ kind: 'rdb-abort', error });
    }

    if (!error.retriable) {
      this.fail(error);
      return;
    }
    const now = Date.now();
    const health = this.linkHealth;
    if (health.up) Object.assign(health, { up: false, downSince: now, retries: 0 });
    health.lastError = error.message;
    const downMs = now - (health.downSince as number);
    const bound = this.opts.downTimeoutMs ?? 0;
    if (bound > 0 && downMs >= bound) {
      const setting = this.opts.downTimeoutSetting ?? 'source-down-timeout-ms';
      this.fail(
        new ReplistreamError(
          'CONNECTION',
          `the source ${this.endpoint.safeUrl} has been unreachable for ${Math.round(downMs / 1000)} s (${health.retries} attempts; last: ${error.message}): giving up after ${setting} (${bound} ms); bring the source back, or raise ${setting} (0 retries forever)`,
          { setting, cause: error, details: { downMs, retries: health.retries } },
        ),
      );
      return;
    }
    // the last attempt falls on the bound, not a backoff step after it
    const delay = Math.min(this.initialDelayMs * 2 ** this.attempts, this.maxDelayMs, bound > 0 ? bound - downMs : Infinity);
    this.attempts = Math.min(this.attempts + 1, 30);
    this.log.warn({ err: error.message, code: error.code, retryInMs: delay }, 'replication link lost');
    this.emit('disconnected', { error, retryInMs: delay });
    this.reportError(error);
    this.linkState = 'waiting';
    // Resume only once every byte received so far has been parsed (the resume offset depends on it).
    void this.whenIdle().then(() => {
      if (this.stopped || this.session !== s) return;
      if (this.synced) {
        this.parser.reset(this.grouper.offset);
        this.grouper.reset(this.grouper.offset, this.grouper.db);
      }
      this.connectSoon(delay);
    });
  }

  private fail(error: ReplistreamError): void {
    if (this.stopped) return;
    this.log.error({ err: error.message, code: error.code, setting: error.setting }, 'replication link stopped');
    this.reportError(error);
    this.shutdown(error);
  }

  private reportError(error: ReplistreamError): void {
    if (this.listenerCount('error') > 0) this.emit('error', error);
  }

  private shutdown(error: ReplistreamError | null): void {
    if (this.stopped) return;
    this.stopped = true;
    this.linkState = 'closed';
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const s = this.session;
    if (s && !s.ended) this.endSession(s, error ?? connectionError('link stopped'));
    this.queue = [];
    this.queuedBytes = 0;
    this.resolveIdle();
    this.emit('close', { error });
    for (const w of this.closeWaiters.splice(0)) w();
  }

  /** Up, since when down, attempts in the outage, reconnects so far (a copy). */
  get health(): LinkHealth {
    return { ...this.linkHealth };
  }

  /** The source accepted an attempt (FULLRESYNC or CONTINUE): an outage, if any, is over. */
  private markUp(): void {
    const h = this.linkHealth;
    if (h.up) return;
    const downMs = Date.now() - (h.downSince as number);
    const retries = h.retries;
    Object.assign(h, { up: true, downSince: null, retries: 0, lastError: null, reconnects: h.reconnects + 1 });
    this.log.info({ downMs, retries }, 'replication link back');
    this.emit('reconnected', { downMs, retries });
  }

  // ------------------------------------------------------------------ handshake

  private async readReply(s: Session): Promise<HandshakeReply> {
    for (;;) {
      if (s.ended) throw s.endError ?? connectionError('connection closed');
      const r = s.reader.next();
      if (r) return r;
      await new Promise<void>((resolve) => {
        s.wake = resolve;
      });
    }
  }

  private async command(s: Session, args: string[]): Promise<HandshakeReply> {
    this.write(s, encodeCommand(args));
    for (;;) {
      const r = await this.readReply(s);
      if (r.type !== 'newline') return r;
    }
  }

  private async handshake(s: Session): Promise<void> {
    const ep = this.endpoint;
    const ping = await this.command(s, ['PING']);
    if (ping.type === 'error') {
      const authNeeded = /^(NOAUTH|NOPERM)\b/.test(ping.text) || ping.text.startsWith('ERR operation not permitted');
      if (!authNeeded) throw connectionError(`source answered PING with an error: ${ping.text}`);
      if (!ep.password) {
        throw new ReplistreamError('AUTH', `source requires authentication (${ping.text}); set a password in the source URL`, {
          setting: 'source',
        });
      }
    } else if (ping.type !== 'status') {
      throw protocolError(`unexpected reply to PING (${ping.type})`);
    }

    if (ep.password) {
      // `AUTH pass` is `AUTH default pass` on 6.0+ and the only form before: use it for `default`.
      const args = ep.username && ep.username !== 'default' ? ['AUTH', ep.username, ep.password] : ['AUTH', ep.password];
      const auth = await this.command(s, args);
      if (auth.type === 'error') {
        throw new ReplistreamError('AUTH', `source refused the credentials: ${auth.text}`, { setting: 'source' });
      }
      if (auth.type !== 'status') throw protocolError(`unexpected reply to AUTH (${auth.type})`);
    }

    const portReply = await this.command(s, ['REPLCONF', 'listening-port', String(this.opts.listeningPort ?? 0)]);
    this.ignoreError(portReply, 'REPLCONF listening-port');
    if (this.opts.announceIp) {
      this.ignoreError(await this.command(s, ['REPLCONF', 'ip-address', this.opts.announceIp]), 'REPLCONF ip-address');
    }
    this.ignoreError(await this.command(s, ['REPLCONF', 'capa', 'eof', 'capa', 'psync2']), 'REPLCONF capa');

    const resume = this.synced && this.replid !== null && this.replid !== '?';
    const psyncArgs = resume ? ['PSYNC', this.replid as string, String(this.grouper.offset + 1)] : ['PSYNC', '?', '-1'];
    this.log.info({ psync: psyncArgs.slice(1).join(' ') }, 'requesting replication stream');
    const reply = await this.command(s, psyncArgs);

    if (reply.type === 'status' && reply.text.startsWith('FULLRESYNC')) {
      const m = /^FULLRESYNC ([0-9a-zA-Z]{40}) (\d{1,16})\s*$/.exec(reply.text);
      if (!m) throw protocolError(`malformed FULLRESYNC reply: ${reply.text.slice(0, 100)}`);
      this.beginFullSync(s, m[1], Number(m[2]), false);
      await this.awaitSnapshot(s);
      return;
    }
    if (reply.type === 'status' && /^CONTINUE\b/.test(reply.text)) {
      if (!resume) throw protocolError('source answered CONTINUE to a full sync request');
      const newId = reply.text.slice('CONTINUE'.length).trim();
      const previousReplid = this.replid as string;
      if (newId) {
        if (!/^[0-9a-zA-Z]{40}$/.test(newId)) throw protocolError(`malformed CONTINUE reply: ${reply.text.slice(0, 100)}`);
        this.replid = newId;
      }
      const offset = this.grouper.offset;
      this.log.info({ replid: this.replid, offset, previousReplid }, 'partial resynchronization accepted');
      this.markUp();
      this.emit('continue', { replid: this.replid as string, offset, previousReplid });
      this.startStream(s, s.reader.takeRemainder());
      return;
    }
    if (reply.type === 'error') {
      if (/^(NOMASTERLINK|LOADING)\b/.test(reply.text)) {
        throw new ReplistreamError('CONNECTION', `source cannot serve a replica yet: ${reply.text}`, { retriable: true });
      }
      if (/^NOPERM\b/.test(reply.text)) {
        throw new ReplistreamError('AUTH', `source user may not replicate (needs +psync +replconf +ping): ${reply.text}`, {
          setting: 'source',
        });
      }
      this.log.warn({ reply: reply.text }, 'PSYNC refused, falling back to SYNC');
      this.write(s, Buffer.from('SYNC\r\n'));
      this.beginFullSync(s, '?', 0, true);
      await this.awaitSnapshot(s);
      return;
    }
    throw protocolError(`unexpected reply to PSYNC: ${reply.type === 'status' ? reply.text.slice(0, 100) : reply.type}`);
  }

  private ignoreError(reply: HandshakeReply, what: string): void {
    if (reply.type === 'error') this.log.debug({ reply: reply.text }, `${what} refused (ignored)`);
  }

  private beginFullSync(s: Session, replid: string, offset: number, legacy: boolean): void {
    s.legacy = legacy;
    s.inFullSync = true;
    this.synced = false;
    this.pending.clear();
    this.adoptPosition(replid, offset, 0);
    this.markUp();
    this.log.info({ replid, offset, legacy }, 'full synchronization');
    this.emit('fullresync', { replid, offset, legacySync: legacy });
  }

  private adoptPosition(replid: string, offset: number, db: number): void {
    this.replid = replid;
    this.parser = new RespParser({ ...PARSER_OPTIONS, offset });
    this.grouper = new CommandGrouper({ offset, db });
  }

  /** Waits for the `$len` / `$EOF:` preamble, skipping keepalives, then switches to transfer mode. */
  private async awaitSnapshot(s: Session): Promise<void> {
    for (;;) {
      const r = await this.readReply(s);
      if (r.type === 'newline') continue;
      if (r.type === 'error') {
        if (s.legacy && /^(NOPERM|NOAUTH)\b/.test(r.text)) {
          throw new ReplistreamError('AUTH', `source refused SYNC: ${r.text}`, { setting: 'source' });
        }
        throw new ReplistreamError('CONNECTION', `source aborted the snapshot transfer: ${r.text}`, { retriable: true });
      }
      if (r.type === 'status') throw protocolError(`unexpected status before the snapshot: ${r.text.slice(0, 100)}`);
      s.snapshot = new SnapshotReader(r);
      s.mode = 'transfer';
      this.linkState = 'transfer';
      this.log.info({ diskless: r.type === 'eof', bytes: r.type === 'bulk' ? r.length : undefined }, 'receiving snapshot');
      this.emit('rdb-size', { bytes: r.type === 'bulk' ? r.length : null });
      this.onTransferData(s, s.reader.takeRemainder());
      return;
    }
  }

  // ------------------------------------------------------------------ data path

  private onData(s: Session, chunk: Buffer): void {
    if (s.ended) return;
    s.lastReadAt = Date.now();
    try {
      switch (s.mode) {
        case 'handshake': {
          s.reader.push(chunk);
          const wake = s.wake;
          s.wake = null;
          wake?.();
          break;
        }
        case 'transfer':
          this.onTransferData(s, chunk);
          break;
        case 'stream':
          this.enqueue({ kind: 'stream', buf: chunk });
          break;
      }
    } catch (err) {
      this.endSession(s, toLinkError(err));
    }
  }

  private onTransferData(s: Session, chunk: Buffer): void {
    const snap = s.snapshot as SnapshotReader;
    const progress = snap.push(chunk);
    for (const d of progress.data) this.enqueue({ kind: 'rdb', buf: d });
    if (!progress.done) return;
    this.log.info({ bytes: snap.bytes, diskless: snap.diskless }, 'snapshot received');
    this.enqueue({ kind: 'rdb-end', info: { bytes: snap.bytes, diskless: snap.diskless } });
    s.snapshot = null;
    s.inFullSync = false;
    this.synced = true;
    // A diskless master sends nothing more until it gets an ACK; a disk-based one does not mind one.
    if (!s.legacy || snap.diskless) this.sendAck(s);
    this.startStream(s, progress.rest);
  }

  private startStream(s: Session, rest: Buffer): void {
    s.mode = 'stream';
    this.linkState = 'streaming';
    this.attempts = 0;
    if (rest.length > 0) this.enqueue({ kind: 'stream', buf: rest });
  }

  private enqueue(item: QueueItem): void {
    this.queue.push(item);
    this.queuedBytes += itemBytes(item);
    this.drain();
  }

  private recountQueue(): void {
    this.queuedBytes = 0;
    for (const q of this.queue) this.queuedBytes += itemBytes(q);
  }

  /**
   * Delivers queued items in order; stops at a pending consumer promise and resumes after it, and
   * at the end of the turn's slice, resuming in the next turn.
   */
  private drain(): void {
    while (!this.waitingConsumer && !this.yielding && this.queue.length > 0 && !this.stopped) {
      if (this.sliceMs > 0) {
        const now = performance.now();
        if (this.sliceStart < 0) {
          this.sliceStart = now;
          setImmediate(this.endSlice); // the check phase: after this turn's I/O callbacks
        } else if (now - this.sliceStart >= this.sliceMs) {
          this.yielding = true;
          break;
        }
      }
      const item = this.queue.shift() as QueueItem;
      this.queuedBytes -= itemBytes(item);
      let result: void | Promise<void>;
      try {
        result = this.deliver(item);
      } catch (err) {
        this.fail(consumerError(err));
        return;
      }
      if (result && typeof (result as Promise<void>).then === 'function') {
        this.waitingConsumer = true;
        (result as Promise<void>).then(
          () => {
            this.waitingConsumer = false;
            this.drain();
          },
          (err) => {
            this.waitingConsumer = false;
            this.fail(consumerError(err));
          },
        );
        break;
      }
    }
    this.updateFlow();
    if (!this.waitingConsumer && this.queue.length === 0) this.resolveIdle();
  }

  private readonly endSlice = (): void => {
    this.sliceStart = -1;
    if (!this.yielding) return;
    this.yielding = false;
    this.drain();
  };

  private deliver(item: QueueItem): void | Promise<void> {
    switch (item.kind) {
      case 'rdb':
        this.emit('rdb-chunk', item.buf);
        return this.opts.onRdbChunk?.(item.buf);
      case 'rdb-end':
        this.emit('rdb-end', item.info);
        return this.opts.onRdbEnd?.();
      case 'rdb-abort':
        this.emit('rdb-abort', item.error);
        return this.opts.onRdbAbort?.(item.error);
      case 'stream':
        return this.processStream(item.buf);
    }
  }

  private processStream(chunk: Buffer): void | Promise<void> {
    let cmds;
    try {
      cmds = this.parser.push(chunk);
    } catch (err) {
      throw new LinkFailure(toLinkError(err));
    }
    return this.processCommands(this.session, cmds, 0);
  }

  /**
   * Hands `cmds[from..]` to the grouper and the units to the listeners; when `afterUnit` asks to
   * wait, the rest follows once it settled (the bytes were received: they are processed even if
   * the session ended meanwhile, only a stop drops them).
   */
  private processCommands(s: Session | null, cmds: RespCommand[], from: number): void | Promise<void> {
    for (let i = from; i < cmds.length; i++) {
      if (this.stopped) return;
      const cmd = cmds[i];
      if (s && !s.ended && isGetAck(cmd.args) && !s.legacy) this.sendAck(s);
      const unit = this.grouper.push(cmd);
      if (unit) {
        if (this.manualConfirm) this.pending.push(unit.startOffset, unit.endOffset, unit.db);
        this.emit('unit', unit);
        const wait = this.opts.afterUnit?.();
        if (wait) return wait.then(() => this.processCommands(s, cmds, i + 1));
      }
    }
  }

  private updateFlow(): void {
    const s = this.session;
    if (!s || s.ended) return;
    const first = this.firstPending();
    const unconfirmed = first ? this.grouper.offset - first.startOffset : 0;
    const over = this.held || this.queuedBytes > this.maxBufferedBytes || unconfirmed > this.maxUnconfirmedBytes;
    const under = !this.held && this.queuedBytes <= this.maxBufferedBytes / 2 && unconfirmed <= this.maxUnconfirmedBytes / 2;
    if (!this.paused && over) {
      this.paused = true;
      s.socket.pause();
      if (this.held) this.log.info('held: not reading from the source');
      else this.log.warn({ queuedBytes: this.queuedBytes, unconfirmed }, 'consumer is slow: pausing the source connection');
    } else if (this.paused && under) {
      this.paused = false;
      s.lastReadAt = Date.now();
      s.socket.resume();
      this.log.info('resuming the source connection');
    }
  }

  private whenIdle(): Promise<void> {
    if (!this.waitingConsumer && this.queue.length === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private resolveIdle(): void {
    for (const w of this.idleWaiters.splice(0)) w();
  }

  private sendAck(s: Session): void {
    const offset = this.ackOffset;
    if (offset === null || s.ended) return;
    s.lastAckAt = Date.now();
    this.write(s, encodeCommand(['REPLCONF', 'ACK', String(offset)]));
  }

  private write(s: Session, data: Buffer): void {
    if (!s.ended && !s.socket.destroyed) s.socket.write(data);
  }
}

/** Offsets and databases of the emitted, unconfirmed units, oldest first (three flat arrays). */
class PendingUnits {
  private start: number[] = [];
  private end: number[] = [];
  private db: number[] = [];
  private head = 0;

  push(startOffset: number, endOffset: number, db: number): void {
    this.start.push(startOffset);
    this.end.push(endOffset);
    this.db.push(db);
  }

  first(): { startOffset: number; db: number } | undefined {
    return this.head < this.start.length ? { startOffset: this.start[this.head], db: this.db[this.head] } : undefined;
  }

  /** Forgets every unit ending at or before `offset`. */
  confirm(offset: number): void {
    let h = this.head;
    const n = this.start.length;
    while (h < n && this.end[h] <= offset) h++;
    if (h === n) {
      this.clear();
      return;
    }
    if (h > 1024 && h * 2 > n) {
      this.start = this.start.slice(h);
      this.end = this.end.slice(h);
      this.db = this.db.slice(h);
      h = 0;
    }
    this.head = h;
  }

  clear(): void {
    this.start = [];
    this.end = [];
    this.db = [];
    this.head = 0;
  }
}

/** Carries a stream error out of the consumer-delivery loop so it is not blamed on the consumer. */
class LinkFailure extends Error {
  constructor(readonly error: ReplistreamError) {
    super(error.message);
  }
}

function itemBytes(item: QueueItem): number {
  return item.kind === 'rdb' || item.kind === 'stream' ? item.buf.length : 0;
}

function encodeCommand(args: string[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = Buffer.from(a, 'utf8');
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

function connectionError(message: string, cause?: unknown): ReplistreamError {
  return new ReplistreamError('CONNECTION', message, { retriable: true, cause });
}

/** TLS verification failures need a configuration change: retrying cannot help. */
const TLS_CONFIG_ERRORS =
  /^(DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|CERT_\w+|ERR_TLS_CERT_ALTNAME_INVALID|ERR_SSL_WRONG_VERSION_NUMBER|ERR_SSL_\w*CERTIFICATE\w*)$/;

function socketError(ep: Endpoint, err: Error & { code?: string }): ReplistreamError {
  const message = `connection to ${ep.safeUrl} failed: ${err.message}`;
  if (ep.tls && err.code && TLS_CONFIG_ERRORS.test(err.code)) {
    return new ReplistreamError('CONNECTION', `${message} (check the source's TLS settings: CA, host name)`, {
      retriable: false,
      setting: 'source',
      cause: err,
      details: { code: err.code },
    });
  }
  return connectionError(message, err);
}

function protocolError(message: string): ReplistreamError {
  return new ReplistreamError('PROTOCOL', `source: ${message}`);
}

function toLinkError(err: unknown): ReplistreamError {
  if (err instanceof ReplistreamError) return err;
  if (err instanceof LinkFailure) return err.error;
  return new ReplistreamError('INTERNAL', `replica link: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}

function consumerError(err: unknown): ReplistreamError {
  if (err instanceof LinkFailure) return err.error;
  if (err instanceof ReplistreamError) return err;
  return new ReplistreamError('INTERNAL', `replication consumer failed: ${err instanceof Error ? err.message : String(err)}`, {
    cause: err,
  });
}
