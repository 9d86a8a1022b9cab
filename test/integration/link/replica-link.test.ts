import { afterEach, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startRedis, type RedisServer } from '../../helpers/redis-server.js';
import {
  ackedOffset,
  client,
  expectContiguous,
  masterOffset,
  recordLink,
  replInfo,
  unitStrings,
  waitFor,
  type Recorded,
} from './harness.js';

/** Everything a test started, stopped in afterEach whatever happened. */
const cleanup: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) {
    try {
      await fn();
    } catch {
      /* keep cleaning */
    }
  }
});

async function server(config: Record<string, string | number | string[]> = {}): Promise<RedisServer> {
  // No periodic PING unless a test asks for it, so gaps between units are only SELECTs.
  const s = await startRedis({ 'repl-ping-replica-period': 3600, ...config });
  cleanup.push(() => s.stop());
  return s;
}

function redis(s: RedisServer, opts: Parameters<typeof client>[1] = {}): Redis {
  const c = client(s, opts);
  cleanup.push(() => c.disconnect());
  return c;
}

function link(opts: Parameters<typeof recordLink>[0]): Recorded {
  const r = recordLink(opts);
  cleanup.push(() => r.link.stop());
  return r;
}

/** Sets requirepass after start (the test helper's readiness check needs an open PING). */
async function requirePass(s: RedisServer, password: string): Promise<void> {
  const c = client(s);
  try {
    await c.config('SET', 'requirepass', password);
  } finally {
    c.disconnect();
  }
}

async function seed(c: Redis, n: number): Promise<void> {
  const p = c.pipeline();
  for (let i = 0; i < n; i++) p.set(`seed:${i}`, `value-${i}-${'x'.repeat(i % 50)}`);
  await p.exec();
}

/** Waits until the link has processed everything the source has produced, and returns that offset. */
async function caughtUp(r: Recorded, c: Redis): Promise<number> {
  let target = 0;
  await waitFor('link offset = master_repl_offset', async () => {
    target = await masterOffset(c);
    return r.link.processedOffset === target;
  });
  return target;
}

function expectRdb(r: Recorded): Buffer {
  const rdb = Buffer.concat(r.rdb);
  expect(rdb.subarray(0, 5).toString()).toBe('REDIS');
  expect(rdb.subarray(5, 9).toString()).toBe('0010'); // redis 7.0
  expect(rdb[rdb.length - 9]).toBe(0xff); // RDB EOF opcode, then the 8-byte checksum
  expect(r.rdbEnds).toHaveLength(1);
  expect(r.rdbEnds[0].bytes).toBe(rdb.length);
  return rdb;
}

describe('ReplicaLink against redis-server', () => {
  it('full sync in disk mode, then units with exact offsets, SELECT tracking, MULTI/EXEC and GETACK', async () => {
    const s = await server({ 'repl-diskless-sync': 'no' });
    const c = redis(s);
    await seed(c, 2000);
    const r = link({ url: s.url });
    r.link.start();
    await waitFor('rdb-end', () => r.rdbEnds.length === 1);
    expect(r.fullresyncs).toHaveLength(1);
    expect(r.fullresyncs[0].replid).toBe(await replInfo(c, 'master_replid'));
    expect(r.rdbEnds[0].diskless).toBe(false);
    expectRdb(r);
    expect(r.order.slice(0, 3)).toEqual(['fullresync', 'rdb-chunk', 'rdb-end']);
    const syncOffset = r.fullresyncs[0].offset;

    await c.set('a', '1');
    const c3 = redis(s, { db: 3 });
    await c3.lpush('list', 'x', 'y');
    await c.multi().set('t1', 'v1').incr('t2').exec();
    await c.del('a');
    const end = await caughtUp(r, c);

    const got = r.units.map((u) => ({ db: u.db, commands: unitStrings(u) }));
    expect(got).toEqual([
      { db: 0, commands: [['set', 'a', '1']] },
      { db: 3, commands: [['lpush', 'list', 'x', 'y']] },
      { db: 0, commands: [['set', 't1', 'v1'], ['incr', 't2']] },
      { db: 0, commands: [['del', 'a']] },
    ]);
    expect(expectContiguous(r.units, syncOffset)).toEqual([]);
    expect(r.units[r.units.length - 1].endOffset).toBe(end);
    expect(r.link.position).toEqual({ replid: r.fullresyncs[0].replid, offset: end, db: 0 });

    // WAIT makes the source send REPLCONF GETACK *; the immediate ACK must cover the write.
    await c.set('b', '2');
    const acked = (await c.call('WAIT', '1', '5000')) as number;
    expect(acked).toBe(1);
    await caughtUp(r, c);
    await waitFor('ACK of the processed offset', async () => (await ackedOffset(c)) === r.link.processedOffset);
    expect(r.disconnects).toHaveLength(0);
    expect(r.errors).toHaveLength(0);
  });

  it('full sync in diskless mode (EOF mark), then units (the first ACK starts the stream)', async () => {
    const s = await server({ 'repl-diskless-sync': 'yes', 'repl-diskless-sync-delay': 0 });
    const c = redis(s);
    await seed(c, 3000);
    let slowChunks = 0;
    const r = link({
      url: s.url,
      // A slow asynchronous consumer: bytes must queue, nothing may be lost or reordered.
      onRdbChunk: async () => {
        slowChunks++;
        await new Promise((res) => setTimeout(res, 2));
      },
    });
    r.link.start();
    await waitFor('rdb-end', () => r.rdbEnds.length === 1);
    expect(r.rdbEnds[0].diskless).toBe(true);
    const rdb = expectRdb(r);
    expect(slowChunks).toBe(r.rdb.length);
    expect(rdb.length).toBeGreaterThan(50_000);

    for (let i = 0; i < 50; i++) await c.set(`k${i}`, String(i));
    const end = await caughtUp(r, c);
    expect(r.units).toHaveLength(50);
    expect(r.units.map((u) => unitStrings(u)[0][1])).toEqual(Array.from({ length: 50 }, (_, i) => `k${i}`));
    expect(expectContiguous(r.units, r.fullresyncs[0].offset)).toEqual([]);
    expect(r.units[49].endOffset).toBe(end);
    expect(r.order.indexOf('rdb-end')).toBeLessThan(r.order.indexOf('unit'));
  });

  it('delivers a stream faster than its consumer in slices: whole and in order, and timers run between the slices', async () => {
    const s = await server({ 'repl-diskless-sync': 'yes', 'repl-diskless-sync-delay': 0 });
    const c = redis(s);
    const r = link({ url: s.url, sliceMs: 2 });
    // a slow synchronous consumer: 20,000 units take about a second, many reads of the socket
    r.link.on('unit', () => {
      const t = performance.now();
      while (performance.now() - t < 0.05) {
        /* busy */
      }
    });
    r.link.start();
    await waitFor('rdb-end', () => r.rdbEnds.length === 1);
    const n = 20_000;
    const p = c.pipeline();
    for (let i = 0; i < n; i++) p.set(`k${i}`, `value-${i}`);
    await p.exec();
    // the longest a 1 ms timer waited while the stream was delivered
    let last = performance.now();
    let longestWait = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      longestWait = Math.max(longestWait, now - last);
      last = now;
    }, 1);
    try {
      await caughtUp(r, c);
    } finally {
      clearInterval(timer);
    }
    expect(r.units).toHaveLength(n);
    expect(r.units.map((u) => unitStrings(u)[0][1])).toEqual(Array.from({ length: n }, (_, i) => `k${i}`));
    expect(expectContiguous(r.units, r.fullresyncs[0].offset)).toEqual([]);
    // A slice ends between two reads of the socket: a timer waits one read's units at most (a
    // 64 KB read holds ~2,000 of these SETs: ~0.1 s here). Delivered as read, several reads in a
    // row, it waited for most of the second.
    expect(longestWait).toBeLessThan(400);
  });

  it('counts PINGs in the offset and keeps ACKing', async () => {
    const s = await server({ 'repl-ping-replica-period': 1, 'repl-diskless-sync': 'no' });
    const c = redis(s);
    const r = link({ url: s.url });
    r.link.start();
    await waitFor('rdb-end', () => r.rdbEnds.length === 1);
    await c.set('x', '1');
    const before = await caughtUp(r, c);
    // Let a few PINGs arrive: the offset moves with no unit.
    await waitFor('offset moved by PINGs', async () => (await masterOffset(c)) >= before + 28, 10_000);
    await c.set('y', '1');
    const end = await caughtUp(r, c);
    expect(r.units.map((u) => unitStrings(u)[0][1])).toEqual(['x', 'y']);
    expect(expectContiguous(r.units, r.fullresyncs[0].offset)).toEqual([]);
    expect(r.units[1].startOffset - r.units[0].endOffset).toBeGreaterThanOrEqual(28);
    await waitFor('ACK covers the PINGs', async () => ((await ackedOffset(c)) ?? 0) >= end);
  });

  for (const diskless of [false, true]) {
    it(`reconnects after CLIENT KILL with +CONTINUE, without gaps (${diskless ? 'diskless' : 'disk'})`, async () => {
      const s = await server({ 'repl-diskless-sync': diskless ? 'yes' : 'no', 'repl-diskless-sync-delay': 0 });
      const c = redis(s);
      const c5 = redis(s, { db: 5 });
      await seed(c, 100);
      const r = link({ url: s.url });
      r.link.start();
      await waitFor('rdb-end', () => r.rdbEnds.length === 1);
      await c5.set('before', '1'); // the stream now sits in db 5
      await caughtUp(r, c);

      await c.call('CLIENT', 'KILL', 'TYPE', 'replica');
      // Writes while the link is down, in the same db (no SELECT will be resent) and in another.
      await c5.set('during', '1');
      await c5.multi().set('tx1', '1').set('tx2', '2').exec();
      await waitFor('continue', () => r.continues.length === 1);
      await c5.set('after', '1');
      await c.set('db0', '1');
      const end = await caughtUp(r, c);

      expect(r.disconnects.length).toBeGreaterThanOrEqual(1);
      expect(r.disconnects[0].error.retriable).toBe(true);
      expect(r.fullresyncs).toHaveLength(1); // no second full sync
      expect(r.continues[0].replid).toBe(r.fullresyncs[0].replid);
      expect(r.units.map((u) => ({ db: u.db, commands: unitStrings(u) }))).toEqual([
        { db: 5, commands: [['set', 'before', '1']] },
        { db: 5, commands: [['set', 'during', '1']] },
        { db: 5, commands: [['set', 'tx1', '1'], ['set', 'tx2', '2']] },
        { db: 5, commands: [['set', 'after', '1']] },
        { db: 0, commands: [['set', 'db0', '1']] },
      ]);
      expect(expectContiguous(r.units, r.fullresyncs[0].offset)).toEqual([]);
      // Across the cut the stream is byte-contiguous: same db, so no SELECT in between.
      expect(r.units[1].startOffset).toBe(r.units[0].endOffset);
      expect(r.continues[0].offset).toBe(r.units[0].endOffset);
      expect(r.units[4].endOffset).toBe(end);
      expect(r.rdbEnds).toHaveLength(1);
    });
  }

  it('resumes from a durable position given at start (new link, +CONTINUE, db preserved)', async () => {
    const s = await server({ 'repl-diskless-sync': 'no' });
    const c = redis(s);
    const c2 = redis(s, { db: 2 });
    const first = link({ url: s.url });
    first.link.start();
    await waitFor('rdb-end', () => first.rdbEnds.length === 1);
    await c2.set('one', '1');
    await caughtUp(first, c);
    const pos = first.link.position;
    expect(pos).not.toBeNull();
    expect(pos!.db).toBe(2);
    await first.link.stop();
    expect(first.closes).toEqual([{ error: null }]);

    await c2.set('two', '2');
    const second = link({ url: s.url, start: pos });
    second.link.start();
    await waitFor('continue', () => second.continues.length === 1);
    const end = await caughtUp(second, c);
    expect(second.fullresyncs).toHaveLength(0);
    expect(second.units.map((u) => ({ db: u.db, commands: unitStrings(u) }))).toEqual([
      { db: 2, commands: [['set', 'two', '2']] },
    ]);
    expect(second.units[0].startOffset).toBe(pos!.offset);
    expect(second.units[0].endOffset).toBe(end);
  });

  it('ACKs only what the consumer confirmed in manual-confirm mode', async () => {
    const s = await server({ 'repl-diskless-sync': 'no' });
    const c = redis(s);
    const r = link({ url: s.url, manualConfirm: true, ackIntervalMs: 200 });
    r.link.start();
    await waitFor('rdb-end', () => r.rdbEnds.length === 1);
    const syncOffset = r.fullresyncs[0].offset;
    await c.set('a', '1');
    await c.set('b', '2');
    await c.set('c', '3');
    const end = await caughtUp(r, c);
    await new Promise((res) => setTimeout(res, 600));
    // Nothing confirmed: ACK stays at the first unit's start (after its SELECT).
    expect(await ackedOffset(c)).toBe(r.units[0].startOffset);
    expect(r.link.position).toEqual({ replid: r.fullresyncs[0].replid, offset: r.units[0].startOffset, db: 0 });
    expect(r.units[0].startOffset).toBeGreaterThan(syncOffset);

    r.link.confirm(r.units[1].endOffset);
    await waitFor('ACK of the second unit', async () => (await ackedOffset(c)) === r.units[2].startOffset);
    r.link.confirm(r.units[2].endOffset);
    await waitFor('ACK of everything', async () => (await ackedOffset(c)) === end);
    expect(r.link.position!.offset).toBe(end);
  });

  it('authenticates with a password and with an ACL user', async () => {
    const s = await server({ 'repl-diskless-sync': 'no' });
    await requirePass(s, 'top-secret');
    const admin = redis(s, { password: 'top-secret' });
    await admin.call('ACL', 'SETUSER', 'repl', 'on', '>pw-of-repl', '+psync', '+replconf', '+ping');

    const byPass = link({ url: `redis://:top-secret@127.0.0.1:${s.port}` });
    byPass.link.start();
    await waitFor('rdb-end (password)', () => byPass.rdbEnds.length === 1);
    await byPass.link.stop();

    const byUser = link({ url: `redis://repl:pw-of-repl@127.0.0.1:${s.port}` });
    byUser.link.start();
    await waitFor('rdb-end (ACL user)', () => byUser.rdbEnds.length === 1);
    await admin.set('k', 'v');
    await waitFor('unit (ACL user)', () => byUser.units.length === 1);
    await byUser.link.stop();

    for (const r of [byPass, byUser]) {
      const text = r.logs.join('');
      expect(text).not.toContain('top-secret');
      expect(text).not.toContain('pw-of-repl');
      expect(r.errors).toHaveLength(0);
    }
  });

  it('stops with a non-retriable AUTH error on a bad password, a missing password or a user without PSYNC', async () => {
    const s = await server();
    await requirePass(s, 'right');
    const admin = redis(s, { password: 'right' });
    await admin.call('ACL', 'SETUSER', 'noperm', 'on', '>pw', '+ping', '+replconf');
    const cases = [
      { url: `redis://:wrong-password@127.0.0.1:${s.port}`, secret: 'wrong-password' },
      { url: `redis://127.0.0.1:${s.port}`, secret: null },
      { url: `redis://noperm:pw@127.0.0.1:${s.port}`, secret: null },
    ];
    for (const { url, secret } of cases) {
      const r = link({ url });
      r.link.start();
      await waitFor(`close (${url.replace(/:[^:@/]*@/, ':***@')})`, () => r.closes.length === 1);
      const err = r.closes[0].error!;
      expect(err.code).toBe('AUTH');
      expect(err.setting).toBe('source');
      expect(err.retriable).toBe(false);
      expect(r.errors).toEqual([err]);
      expect(r.link.state).toBe('closed');
      if (secret) {
        expect(err.message).not.toContain(secret);
        expect(r.logs.join('')).not.toContain(secret);
      }
    }
  });

  it('retries with exponential backoff while the source is unreachable', async () => {
    const s = await server();
    const port = s.port;
    await s.stop();
    const r = link({ url: `redis://127.0.0.1:${port}`, reconnect: { initialDelayMs: 20, maxDelayMs: 80 } });
    r.link.start();
    await waitFor('5 attempts', () => r.disconnects.length >= 5);
    await r.link.stop();
    expect(r.disconnects.map((d) => d.retryInMs).slice(0, 5)).toEqual([20, 40, 80, 80, 80]);
    expect(r.disconnects.every((d) => d.error.code === 'CONNECTION' && d.error.retriable)).toBe(true);
    expect(r.closes).toEqual([{ error: null }]);
  });

  it.skipIf(!hasOpenssl())('connects over TLS (rediss://) with a CA, refuses an unverified server for good', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'replistream-tls-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const f = (n: string) => join(dir, n);
    const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
    ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=replistream-test-ca');
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
    writeFileSync(f('ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
    ssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '1', '-extfile', 'ext.cnf');
    const tlsPort = await freePort();
    const s = await server({
      'tls-port': tlsPort,
      'tls-cert-file': f('server.crt'),
      'tls-key-file': f('server.key'),
      'tls-ca-cert-file': f('ca.crt'),
      'tls-auth-clients': 'no',
      'tls-replication': 'yes',
      'repl-diskless-sync': 'yes',
      'repl-diskless-sync-delay': 0,
    });
    const c = redis(s);

    const ok = link({ url: `rediss://localhost:${tlsPort}`, tls: { ca: readFileSync(f('ca.crt')) } });
    ok.link.start();
    await waitFor('rdb-end over TLS', () => ok.rdbEnds.length === 1);
    await c.set('over', 'tls');
    await waitFor('unit over TLS', () => ok.units.length === 1);
    expect(unitStrings(ok.units[0])).toEqual([['set', 'over', 'tls']]);
    await ok.link.stop();

    const insecure = link({ url: `rediss://127.0.0.1:${tlsPort}`, tls: { insecure: true } });
    insecure.link.start();
    await waitFor('rdb-end over TLS without verification', () => insecure.rdbEnds.length === 1);
    await insecure.link.stop();

    const unverified = link({ url: `rediss://localhost:${tlsPort}` });
    unverified.link.start();
    await waitFor('close', () => unverified.closes.length === 1);
    const err = unverified.closes[0].error!;
    expect(err.code).toBe('CONNECTION');
    expect(err.retriable).toBe(false);
    expect(err.setting).toBe('source');
  });
});

function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
