/**
 * The writer's connection against a server in this process that stops answering (a half-open
 * destination): a request without a reply for the timeout fails as a retriable CONNECTION error,
 * the socket is dropped, and the next request connects again. A slow reply that keeps bytes
 * coming is not cut.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createServer, type Server, type Socket } from 'node:net';
import { parseRedisUrl } from '../../../services/destination/connection.js';
import { RespConnection } from '../../../services/destination/resp-connection.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** Answers +OK to every command line while `answering()`, else swallows it; counts connections. */
async function server(answering: () => boolean): Promise<{ port: number; connections: () => number }> {
  let count = 0;
  const sockets = new Set<Socket>();
  const srv: Server = createServer((s) => {
    count++;
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('data', (d: Buffer) => {
      if (!answering()) return;
      const commands = (d.toString().match(/^\*\d+\r$/gm) ?? []).length;
      s.write('+OK\r\n'.repeat(commands));
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  cleanups.push(() => {
    for (const s of sockets) s.destroy();
    srv.close();
  });
  const a = srv.address();
  return { port: typeof a === 'object' && a ? a.port : 0, connections: () => count };
}

describe('RespConnection reply timeout', () => {
  it('a request left unanswered fails after the timeout (retriable, naming the setting), and the next one reconnects', async () => {
    let answering = true;
    const s = await server(() => answering);
    const conn = new RespConnection(parseRedisUrl(`redis://127.0.0.1:${s.port}`), 'test', 1000, 300);
    cleanups.push(() => conn.close());
    expect(await conn.send([['PING']])).toEqual(['OK']);
    answering = false;
    const started = Date.now();
    const err = await conn.send([['SET', 'k', 'v']]).catch((e: unknown) => e as { code: string; retriable: boolean; message: string });
    expect(Date.now() - started).toBeGreaterThanOrEqual(280);
    expect(err).toMatchObject({ code: 'CONNECTION', retriable: true });
    expect((err as { message: string }).message).toMatch(/no reply within 0\.3 s .*destination-timeout-ms/);
    answering = true;
    expect(await conn.send([['PING']])).toEqual(['OK']);
    expect(s.connections()).toBe(2);
  });

  it('an idle connection is never cut: the timeout counts only while a request waits', async () => {
    const s = await server(() => true);
    const conn = new RespConnection(parseRedisUrl(`redis://127.0.0.1:${s.port}`), 'test', 1000, 200);
    cleanups.push(() => conn.close());
    await conn.send([['PING']]);
    await new Promise((r) => setTimeout(r, 600));
    expect(await conn.send([['PING']])).toEqual(['OK']);
    expect(s.connections()).toBe(1);
  });
});
