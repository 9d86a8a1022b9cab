/**
 * The fault-injection proxy (test/helpers/fault-proxy.ts) against an echo server in this process:
 * what a client behind it sees for each fault.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { startFaultProxy, type FaultProxy } from '../../helpers/fault-proxy.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** An echo server; `closeAll` ends every connection it holds from its side. */
async function echoServer(): Promise<{ port: number; closeAll(): void; connections(): number }> {
  const held = new Set<Socket>();
  const server: Server = createServer((s) => {
    held.add(s);
    s.on('close', () => held.delete(s));
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  cleanups.push(() => {
    for (const s of held) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  const a = server.address();
  return {
    port: typeof a === 'object' && a ? a.port : 0,
    closeAll: () => held.forEach((s) => s.end()),
    connections: () => held.size,
  };
}

async function proxyTo(port: number): Promise<FaultProxy> {
  const p = await startFaultProxy(`127.0.0.1:${port}`);
  cleanups.push(() => p.close());
  return p;
}

/** A client that collects what it receives and whether it was closed or reset. */
async function client(port: number): Promise<{ socket: Socket; received(): string; closed(): boolean; error(): string | null; waitFor(text: string, ms?: number): Promise<number> }> {
  const socket = connect({ host: '127.0.0.1', port });
  let data = '';
  let closed = false;
  let error: string | null = null;
  socket.on('data', (d: Buffer) => (data += d.toString()));
  socket.on('close', () => (closed = true));
  socket.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
  cleanups.push(() => void socket.destroy());
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  return {
    socket,
    received: () => data,
    closed: () => closed,
    error: () => error,
    async waitFor(text: string, ms = 3000) {
      const start = Date.now();
      while (!data.includes(text)) {
        if (Date.now() - start > ms) throw new Error(`no ${JSON.stringify(text)} within ${ms} ms (got ${JSON.stringify(data.slice(-80))})`);
        await new Promise((r) => setTimeout(r, 5));
      }
      return Date.now() - start;
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('fault proxy', () => {
  it('forwards both ways when no fault is set, and counts the bytes', async () => {
    const echo = await echoServer();
    const proxy = await proxyTo(echo.port);
    const c = await client(proxy.port);
    const big = 'x'.repeat(2_000_000);
    c.socket.write(big + 'END');
    await c.waitFor('END');
    expect(c.received()).toBe(big + 'END');
    expect(proxy.stats()).toMatchObject({ accepted: 1, open: 1, bytesUp: big.length + 3, bytesDown: big.length + 3 });
  });

  it('cut resets the open connections and refuses new ones until restored', async () => {
    const echo = await echoServer();
    const proxy = await proxyTo(echo.port);
    const c = await client(proxy.port);
    c.socket.write('hello');
    await c.waitFor('hello');
    await proxy.cut();
    await sleep(50);
    expect(c.closed()).toBe(true);
    expect(c.error()).toBe('ECONNRESET');
    await expect(client(proxy.port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await sleep(50);
    expect(echo.connections()).toBe(0); // the server side was closed too
    await proxy.restore();
    const again = await client(proxy.port);
    again.socket.write('back');
    await again.waitFor('back');
  });

  it('black-hole keeps connections open and silent both ways, then delivers what was held, in order', async () => {
    const echo = await echoServer();
    const proxy = await proxyTo(echo.port);
    const c = await client(proxy.port);
    c.socket.write('a');
    await c.waitFor('a');
    proxy.blackhole();
    c.socket.write('b');
    const late = await client(proxy.port); // accepted, but nothing reaches the server
    late.socket.write('late');
    echo.closeAll(); // the server closes its side: not seen through the black hole
    await sleep(300);
    expect(c.received()).toBe('a');
    expect(c.closed()).toBe(false);
    expect(c.error()).toBeNull();
    expect(late.received()).toBe('');
    expect(late.closed()).toBe(false);
    await proxy.restore();
    await late.waitFor('late');
    // the first connection's server side was gone before 'b' could reach it: the close arrives now
    const start = Date.now();
    while (!c.closed() && Date.now() - start < 2000) await sleep(10);
    expect(c.closed()).toBe(true);
  });

  it('black-hole stops reading once it holds a few hundred KB: the sender is held back', async () => {
    const echo = await echoServer();
    const proxy = await proxyTo(echo.port);
    const c = await client(proxy.port);
    proxy.blackhole();
    const chunk = Buffer.alloc(64 * 1024, 1);
    let written = 0;
    for (let i = 0; i < 400; i++) {
      if (!c.socket.write(chunk)) break;
      written += chunk.length;
      await sleep(1);
    }
    await sleep(200);
    // the client's own buffers are full: the proxy did not swallow 25 MB
    expect(c.socket.writableLength).toBeGreaterThan(0);
    expect(proxy.stats().bytesUp).toBe(0);
    expect(written).toBeLessThan(400 * chunk.length);
    await proxy.restore();
    const start = Date.now();
    while (c.received().length < written && Date.now() - start < 5000) await sleep(10);
    expect(c.received().length).toBeGreaterThanOrEqual(written);
  });

  it('delay adds latency to every chunk', async () => {
    const echo = await echoServer();
    const proxy = await proxyTo(echo.port);
    const c = await client(proxy.port);
    proxy.delay(150);
    c.socket.write('ping1');
    const took = await c.waitFor('ping1');
    expect(took).toBeGreaterThanOrEqual(280); // 150 ms each way
    await proxy.restore();
    c.socket.write('ping2');
    expect(await c.waitFor('ping2')).toBeLessThan(250); // no 300 ms of delay any more
  });

  it('throttle bounds the rate', async () => {
    const echo = await echoServer();
    const proxy = await proxyTo(echo.port);
    const c = await client(proxy.port);
    proxy.throttle(200_000);
    const start = Date.now();
    c.socket.write('y'.repeat(100_000) + 'END');
    await c.waitFor('END', 5000);
    const seconds = (Date.now() - start) / 1000;
    // 100 KB up then down at 200 KB/s each, pipelined: at least half a second
    expect(seconds).toBeGreaterThan(0.45);
    expect(seconds).toBeLessThan(5);
  });
});
