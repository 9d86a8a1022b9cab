/**
 * A scripted fake master (node:net), for the cases a real redis-server 7.0 cannot be made to
 * produce on demand: -LOADING, PSYNC refused (SYNC fallback), keepalives before FULLRESYNC, a cut
 * in the middle of a transaction or of a snapshot, +CONTINUE with a new replid.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { RespParser } from '../../../services/replication/resp/parser.js';

export class FakeConnection {
  readonly received: string[][] = [];
  private readonly parser = new RespParser();
  private waiters: Array<() => void> = [];
  closed = false;

  constructor(readonly socket: Socket) {
    socket.on('data', (d) => {
      for (const cmd of this.parser.push(d)) this.received.push(cmd.args.map((a) => a.toString('latin1')));
      this.wakeAll();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wakeAll();
    });
    socket.on('error', () => undefined);
  }

  private wakeAll(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private read = 0;

  /** Next command from the replica (fails after `timeoutMs` or when the connection closes). */
  async next(timeoutMs = 5000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.read >= this.received.length) {
      if (this.closed) throw new Error('replica closed the connection');
      if (Date.now() > deadline) throw new Error('no command from the replica');
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
    return this.received[this.read++];
  }

  /** Reads commands until one matches `pred` (ACKs and other chatter are skipped). */
  async until(pred: (cmd: string[]) => boolean, timeoutMs = 5000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const cmd = await this.next(Math.max(1, deadline - Date.now()));
      if (pred(cmd)) return cmd;
    }
  }

  send(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Answers the standard handshake (PING, [AUTH], REPLCONF…) and returns the PSYNC arguments. */
  async handshake(): Promise<string[]> {
    for (;;) {
      const cmd = await this.next();
      const name = cmd[0].toUpperCase();
      if (name === 'PSYNC' || name === 'SYNC') return cmd;
      this.send(name === 'PING' ? '+PONG\r\n' : '+OK\r\n');
    }
  }

  cut(): void {
    this.socket.destroy();
  }
}

export class FakeMaster {
  readonly connections: FakeConnection[] = [];
  private readonly server: Server;
  private waiters: Array<() => void> = [];

  private constructor(
    private readonly scripts: Array<(c: FakeConnection) => Promise<void>>,
  ) {
    this.server = createServer((sock) => {
      const c = new FakeConnection(sock);
      const i = this.connections.length;
      this.connections.push(c);
      for (const w of this.waiters.splice(0)) w();
      const script = this.scripts[i];
      if (!script) {
        sock.destroy();
        return;
      }
      script(c).catch((err) => {
        this.errors.push(err);
        sock.destroy();
      });
    });
  }

  readonly errors: unknown[] = [];

  /** Starts a fake master; script i drives the i-th connection (later ones are refused). */
  static async start(scripts: Array<(c: FakeConnection) => Promise<void>>): Promise<FakeMaster> {
    const m = new FakeMaster(scripts);
    await new Promise<void>((r) => m.server.listen(0, '127.0.0.1', () => r()));
    return m;
  }

  get port(): number {
    const a = this.server.address();
    return typeof a === 'object' && a ? a.port : 0;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async stop(): Promise<void> {
    for (const c of this.connections) c.socket.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/** RESP array of bulk strings, as a string (latin1). */
export function cmd(...args: string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a, 'latin1')}\r\n${a}\r\n`).join('')}`;
}
