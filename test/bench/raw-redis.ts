/**
 * A load generator's Redis connection: commands written as RESP text, pipelined, one socket
 * write per event-loop turn, replies only counted (and errors noticed), never decoded.
 *
 * Why not ioredis: a benchmark's generator shares this 2-core machine with everything it
 * measures. Through ioredis (a promise, a Command object and a decoded reply per command), the
 * mixed bench's generator used half a core at 20,000 commands/s, more than the applier, and the
 * lag it measured was partly its own. Here a command costs a string and a few bytes of parsing.
 */
import { Socket } from 'node:net';

export type RawArg = string | number;

interface Pending {
  /** Replies still to come for this unit (MULTI … EXEC is one unit of several commands). */
  left: number;
  failed: boolean;
  done: ((failed: boolean) => void) | null;
}

export class RawRedis {
  private readonly socket: Socket;
  private out: string[] = [];
  private flushing = false;
  private readonly pending: Pending[] = [];
  private head = 0;
  private rest: Buffer | null = null;
  private closed = false;
  readonly ready: Promise<void>;

  constructor(port: number, db: number, host = '127.0.0.1') {
    this.socket = new Socket();
    this.socket.setNoDelay(true);
    this.ready = new Promise((resolve, reject) => {
      this.socket.once('connect', () => resolve());
      this.socket.once('error', reject);
    });
    this.socket.on('error', () => this.failAll());
    this.socket.on('close', () => this.failAll());
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.connect(port, host);
    if (db !== 0) this.send([['SELECT', db]], null);
  }

  /** Sends `commands` as one unit; `done(failed)` once every reply came (failed: one was an error). */
  send(commands: readonly (readonly RawArg[])[], done: ((failed: boolean) => void) | null): void {
    if (this.closed) {
      done?.(true);
      return;
    }
    let s = '';
    for (const args of commands) {
      s += `*${args.length}\r\n`;
      for (const a of args) {
        const v = String(a);
        s += `$${Buffer.byteLength(v)}\r\n${v}\r\n`;
      }
    }
    this.out.push(s);
    this.pending.push({ left: commands.length, failed: false, done });
    if (!this.flushing) {
      this.flushing = true;
      process.nextTick(() => this.flush());
    }
  }

  /** Units sent and not answered yet. */
  get inFlight(): number {
    return this.pending.length - this.head;
  }

  close(): void {
    this.closed = true;
    this.socket.destroy();
    this.failAll();
  }

  private flush(): void {
    this.flushing = false;
    if (this.out.length === 0 || this.closed) return;
    const s = this.out.length === 1 ? this.out[0] : this.out.join('');
    this.out = [];
    this.socket.write(s);
  }

  private onData(chunk: Buffer): void {
    const buf = this.rest ? Buffer.concat([this.rest, chunk]) : chunk;
    let p = 0;
    for (;;) {
      const end = replyEnd(buf, p);
      if (end < 0) break;
      this.answer(buf[p] === 0x2d /* '-' */);
      p = end;
    }
    this.rest = p < buf.length ? buf.subarray(p) : null;
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

/** End of the RESP2 reply starting at `p`, or -1 when it is not all in `buf` yet. */
export function replyEnd(buf: Buffer, p: number): number {
  if (p >= buf.length) return -1;
  const line = buf.indexOf(0x0a, p);
  if (line < 0) return -1;
  const type = buf[p];
  if (type === 0x24 /* $ */) {
    const n = Number(buf.toString('latin1', p + 1, line - 1));
    if (n < 0) return line + 1;
    const end = line + 1 + n + 2;
    return end <= buf.length ? end : -1;
  }
  if (type === 0x2a /* * */) {
    const n = Number(buf.toString('latin1', p + 1, line - 1));
    let q = line + 1;
    for (let i = 0; i < n; i++) {
      q = replyEnd(buf, q);
      if (q < 0) return -1;
    }
    return q;
  }
  return line + 1; // + - :
}
