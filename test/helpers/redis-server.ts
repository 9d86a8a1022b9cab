import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serverArgs, serverBinary, type ServerKind } from '../../services/stack/servers.js';

/**
 * A private redis-server for one test: its own port, its own directory, stopped by `stop()`.
 * Tests that need several servers or exotic settings (encodings, diskless sync) start their own
 * instead of sharing the stack's, so they can run in parallel and never see each other's keys.
 */
export interface RedisServer {
  port: number;
  dir: string;
  url: string;
  stop(): Promise<void>;
  logTail(lines?: number): string;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export const REDIS_SERVER_BIN = process.env.REPLISTREAM_REDIS_SERVER_BIN ?? 'redis-server';

/**
 * Starts a server with `config` (directive → value, or a list of values for repeated directives).
 * `server` picks the version (services/stack/servers.ts): Redis 7.0 by default, or Redis 6.2 /
 * Valkey 8.1, fetched and cached on first use.
 */
export async function startRedis(config: Record<string, string | number | string[]> = {}, opts: { server?: ServerKind } = {}): Promise<RedisServer> {
  const kind = opts.server ?? 'redis-7.0';
  const bin = kind === 'redis-7.0' ? REDIS_SERVER_BIN : serverBinary(kind);
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'replistream-redis-'));
  const args = [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--dir', dir,
    '--save', '',
    '--appendonly', 'no',
    '--logfile', join(dir, 'redis.log'),
    ...serverArgs(kind),
  ];
  for (const [k, v] of Object.entries(config)) {
    for (const one of Array.isArray(v) ? v : [v]) args.push(`--${k}`, ...String(one).split(' '));
  }
  const child: ChildProcess = spawn(bin, args, { stdio: 'ignore' });
  const server: RedisServer = {
    port,
    dir,
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGKILL');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
    logTail(lines = 20) {
      const f = join(dir, 'redis.log');
      return existsSync(f) ? readFileSync(f, 'utf8').split('\n').slice(-lines).join('\n') : '';
    },
  };
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${kind} server exited early:\n${server.logTail()}`);
    if (await pingPort(port)) return server;
    await new Promise((r) => setTimeout(r, 50));
  }
  await server.stop();
  throw new Error(`redis-server on port ${port} did not answer PING within 10 s`);
}

function pingPort(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    import('node:net').then(({ connect }) => {
      const sock = connect(port, '127.0.0.1');
      sock.setTimeout(500);
      sock.once('connect', () => sock.write('PING\r\n'));
      sock.once('data', (d) => { sock.destroy(); resolve(/^(\+PONG|-NOAUTH)/.test(d.toString())); });
      sock.once('error', () => resolve(false));
      sock.once('timeout', () => { sock.destroy(); resolve(false); });
    });
  });
}
