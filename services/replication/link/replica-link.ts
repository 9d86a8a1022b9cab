import { EventEmitter } from 'node:events';
import { connections } from '../../common/connection-settings.js';
import { ReplistreamError } from '../../common/errors.js';
import { createLogger, type Logger } from '../../common/log.js';
import { ConfirmWindow } from './confirm-window.js';
import { DeliveryQueue, FlowControl } from './delivery-queue.js';
import { Handshake } from './handshake.js';
import { connectionError, socketError, toLinkError } from './link-errors.js';
import { newSession, waitConnected, type Session } from './link-session.js';
import type { LinkHealth, ReplicaLinkEvents, ReplicaLinkOptions, ReplicaLinkState, ReplicaPosition } from './link-types.js';
import { OutageTracker } from './outage.js';
import { locateSource, moveEndpoint, openSocket, parseRedisUrl, type Endpoint } from './source-endpoint.js';
import { SyncState } from './sync-state.js';

export type {
  ContinueInfo,
  DisconnectedInfo,
  FullResyncInfo,
  LinkHealth,
  RdbEndInfo,
  ReplicaLinkEvents,
  ReplicaLinkOptions,
  ReplicaLinkState,
  ReplicaLinkTlsOptions,
  ReplicaPosition,
} from './link-types.js';
export { parseRedisUrl } from './source-endpoint.js';

/**
 * The replica side of Redis replication, as a library: connects to a source Redis, performs the
 * replica handshake, receives the snapshot (RDB) and then the command stream, ACKs its offset,
 * and reconnects with PSYNC after a cut.
 *
 * This file holds the link's public API and lifecycle (start, stop, sessions and their socket
 * events, reconnects) and composes its parts, each in a file named for its job:
 * - handshake.ts: PING, AUTH, REPLCONF, PSYNC (or SYNC) and what the replies decide: a full sync
 *   or a continued stream, a retriable or a fatal refusal; then the snapshot's preamble.
 * - sync-state.ts: the stream followed and how far it is processed; the steps of a sync (full
 *   sync, snapshot transfer, stream, continue), the resume point and the ACKs.
 * - delivery-queue.ts: what the consumer is handed (snapshot bytes, units), in order and in
 *   slices of the event loop's turns; the backpressure that pauses the socket.
 * - confirm-window.ts: the units emitted and not confirmed yet; the ACKed offset and `position`.
 * - outage.ts: the link's health, the backoff between attempts, when to give up.
 * - link-session.ts: one connection (socket, reply reader, timers); source-endpoint.ts: the URL,
 *   the address after a failover, the TCP or TLS socket; link-errors.ts: which errors are retried.
 * - link-types.ts: the public types, re-exported here.
 *
 * Offsets are Redis replication offsets: the number of stream bytes before a point, the value
 * `INFO replication` shows as `master_repl_offset`. A unit spans `[startOffset, endOffset)`.
 *
 * Delivery and flow control (the `onRdb*` callbacks, `afterUnit`, `maxBufferedBytes`, `sliceMs`):
 * see delivery-queue.ts.
 *
 * Acknowledgements
 * - Every `ackIntervalMs` (1 s) the link sends `REPLCONF ACK <offset>`; `REPLCONF GETACK` is
 *   answered at once, with the offset before the GETACK.
 * - Which offset, with `manualConfirm` and without, and `maxUnconfirmedBytes`: see confirm-window.ts.
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

export class ReplicaLink extends EventEmitter<ReplicaLinkEvents> {
  private readonly endpoint: Endpoint;
  private readonly opts: ReplicaLinkOptions;
  private readonly log: Logger;
  private readonly ackIntervalMs: number;
  private readonly connectTimeoutMs: number;
  private readonly readTimeoutMs: number;

  private linkState: ReplicaLinkState = 'idle';
  private stopped = false;
  private session: Session | null = null;
  private sessionSeq = 0;
  private readonly outage: OutageTracker;
  private reconnectTimer: NodeJS.Timeout | null = null;

  private readonly sync: SyncState;
  private readonly handshake: Handshake;
  private readonly queue: DeliveryQueue;
  private readonly flow: FlowControl;
  private readonly window: ConfirmWindow;
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
    this.outage = new OutageTracker(opts);
    this.window = new ConfirmWindow(opts.manualConfirm ?? false);
    this.flow = new FlowControl({
      maxBufferedBytes: opts.maxBufferedBytes ?? 256 * 1024 * 1024,
      maxUnconfirmedBytes: opts.maxUnconfirmedBytes ?? 256 * 1024 * 1024,
      log: this.log,
      session: () => this.session,
      queuedBytes: () => this.queue.bytes,
      unconfirmedBytes: () => this.window.unconfirmedBytes(this.sync.grouper.offset),
    });
    this.queue = new DeliveryQueue({
      opts,
      sliceMs: opts.sliceMs ?? 10,
      events: this,
      window: this.window,
      flow: this.flow,
      stopped: () => this.stopped,
      session: () => this.session,
      parser: () => this.sync.parser,
      grouper: () => this.sync.grouper,
      sendAck: (s) => this.sync.sendAck(s),
      fail: (error) => this.fail(error),
    });
    this.sync = new SyncState({
      log: this.log,
      events: this,
      queue: this.queue,
      window: this.window,
      sourceAccepted: () => this.markUp(),
      transferStarts: () => {
        this.linkState = 'transfer';
      },
      streamStarts: () => {
        this.linkState = 'streaming';
        this.outage.streaming();
      },
    });
    this.handshake = new Handshake({
      endpoint: this.endpoint,
      opts,
      log: this.log,
      outcomes: this.sync,
    });
    if (opts.start) this.sync.resumeFrom(opts.start);
  }

  // ------------------------------------------------------------------ public API

  get state(): ReplicaLinkState {
    return this.linkState;
  }

  /** Where a restarted capture may resume from: confirmed (manual mode) or processed offset. */
  get position(): ReplicaPosition | null {
    return this.sync.position;
  }

  /** Offset after the last unit (or PING/SELECT/REPLCONF) handled; null before a sync. */
  get processedOffset(): number | null {
    return this.sync.processedOffset;
  }

  /** The offset the link reports in `REPLCONF ACK`. */
  get ackOffset(): number | null {
    return this.sync.ackOffset;
  }

  /** Replication id currently followed. */
  get replicationId(): string | null {
    return this.sync.replid;
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
    if (!this.window.manual) return;
    this.window.confirm(offset);
    this.flow.update();
  }

  /**
   * Stops reading from the source (true) or reads again (false). ACKs go on, so the source keeps
   * the link; what it sends meanwhile waits in its output buffer for this replica, and a link it
   * drops for exceeding that buffer resumes from the backlog by PSYNC (a full sync once the
   * backlog no longer holds the position).
   */
  hold(on: boolean): void {
    this.flow.hold(on);
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
    moveEndpoint(ep, addr.host, addr.port, this.log);
    const s = this.session;
    if (s && !s.ended) {
      this.endSession(s, connectionError(`the source moved to ${ep.safeUrl} (Sentinel announced a failover)`));
    } else if (this.reconnectTimer) {
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = null;
      this.connectSoon(0);
    }
  }

  // ------------------------------------------------------------------ connection lifecycle

  private connectSoon(delayMs: number): void {
    this.linkState = delayMs > 0 ? 'waiting' : 'connecting';
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.stopped) return;
      this.linkState = 'connecting';
      void locateSource(this.endpoint, this.opts.resolveEndpoint, this.log).then(() => {
        if (!this.stopped) void this.runSession();
      });
    }, delayMs);
  }

  private async runSession(): Promise<void> {
    const id = ++this.sessionSeq;
    this.outage.attemptStarts();
    const ep = this.endpoint;
    const socket = openSocket(ep, this.opts.tls ?? {});
    const s = newSession(id, socket);
    this.flow.newSocket();
    this.session = s;
    socket.on('data', (chunk: Buffer) => this.onData(s, chunk));
    socket.on('error', (err) => this.endSession(s, socketError(ep, err)));
    socket.on('close', () => this.endSession(s, connectionError(`connection to ${ep.safeUrl} closed`)));
    try {
      await waitConnected(s, ep, this.connectTimeoutMs);
      socket.setNoDelay(true);
      socket.setKeepAlive(true, 10_000);
      s.lastReadAt = Date.now();
      s.timer = setInterval(() => this.tick(s), Math.min(this.ackIntervalMs, 250));
      this.linkState = 'handshake';
      this.log.info({ host: ep.host, port: ep.port, tls: ep.tls }, 'connected to source');
      this.emit('connected', { host: ep.host, port: ep.port, tls: ep.tls });
      await this.handshake.run(s);
    } catch (err) {
      this.endSession(s, toLinkError(err));
    }
  }

  /** Periodically: ACK when streaming, and detect a silent master. */
  private tick(s: Session): void {
    if (s.ended) return;
    const now = Date.now();
    if (!this.flow.paused && now - s.lastReadAt > this.readTimeoutMs) {
      this.endSession(s, connectionError(`no data from the source for ${Math.round(this.readTimeoutMs / 1000)} s (source-timeout-ms): the link is made again`));
      return;
    }
    if (s.mode === 'stream' && !s.legacy && now - s.lastAckAt >= this.ackIntervalMs - 50) this.sync.sendAck(s);
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

    if (s.inFullSync) this.sync.abortSnapshot(error);

    if (!error.retriable) {
      this.fail(error);
      return;
    }
    const next = this.outage.lost(error, this.endpoint.safeUrl);
    if ('giveUp' in next) {
      this.fail(next.giveUp);
      return;
    }
    const delay = next.retryInMs;
    this.log.warn({ err: error.message, code: error.code, retryInMs: delay }, 'replication link lost');
    this.emit('disconnected', { error, retryInMs: delay });
    this.reportError(error);
    this.linkState = 'waiting';
    // Resume only once every byte received so far has been parsed (the resume offset depends on it).
    void this.queue.whenIdle().then(() => {
      if (this.stopped || this.session !== s) return;
      this.sync.rewind();
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
    this.queue.clear();
    this.emit('close', { error });
    for (const w of this.closeWaiters.splice(0)) w();
  }

  /** Up, since when down, attempts in the outage, reconnects so far (a copy). */
  get health(): LinkHealth {
    return this.outage.health;
  }

  /** The source accepted an attempt (FULLRESYNC or CONTINUE): an outage, if any, is over. */
  private markUp(): void {
    const outage = this.outage.over();
    if (!outage) return;
    const { downMs, retries } = outage;
    this.log.info({ downMs, retries }, 'replication link back');
    this.emit('reconnected', { downMs, retries });
  }

  // ------------------------------------------------------------------ the session's bytes

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
          this.sync.onTransferData(s, chunk);
          break;
        case 'stream':
          this.queue.enqueue({ kind: 'stream', buf: chunk });
          break;
      }
    } catch (err) {
      this.endSession(s, toLinkError(err));
    }
  }
}
