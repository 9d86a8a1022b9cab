/**
 * One plain connection to a standalone destination for the writer's transactions: a batch of
 * commands is written as one buffer and its replies are counted back (resp-codec.ts).
 *
 * Like the ioredis connections of connection.ts, it never re-sends anything: when the connection
 * drops, every batch in flight fails with a connection error (the writer then treats the outcome
 * as unknown and re-reads its positions), and the next batch reconnects. WATCH state lives on a
 * connection, so a transaction's check and its MULTI…EXEC go through the same one.
 *
 * A connection that leaves a request unanswered for `replyTimeoutMs` (destination-timeout-ms) is
 * dropped the same way: a half-open connection (a partition, no FIN, no RST) would otherwise hold
 * the writer for as long as TCP takes to notice, many minutes. A request that is only slow (a big
 * RESTORE, a FLUSHALL) and outlives it costs a retry, not a duplicate: its outcome counts as
 * unknown, and the positions stored with the writes tell what landed.
 */
import net from 'node:net';
import tls from 'node:tls';
import { connections } from '../common/connection-settings.js';
import { ReplistreamError } from '../common/errors.js';
import { mapConnectError, type RedisEndpoint } from './connection.js';
import { commandCount, encodeCommandChunks, RespReplyError, RespReplyParser, type RespArg, type RespReply, type RespSendable } from './resp-codec.js';

interface Pending {
  want: number;
  replies: RespReply[];
  resolve: (replies: RespReply[]) => void;
  reject: (err: Error) => void;
}

export class RespConnection {
  private socket: net.Socket | null = null;
  private connecting: Promise<net.Socket> | null = null;
  private parser = new RespReplyParser();
  private readonly pending: Pending[] = [];
  /** Counts the sockets opened: a WATCH holds only on the socket that sent it. */
  private opened = 0;
  /** Fires when the oldest request waited `replyTimeoutMs` for a byte of reply. */
  private replyTimer: NodeJS.Timeout | null = null;
  private lastByteAt = 0;

  constructor(
    private readonly ep: RedisEndpoint,
    private readonly name: string,
    private readonly connectTimeoutMs = 10_000,
    private readonly replyTimeoutMs = connections().redisTimeoutMs.destination,
  ) {}

  /** Which socket is open (changes at every reconnection); pass it to `send` to stay on it. */
  get connectionId(): number {
    return this.opened;
  }

  /**
   * Sends `commands` in one write; resolves with one reply per command, in order. With
   * `onConnection`, fails (CONNECTION, retriable) instead of reconnecting when that socket is gone:
   * a MULTI…EXEC must go on the socket that sent its WATCH.
   */
  send(commands: readonly RespSendable[], onConnection?: number): Promise<RespReply[]> {
    if (onConnection !== undefined && (this.socket === null || this.opened !== onConnection)) {
      return Promise.reject(new ReplistreamError('CONNECTION', `${this.ep.display}: connection lost between WATCH and EXEC`, { retriable: true }));
    }
    // on an open socket the bytes leave before this returns: a caller can work on its next request
    // while the destination runs this one
    if (this.socket) return this.sendOn(this.socket, commands);
    return this.connect().then((socket) => this.sendOn(socket, commands));
  }

  close(): void {
    this.disarm();
    const s = this.socket;
    this.socket = null;
    this.connecting = null;
    s?.destroy();
    this.failAll(new ReplistreamError('CONNECTION', `${this.ep.display}: connection closed`, { retriable: true }));
  }

  private sendOn(socket: net.Socket, commands: readonly RespSendable[]): Promise<RespReply[]> {
    return new Promise<RespReply[]>((resolve, reject) => {
      const want = commandCount(commands);
      if (want === 0) return resolve([]);
      if (this.pending.length === 0) this.lastByteAt = Date.now(); // silence counts from the first request waiting
      this.pending.push({ want, replies: [], resolve, reject });
      // big arguments are written from where they are, not copied into the request (resp-codec.ts)
      const chunks = encodeCommandChunks(commands);
      if (chunks.length === 1) socket.write(chunks[0]);
      else {
        socket.cork();
        for (const c of chunks) socket.write(c);
        socket.uncork();
      }
      if (!this.replyTimer) this.arm(socket);
    });
  }

  /** Watches for silence while requests wait (a timer per request would cost on every reply). */
  private arm(socket: net.Socket, delayMs = this.replyTimeoutMs): void {
    this.replyTimer = setTimeout(() => {
      this.replyTimer = null;
      if (this.pending.length === 0 || socket.destroyed) return;
      const silentMs = Date.now() - this.lastByteAt;
      if (silentMs < this.replyTimeoutMs) return this.arm(socket, this.replyTimeoutMs - silentMs);
      if (this.socket === socket) this.socket = null;
      // deaf to the old socket from now on: its late close must not fail the requests of the next
      // one, nor its late bytes reach the next one's parser
      socket.removeAllListeners('data').removeAllListeners('close').removeAllListeners('error').on('error', () => undefined);
      socket.destroy();
      this.failAll(
        new ReplistreamError('CONNECTION', `${this.ep.display}: no reply within ${this.replyTimeoutMs / 1000} s (the connection is dropped and made again; destination-timeout-ms sets the bound)`, {
          retriable: true,
          setting: 'destination',
        }),
      );
    }, delayMs);
    this.replyTimer.unref();
  }

  private disarm(): void {
    if (this.replyTimer) clearTimeout(this.replyTimer);
    this.replyTimer = null;
  }

  private connect(): Promise<net.Socket> {
    if (this.socket) return Promise.resolve(this.socket);
    if (!this.connecting) {
      this.connecting = this.open().then(
        (s) => {
          this.socket = s;
          this.opened++;
          this.connecting = null;
          return s;
        },
        (err) => {
          this.connecting = null;
          throw err;
        },
      );
    }
    return this.connecting;
  }

  private async open(): Promise<net.Socket> {
    const ep = this.ep;
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = ep.tls
        ? tls.connect({ host: ep.host, port: ep.port, ...(ep.tlsOptions ?? { servername: ep.host }) }, () => done(null))
        : net.connect({ host: ep.host, port: ep.port }, () => done(null));
      const timer = setTimeout(() => done(new Error(`connect timeout after ${this.connectTimeoutMs} ms`)), this.connectTimeoutMs);
      const done = (err: Error | null) => {
        clearTimeout(timer);
        s.off('error', done);
        if (err) {
          s.destroy();
          reject(mapConnectError(err, ep, 'destination'));
        } else resolve(s);
      };
      s.once('error', done);
    });
    socket.setNoDelay(true);
    this.parser = new RespReplyParser();
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    const lost = (why: string) => {
      if (this.socket === socket) this.socket = null;
      this.failAll(new ReplistreamError('CONNECTION', `${ep.display}: ${why}`, { retriable: true }));
    };
    socket.on('error', (err) => lost(err.message));
    socket.on('close', () => lost('connection closed'));
    const hello: RespArg[][] = [];
    if (ep.password !== undefined) hello.push(ep.username ? ['AUTH', ep.username, ep.password] : ['AUTH', ep.password]);
    hello.push(['CLIENT', 'SETNAME', this.name]);
    const replies = await this.sendOn(socket, hello);
    // CLIENT SETNAME may be forbidden (renamed commands, ACLs): only AUTH's answer matters
    if (ep.password !== undefined && replies[0] instanceof RespReplyError) {
      socket.destroy();
      throw mapConnectError(replies[0], ep, 'destination');
    }
    return socket;
  }

  private onData(chunk: Buffer): void {
    let replies: RespReply[];
    try {
      replies = this.parser.push(chunk);
    } catch (err) {
      this.failAll(new ReplistreamError('PROTOCOL', `${this.ep.display}: unreadable reply: ${(err as Error).message}`, { retriable: true, cause: err }));
      this.socket?.destroy();
      this.socket = null;
      return;
    }
    for (const r of replies) {
      const p = this.pending[0];
      if (!p) continue; // a reply nobody waits for (cannot happen on a healthy connection)
      p.replies.push(r);
      if (p.replies.length === p.want) {
        this.pending.shift();
        p.resolve(p.replies);
      }
    }
    this.lastByteAt = Date.now();
    if (this.pending.length === 0) this.disarm();
  }

  private failAll(err: Error): void {
    this.disarm();
    for (const p of this.pending.splice(0)) p.reject(err);
  }
}
