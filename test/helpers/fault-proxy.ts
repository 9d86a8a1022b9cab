/**
 * A TCP proxy on loopback that injects network faults between a service and a server it talks to
 * (capture ↔ source, a service ↔ Kafka or the registry, applier ↔ destination). Give the service
 * the proxy's address instead of the server's, then change what the network does at any moment:
 *
 * - `cut()`: every connection is reset and new ones are refused (the listening port closes), as
 *   when a server or a link goes down; `restore()` listens again on the same port.
 * - `blackhole()`: connections stay open and new ones are accepted, but nothing is forwarded
 *   either way, no FIN and no RST (a half-open link: a partition, a dead NAT entry). What was sent
 *   meanwhile is held, as TCP's buffers would, and delivered in order on `restore()`; a side that
 *   closed meanwhile is seen closed only then. Reading stops once a direction holds
 *   `HOLD_BYTES`, so a sender's own buffers fill, as they would behind a real partition.
 * - `delay(ms)`: every chunk is forwarded `ms` after it arrived (order kept).
 * - `throttle(bytesPerSecond)`: each direction of each connection forwards at most that rate.
 * - `restore()`: back to a plain pass-through (faults are replaced, not stacked, except that
 *   `delay` and `throttle` combine).
 *
 * toxiproxy would do the same as a separate server; it is not packaged here, and this one lives
 * inside the test process, so a test needs no port juggling beyond `port`.
 */
import { EventEmitter } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';

export interface FaultProxyStats {
  /** Connections accepted since the start. */
  accepted: number;
  /** Connections open now. */
  open: number;
  /** Bytes forwarded client → server and server → client. */
  bytesUp: number;
  bytesDown: number;
}

export interface FaultProxy {
  readonly port: number;
  /** `127.0.0.1:port`. */
  readonly address: string;
  /** `scheme://127.0.0.1:port` (e.g. `redis`), keeping a user and password given in `like`. */
  url(like: string): string;
  cut(): Promise<void>;
  blackhole(): void;
  delay(ms: number): void;
  throttle(bytesPerSecond: number): void;
  restore(): Promise<void>;
  stats(): FaultProxyStats;
  close(): Promise<void>;
}

/** Bytes held per direction while black-holed (or while the receiver is slow) before reading stops. */
const HOLD_BYTES = 256 * 1024;

interface Faults {
  blackhole: boolean;
  delayMs: number;
  bytesPerSecond: number;
}

/** One element of a direction's queue: bytes, or the sender's end of stream. */
type Item = { data: Buffer; at: number } | { end: true; at: number };

/** One direction of one proxied connection: what `from` sent, on its way to `to`. */
class Direction {
  private readonly queue: Item[] = [];
  private held = 0;
  private running = false;
  done = false;

  constructor(
    private readonly from: Socket,
    private readonly to: Socket,
    private readonly proxy: ProxyCore,
    private readonly count: (n: number) => void,
  ) {}

  push(item: Item): void {
    if (this.done) return;
    this.queue.push(item);
    if ('data' in item) {
      this.held += item.data.length;
      if (this.held > HOLD_BYTES) this.from.pause();
    }
    void this.pump();
  }

  private async pump(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      while (this.queue.length > 0 && !this.done) {
        const f = this.proxy.faults;
        if (f.blackhole) {
          await this.proxy.changed();
          continue;
        }
        const head = this.queue[0];
        const due = head.at + f.delayMs;
        if (Date.now() < due) {
          await this.proxy.sleep(due - Date.now());
          continue;
        }
        if (!('data' in head)) {
          this.queue.shift();
          this.done = true;
          this.to.end();
          continue;
        }
        let part = head.data;
        if (f.bytesPerSecond > 0) {
          // slices of 1/20 s worth, each followed by the time it takes at the rate
          const slice = Math.max(1, Math.floor(f.bytesPerSecond / 20));
          part = head.data.subarray(0, slice);
        }
        if (part.length === head.data.length) this.queue.shift();
        else head.data = head.data.subarray(part.length);
        this.held -= part.length;
        this.count(part.length);
        const flowing = this.to.write(part);
        if (this.held <= HOLD_BYTES / 2 && this.from.isPaused() && !this.from.destroyed) this.from.resume();
        if (f.bytesPerSecond > 0) await this.proxy.sleep((part.length / f.bytesPerSecond) * 1000);
        if (!flowing && !this.to.destroyed) await new Promise<void>((r) => this.to.once('drain', r).once('close', r));
      }
    } finally {
      this.running = false;
    }
  }
}

/** The part shared by every connection: the current faults and a way to wait for them to change. */
class ProxyCore extends EventEmitter {
  faults: Faults = { blackhole: false, delayMs: 0, bytesPerSecond: 0 };

  set(f: Partial<Faults>): void {
    this.faults = { ...this.faults, ...f };
    this.emit('change');
  }

  changed(): Promise<void> {
    return new Promise((r) => this.once('change', r));
  }

  /** Sleeps `ms`, or less when the faults change (the caller looks again). */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.off('change', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.once('change', done);
    });
  }
}

/** A proxy on 127.0.0.1 (a free port, or `listenPort`) forwarding to `target` (`host:port`). */
export async function startFaultProxy(target: string, listenPort = 0): Promise<FaultProxy> {
  const cut = target.lastIndexOf(':');
  const upstream = { host: target.slice(0, cut).replace(/^\[|\]$/g, ''), port: Number(target.slice(cut + 1)) };
  const core = new ProxyCore();
  core.setMaxListeners(0);
  const sockets = new Set<Socket>();
  const pairs = new Set<{ client: Socket; remote: Socket }>();
  const stats = { accepted: 0, bytesUp: 0, bytesDown: 0 };
  let server: Server | null = null;
  let port = listenPort;

  const onConnection = (client: Socket) => {
    stats.accepted++;
    const remote = connect({ ...upstream, allowHalfOpen: true });
    sockets.add(client);
    sockets.add(remote);
    const up = new Direction(client, remote, core, (n) => (stats.bytesUp += n));
    const down = new Direction(remote, client, core, (n) => (stats.bytesDown += n));
    client.on('data', (d: Buffer) => up.push({ data: d, at: Date.now() }));
    remote.on('data', (d: Buffer) => down.push({ data: d, at: Date.now() }));
    // An end or close travels like data: behind a black hole it is only seen once restored.
    client.on('end', () => up.push({ end: true, at: Date.now() }));
    remote.on('end', () => down.push({ end: true, at: Date.now() }));
    const pair = { client, remote };
    pairs.add(pair);
    const closeBoth = (gone: Socket, other: Socket, direction: Direction) => {
      sockets.delete(gone);
      if (client.destroyed && remote.destroyed) pairs.delete(pair);
      direction.push({ end: true, at: Date.now() });
      // the other side hears of it once what was in flight is delivered (not behind a black hole)
      const wait = () => {
        if (direction.done || other.destroyed) {
          other.destroy();
          pairs.delete(pair);
        } else setTimeout(wait, 20).unref();
      };
      wait();
    };
    client.on('close', () => closeBoth(client, remote, up));
    remote.on('close', () => closeBoth(remote, client, down));
    client.on('error', () => undefined);
    remote.on('error', () => undefined);
  };

  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const s = createServer({ allowHalfOpen: true }, onConnection);
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => {
        s.off('error', reject);
        const a = s.address();
        port = typeof a === 'object' && a ? a.port : port;
        server = s;
        resolve();
      });
    });
  /** Stops accepting; resolves once the listener and every connection it accepted are closed (call resetAll). */
  const unlisten = () => {
    const s = server;
    server = null;
    return s ? new Promise<void>((r) => s.close(() => r())) : Promise.resolve();
  };
  const resetAll = () => {
    for (const s of sockets) {
      if (typeof (s as Socket & { resetAndDestroy?: () => void }).resetAndDestroy === 'function') s.resetAndDestroy();
      else s.destroy();
    }
    sockets.clear();
    pairs.clear();
  };

  await listen();
  const proxy: FaultProxy = {
    get port() {
      return port;
    },
    get address() {
      return `127.0.0.1:${port}`;
    },
    url(like: string) {
      const u = new URL(like);
      u.hostname = '127.0.0.1';
      u.port = String(port);
      return u.toString().replace(/\/$/, '');
    },
    async cut() {
      core.set({ blackhole: false });
      const closed = unlisten();
      resetAll();
      await closed;
    },
    blackhole() {
      core.set({ blackhole: true });
    },
    delay(ms: number) {
      core.set({ delayMs: ms });
    },
    throttle(bytesPerSecond: number) {
      core.set({ bytesPerSecond });
    },
    async restore() {
      core.set({ blackhole: false, delayMs: 0, bytesPerSecond: 0 });
      if (!server) await listen();
    },
    stats: () => ({ ...stats, open: pairs.size }),
    async close() {
      core.set({ blackhole: false, delayMs: 0, bytesPerSecond: 0 });
      const closed = unlisten();
      resetAll();
      await closed;
    },
  };
  return proxy;
}
