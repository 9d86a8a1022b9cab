/**
 * Delivery and flow control: what the link hands its consumer (snapshot bytes, the snapshot's end
 * or abort, the stream's units), in order, and the backpressure on the socket.
 *
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
 */
import type { EventEmitter } from 'node:events';
import type { ReplistreamError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { isGetAck, type CommandGrouper } from '../resp/grouper.js';
import type { RespCommand, RespParser } from '../resp/parser.js';
import type { ConfirmWindow } from './confirm-window.js';
import { consumerError, LinkFailure, toLinkError } from './link-errors.js';
import type { Session } from './link-session.js';
import type { RdbEndInfo, ReplicaLinkEvents, ReplicaLinkOptions } from './link-types.js';

export type QueueItem =
  | { kind: 'rdb'; buf: Buffer }
  | { kind: 'rdb-end'; info: RdbEndInfo }
  | { kind: 'rdb-abort'; error: ReplistreamError }
  | { kind: 'stream'; buf: Buffer };

/** What the delivery queue reads of the link, and what it tells it; one object made with the link. */
export interface DeliveryContext {
  readonly opts: Pick<ReplicaLinkOptions, 'onRdbChunk' | 'onRdbEnd' | 'onRdbAbort' | 'afterUnit'>;
  /** Milliseconds of delivery in one turn of the event loop; 0 never yields. */
  readonly sliceMs: number;
  /** The link: every item delivered is also one of its events. */
  readonly events: Pick<EventEmitter<ReplicaLinkEvents>, 'emit'>;
  /** Keeps the emitted units until they are confirmed (manual-confirm mode). */
  readonly window: Pick<ConfirmWindow, 'track'>;
  readonly flow: Pick<FlowControl, 'update'>;
  stopped(): boolean;
  /** The current session, if any: the stream's GETACKs are answered on it. */
  session(): Session | null;
  /** The stream's parser and grouper (sync-state.ts), made anew at each full sync. */
  parser(): RespParser;
  grouper(): CommandGrouper;
  /** `REPLCONF ACK` now, on `s` (the answer to a GETACK). */
  sendAck(s: Session): void;
  /** The consumer failed, or the stream it was handed cannot be parsed: the link stops. */
  fail(error: ReplistreamError): void;
}

export class DeliveryQueue {
  private readonly ctx: DeliveryContext;
  private queue: QueueItem[] = [];
  private queuedBytes = 0;
  private waitingConsumer = false;
  /** performance.now() of the first delivery in this turn of the event loop; -1 between turns. */
  private sliceStart = -1;
  /** The slice is used up: deliveries wait for the end of the turn (`endSlice`). */
  private yielding = false;
  private idleWaiters: Array<() => void> = [];

  constructor(ctx: DeliveryContext) {
    this.ctx = ctx;
  }

  /** Bytes of snapshot and stream waiting for delivery. */
  get bytes(): number {
    return this.queuedBytes;
  }

  enqueue(item: QueueItem): void {
    this.queue.push(item);
    this.queuedBytes += itemBytes(item);
    this.drain();
  }

  /** Drops the snapshot bytes not delivered yet (the snapshot was cut: they are useless now). */
  dropSnapshotBytes(): void {
    this.queue = this.queue.filter((q) => q.kind !== 'rdb');
    this.queuedBytes = 0;
    for (const q of this.queue) this.queuedBytes += itemBytes(q);
  }

  /** Drops everything undelivered (the link stops) and releases whoever waits for idleness. */
  clear(): void {
    this.queue = [];
    this.queuedBytes = 0;
    this.resolveIdle();
  }

  /** Resolves once everything queued is delivered and no consumer promise is pending. */
  whenIdle(): Promise<void> {
    if (!this.waitingConsumer && this.queue.length === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /**
   * Delivers queued items in order; stops at a pending consumer promise and resumes after it, and
   * at the end of the turn's slice, resuming in the next turn.
   */
  private drain(): void {
    const ctx = this.ctx;
    while (!this.waitingConsumer && !this.yielding && this.queue.length > 0 && !ctx.stopped()) {
      if (ctx.sliceMs > 0) {
        const now = performance.now();
        if (this.sliceStart < 0) {
          this.sliceStart = now;
          setImmediate(this.endSlice); // the check phase: after this turn's I/O callbacks
        } else if (now - this.sliceStart >= ctx.sliceMs) {
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
        ctx.fail(consumerError(err));
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
            ctx.fail(consumerError(err));
          },
        );
        break;
      }
    }
    ctx.flow.update();
    if (!this.waitingConsumer && this.queue.length === 0) this.resolveIdle();
  }

  private readonly endSlice = (): void => {
    this.sliceStart = -1;
    if (!this.yielding) return;
    this.yielding = false;
    this.drain();
  };

  private resolveIdle(): void {
    for (const w of this.idleWaiters.splice(0)) w();
  }

  private deliver(item: QueueItem): void | Promise<void> {
    const { events, opts } = this.ctx;
    switch (item.kind) {
      case 'rdb':
        events.emit('rdb-chunk', item.buf);
        return opts.onRdbChunk?.(item.buf);
      case 'rdb-end':
        events.emit('rdb-end', item.info);
        return opts.onRdbEnd?.();
      case 'rdb-abort':
        events.emit('rdb-abort', item.error);
        return opts.onRdbAbort?.(item.error);
      case 'stream':
        return this.processStream(item.buf);
    }
  }

  private processStream(chunk: Buffer): void | Promise<void> {
    let cmds;
    try {
      cmds = this.ctx.parser().push(chunk);
    } catch (err) {
      throw new LinkFailure(toLinkError(err));
    }
    return this.processCommands(this.ctx.session(), cmds, 0);
  }

  /**
   * Hands `cmds[from..]` to the grouper and the units to the listeners; when `afterUnit` asks to
   * wait, the rest follows once it settled (the bytes were received: they are processed even if
   * the session ended meanwhile, only a stop drops them).
   */
  private processCommands(s: Session | null, cmds: RespCommand[], from: number): void | Promise<void> {
    const ctx = this.ctx;
    for (let i = from; i < cmds.length; i++) {
      if (ctx.stopped()) return;
      const cmd = cmds[i];
      if (s && !s.ended && isGetAck(cmd.args) && !s.legacy) ctx.sendAck(s);
      const unit = ctx.grouper().push(cmd);
      if (unit) {
        ctx.window.track(unit);
        ctx.events.emit('unit', unit);
        const wait = ctx.opts.afterUnit?.();
        if (wait) return wait.then(() => this.processCommands(s, cmds, i + 1));
      }
    }
  }
}

/** What flow control reads of the link; one object made with the link. */
export interface FlowContext {
  readonly maxBufferedBytes: number;
  readonly maxUnconfirmedBytes: number;
  readonly log: Logger;
  session(): Session | null;
  /** Bytes queued for delivery. */
  queuedBytes(): number;
  /** Bytes of stream emitted but not confirmed (manual-confirm mode). */
  unconfirmedBytes(): number;
}

/**
 * Backpressure: pauses the socket while more than `maxBufferedBytes` is queued or more than
 * `maxUnconfirmedBytes` is unconfirmed, or while held, and resumes it once both fell to half.
 */
export class FlowControl {
  private readonly ctx: FlowContext;
  private socketPaused = false;
  /** Held by the operator (capture paused): the socket stays paused whatever the queues. */
  private held = false;

  constructor(ctx: FlowContext) {
    this.ctx = ctx;
  }

  /** The socket is paused: the source's silence is then no sign of a dead link. */
  get paused(): boolean {
    return this.socketPaused;
  }

  /** A new session: its socket is read from the start. */
  newSocket(): void {
    this.socketPaused = false;
  }

  hold(on: boolean): void {
    this.held = on;
    this.update();
  }

  /** Pauses or resumes the current session's socket after a change of the queue, the window or the hold. */
  update(): void {
    const ctx = this.ctx;
    const s = ctx.session();
    if (!s || s.ended) return;
    const queuedBytes = ctx.queuedBytes();
    const unconfirmed = ctx.unconfirmedBytes();
    const over = this.held || queuedBytes > ctx.maxBufferedBytes || unconfirmed > ctx.maxUnconfirmedBytes;
    const under = !this.held && queuedBytes <= ctx.maxBufferedBytes / 2 && unconfirmed <= ctx.maxUnconfirmedBytes / 2;
    if (!this.socketPaused && over) {
      this.socketPaused = true;
      s.socket.pause();
      if (this.held) ctx.log.info('held: not reading from the source');
      else ctx.log.warn({ queuedBytes, unconfirmed }, 'consumer is slow: pausing the source connection');
    } else if (this.socketPaused && under) {
      this.socketPaused = false;
      s.lastReadAt = Date.now();
      s.socket.resume();
      ctx.log.info('resuming the source connection');
    }
  }
}

function itemBytes(item: QueueItem): number {
  return item.kind === 'rdb' || item.kind === 'stream' ? item.buf.length : 0;
}
