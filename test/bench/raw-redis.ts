/**
 * A load generator's Redis connection: commands pipelined, one socket write per event-loop turn
 * (the destination writer's RESP codec encodes them and reads the replies), no promise per
 * command: a unit's callback runs once its replies are in.
 *
 * Why not ioredis: a benchmark's generator shares this 2-core machine with everything it
 * measures. Through ioredis (a promise, a Command object and a decoded reply per command), the
 * mixed bench's generator used half a core at 20,000 commands/s, more than the applier, and the
 * lag it measured was partly its own.
 */
import { Socket } from 'node:net';
import { encodeCommands, RespReplyError, RespReplyParser } from '../../services/destination/resp-codec.js';

export type RawArg = string | number;

interface Pending {
  /** Replies still to come for this unit (MULTI … EXEC is one unit of several commands). */
  left: number;
  failed: boolean;
  done: ((failed: boolean) => void) | null;
}

/** A connected, no-delay socket to a load generator's Redis; `gone` on error or close. */
function openSocket(port: number, host: string, onData: (chunk: Buffer) => void, gone: () => void): { socket: Socket; ready: Promise<void> } {
  const socket = new Socket();
  socket.setNoDelay(true);
  const ready = new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  socket.on('error', gone);
  socket.on('close', gone);
  socket.on('data', onData);
  socket.connect(port, host);
  return { socket, ready };
}

export class RawRedis {
  private readonly socket: Socket;
  private out: string[][] = [];
  private flushing = false;
  private readonly pending: Pending[] = [];
  private head = 0;
  private readonly replies = new RespReplyParser();
  private closed = false;
  readonly ready: Promise<void>;

  constructor(port: number, db: number, host = '127.0.0.1') {
    ({ socket: this.socket, ready: this.ready } = openSocket(port, host, (chunk) => this.onData(chunk), () => this.failAll()));
    if (db !== 0) this.send([['SELECT', db]], null);
  }

  /** Sends `commands` as one unit; `done(failed)` once every reply came (failed: one was an error). */
  send(commands: readonly (readonly RawArg[])[], done: ((failed: boolean) => void) | null): void {
    if (this.closed) {
      done?.(true);
      return;
    }
    for (const args of commands) this.out.push(args.map(String));
    this.pending.push({ left: commands.length, failed: false, done });
    if (!this.flushing) {
      this.flushing = true;
      process.nextTick(() => this.flush());
    }
  }

  close(): void {
    this.closed = true;
    this.socket.destroy();
    this.failAll();
  }

  private flush(): void {
    this.flushing = false;
    if (this.out.length === 0 || this.closed) return;
    const bytes = encodeCommands(this.out);
    this.out = [];
    this.socket.write(bytes);
  }

  private onData(chunk: Buffer): void {
    for (const reply of this.replies.push(chunk)) this.answer(reply instanceof RespReplyError);
  }

  private answer(error: boolean): void {
    const u = this.pending[this.head];
    if (!u) return; // (a reply after failAll)
    if (error) u.failed = true;
    if (--u.left > 0) return;
    this.pending[this.head++] = undefined as unknown as Pending;
    if (this.head > 4096 && this.head * 2 > this.pending.length) {
      this.pending.splice(0, this.head);
      this.head = 0;
    }
    u.done?.(u.failed);
  }

  private failAll(): void {
    this.closed = true;
    const left = this.pending.slice(this.head);
    this.pending.length = 0;
    this.head = 0;
    for (const u of left) u?.done?.(true);
  }
}

/**
 * The e2e bench's paced SETs: a batch is one string written at once, and the replies (`+OK` or
 * `-ERR …`, one line each: nothing else answers SET or SELECT) are counted, not parsed.
 *
 * Why not `RawRedis`: at 100,000 SET/s the probe's writer used 2.8 CPU-s in 10 s (an array, a
 * closure and a reply object per SET), on a machine the load itself kept 97 % busy; every
 * contender's lag was partly the generator's. redis-benchmark, the load the goal is written for,
 * costs a fraction of that.
 */
export class RawSetWriter {
  private readonly socket: Socket;
  /** Replies read so far (SELECT's included). */
  private replies = 0;
  private lineStart = true;
  private closed = false;
  /** Called for each reply with its index among the SETs' (SELECT's excluded) and whether it was an error. */
  onReply: ((index: number, failed: boolean) => void) | null = null;
  private readonly skip: number;
  readonly ready: Promise<void>;

  constructor(port: number, db: number, host = '127.0.0.1') {
    ({ socket: this.socket, ready: this.ready } = openSocket(port, host, (chunk) => this.onData(chunk), () => (this.closed = true)));
    this.skip = db !== 0 ? 1 : 0;
    if (db !== 0) this.socket.write(encodeCommands([['SELECT', String(db)]]));
  }

  /** Appends `SET key value` to `out` (keys and value ASCII: their lengths are their byte counts). */
  static set(out: string, key: string, value: string): string {
    return `${out}*3\r\n$3\r\nSET\r\n$${key.length}\r\n${key}\r\n$${value.length}\r\n${value}\r\n`;
  }

  write(batch: string): void {
    if (!this.closed && batch.length > 0) this.socket.write(batch);
  }

  close(): void {
    this.closed = true;
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    let failed = false;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i];
      if (this.lineStart) {
        failed = c === 0x2d; // '-'
        this.lineStart = false;
      }
      if (c === 0x0a) {
        this.lineStart = true;
        const n = this.replies++;
        if (n >= this.skip) this.onReply?.(n - this.skip, failed);
      }
    }
  }
}
