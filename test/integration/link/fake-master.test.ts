import { afterEach, describe, expect, it } from 'vitest';
import { cmd, FakeMaster, type FakeConnection } from './fake-master.js';
import { recordLink, unitStrings, waitFor, type Recorded } from './harness.js';
import type { ReplicaLinkOptions } from '../../../services/replication/link/index.js';

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

async function master(scripts: Array<(c: FakeConnection) => Promise<void>>): Promise<FakeMaster> {
  const m = await FakeMaster.start(scripts);
  cleanup.push(() => m.stop());
  return m;
}

function link(opts: ReplicaLinkOptions): Recorded {
  const r = recordLink(opts);
  cleanup.push(() => r.link.stop());
  return r;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ID1 = '1'.repeat(40);
const ID2 = 'c0ffee'.padEnd(40, '2');
const MARK = '0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c';
const isAck = (c: string[]) => c[0] === 'REPLCONF' && c[1] === 'ACK';

describe('ReplicaLink against a scripted master', () => {
  it('handles -NOAUTH before AUTH, retries after -LOADING, falls back to SYNC when PSYNC is refused', async () => {
    let acksOnLegacy = -1;
    const m = await master([
      async (c) => {
        expect(await c.next()).toEqual(['PING']);
        c.send('-NOAUTH Authentication required.\r\n');
        expect(await c.next()).toEqual(['AUTH', 'pw']);
        c.send('+OK\r\n');
        expect(await c.next()).toEqual(['REPLCONF', 'listening-port', '0']);
        c.send('+OK\r\n');
        expect(await c.next()).toEqual(['REPLCONF', 'capa', 'eof', 'capa', 'psync2']);
        c.send('+OK\r\n');
        expect(await c.next()).toEqual(['PSYNC', '?', '-1']);
        c.send('-LOADING Redis is loading the dataset in memory\r\n');
      },
      async (c) => {
        expect(await c.handshake()).toEqual(['PSYNC', '?', '-1']);
        c.send("-ERR unknown command 'PSYNC'\r\n");
        expect(await c.next()).toEqual(['SYNC']);
        c.send('\n\n$5\r\nABCDE' + cmd('PING') + cmd('SELECT', '1') + cmd('SET', 'a', 'b'));
        await sleep(1500);
        acksOnLegacy = c.received.filter(isAck).length;
      },
    ]);
    const r = link({ url: `redis://:pw@127.0.0.1:${m.port}` });
    r.link.start();
    await waitFor('unit', () => r.units.length === 1);
    await waitFor('script end', () => acksOnLegacy >= 0);
    expect(m.errors).toEqual([]);
    expect(r.disconnects).toHaveLength(1);
    expect(r.disconnects[0].error.message).toMatch(/LOADING/);
    expect(r.disconnects[0].error.retriable).toBe(true);
    expect(r.fullresyncs).toEqual([{ replid: '?', offset: 0, legacySync: true }]);
    expect(Buffer.concat(r.rdb).toString()).toBe('ABCDE');
    const ping = cmd('PING').length;
    const select = cmd('SELECT', '1').length;
    expect(r.units).toEqual([
      {
        db: 1,
        commands: [[Buffer.from('SET'), Buffer.from('a'), Buffer.from('b')]],
        startOffset: ping + select,
        endOffset: ping + select + cmd('SET', 'a', 'b').length,
        endDb: 1,
      },
    ]);
    expect(acksOnLegacy).toBe(0); // a pre-PSYNC master gets no ACKs
    expect(r.link.position).toBeNull(); // nothing to resume from after SYNC
  });

  it('diskless sync with keepalives, exact GETACK answer, transaction cut midway, +CONTINUE <newid>', async () => {
    const rdb = Buffer.from('REDIS0010 not really an rdb, the link does not parse it');
    const sel = cmd('SELECT', '2');
    const set = cmd('SET', 'k', 'v');
    const getack = cmd('REPLCONF', 'GETACK', '*');
    const tx = [cmd('MULTI'), cmd('SET', 'x', '1'), cmd('INCR', 'y'), cmd('EXEC')];
    const txStart = 100 + sel.length + set.length + getack.length;
    const end = txStart + tx.join('').length;
    const seen: Record<string, string[]> = {};
    const m = await master([
      async (c) => {
        expect(await c.handshake()).toEqual(['PSYNC', '?', '-1']);
        c.send('\n');
        await sleep(30);
        c.send(`\n+FULLRESYNC ${ID1} 100\r\n\n\n$EOF:${MARK}\r\n`);
        c.send(rdb.subarray(0, 10));
        await sleep(30);
        c.send(Buffer.concat([rdb.subarray(10), Buffer.from(MARK.slice(0, 7))]));
        await sleep(30);
        c.send(MARK.slice(7));
        seen.firstAck = await c.until(isAck);
        c.send(sel + set + getack);
        seen.getAckAnswer = await c.until((x) => isAck(x) && x[2] !== '100');
        c.send(tx[0] + tx[1] + tx[2].slice(0, 5)); // cut inside the transaction, inside a command
        await sleep(100);
        c.cut();
      },
      async (c) => {
        seen.psync = await c.handshake();
        c.send(`+CONTINUE ${ID2}\r\n${tx.join('')}`);
        seen.finalAck = await c.until((x) => isAck(x) && x[2] === String(end));
      },
    ]);
    const r = link({ url: m.url, ackIntervalMs: 100 });
    r.link.start();
    await waitFor('final ACK', () => seen.finalAck);
    expect(m.errors).toEqual([]);
    expect(r.fullresyncs).toEqual([{ replid: ID1, offset: 100, legacySync: false }]);
    expect(r.rdbEnds).toEqual([{ bytes: rdb.length, diskless: true }]);
    expect(Buffer.concat(r.rdb).equals(rdb)).toBe(true);
    expect(seen.firstAck).toEqual(['REPLCONF', 'ACK', '100']);
    expect(seen.getAckAnswer).toEqual(['REPLCONF', 'ACK', String(txStart - getack.length)]);
    expect(seen.psync).toEqual(['PSYNC', ID1, String(txStart + 1)]);
    expect(r.continues).toEqual([{ replid: ID2, offset: txStart, previousReplid: ID1 }]);
    expect(r.units.map((u) => [u.db, unitStrings(u), u.startOffset, u.endOffset])).toEqual([
      [2, [['SET', 'k', 'v']], 100 + sel.length, 100 + sel.length + set.length],
      [2, [['SET', 'x', '1'], ['INCR', 'y']], txStart, end],
    ]);
    expect(r.link.position).toEqual({ replid: ID2, offset: end, db: 2 });
  });

  it('a cut during the snapshot emits rdb-abort and asks for a new full sync', async () => {
    const psyncs: string[][] = [];
    const aborts: string[] = [];
    const m = await master([
      async (c) => {
        psyncs.push(await c.handshake());
        c.send(`+FULLRESYNC ${ID2} 900\r\n$100\r\n${'x'.repeat(40)}`);
        await sleep(100);
        c.cut();
      },
      async (c) => {
        psyncs.push(await c.handshake());
        c.send(`+FULLRESYNC ${ID2} 950\r\n$3\r\nabc${cmd('SELECT', '0')}${cmd('SET', 'z', '1')}`);
      },
    ]);
    const r = link({
      url: m.url,
      start: { replid: ID1, offset: 500, db: 3 },
      onRdbAbort: async (e) => {
        await sleep(10);
        aborts.push(e.code);
      },
    });
    r.link.start();
    await waitFor('unit', () => r.units.length === 1);
    expect(m.errors).toEqual([]);
    expect(psyncs).toEqual([
      ['PSYNC', ID1, '501'],
      ['PSYNC', '?', '-1'],
    ]);
    expect(aborts).toEqual(['CONNECTION']);
    expect(r.order).toEqual(['fullresync', 'rdb-chunk', 'rdb-abort', 'disconnected', 'fullresync', 'rdb-chunk', 'rdb-end', 'unit']);
    expect(Buffer.concat(r.rdb).toString()).toBe('x'.repeat(40) + 'abc');
    expect(r.units[0].startOffset).toBe(950 + cmd('SELECT', '0').length);
    expect(r.units[0].db).toBe(0);
  });

  it('retries a snapshot refused with -ERR, and stops on a protocol violation in the stream', async () => {
    const m = await master([
      async (c) => {
        await c.handshake();
        c.send(`+FULLRESYNC ${ID1} 0\r\n\n-ERR BGSAVE failed\r\n`);
      },
      async (c) => {
        await c.handshake();
        c.send(`+FULLRESYNC ${ID1} 0\r\n$0\r\n${cmd('SET', 'a', '1')}`);
        await sleep(50);
        c.send('*1\r\n:5\r\n');
      },
    ]);
    const r = link({ url: m.url });
    r.link.start();
    await waitFor('close', () => r.closes.length === 1);
    expect(r.disconnects[0].error.message).toMatch(/BGSAVE failed/);
    expect(r.disconnects[0].error.retriable).toBe(true);
    expect(r.units).toHaveLength(1);
    const err = r.closes[0].error!;
    expect(err.code).toBe('PROTOCOL');
    expect(err.retriable).toBe(false);
    expect(r.link.state).toBe('closed');
  });

  it('queues behind a slow snapshot consumer, pausing the socket past maxBufferedBytes, losing nothing', async () => {
    const rdb = Buffer.alloc(2 * 1024 * 1024);
    for (let i = 0; i < rdb.length; i++) rdb[i] = (i * 7) & 0xff;
    const stream = Array.from({ length: 200 }, (_, i) => cmd('SET', `k${i}`, String(i))).join('');
    const m = await master([
      async (c) => {
        await c.handshake();
        c.send(`+FULLRESYNC ${ID1} 0\r\n$${rdb.length}\r\n`);
        for (let i = 0; i < rdb.length; i += 16384) c.send(rdb.subarray(i, i + 16384));
        c.send(stream);
      },
    ]);
    const received: Buffer[] = [];
    let unitsAtRdbEnd = -1;
    const r = link({
      url: m.url,
      maxBufferedBytes: 128 * 1024,
      onRdbChunk: async (chunk) => {
        received.push(Buffer.from(chunk));
        await sleep(1);
      },
      onRdbEnd: async () => {
        await sleep(20);
        unitsAtRdbEnd = r.units.length;
      },
    });
    r.link.start();
    await waitFor('200 units', () => r.units.length === 200, 60_000);
    expect(Buffer.concat(received).equals(rdb)).toBe(true);
    expect(unitsAtRdbEnd).toBe(0); // stream bytes wait for the snapshot consumer
    expect(r.units.map((u) => unitStrings(u)[0][1])).toEqual(Array.from({ length: 200 }, (_, i) => `k${i}`));
    expect(r.logs.join('')).toMatch(/pausing the source connection/);
    expect(r.link.processedOffset).toBe(stream.length);
  });

  it('afterUnit: a promise holds back the next units, of the same chunk and later ones, until it settles', async () => {
    const first = Array.from({ length: 50 }, (_, i) => cmd('SET', `k${i}`, String(i))).join('');
    const later = Array.from({ length: 50 }, (_, i) => cmd('SET', `k${50 + i}`, String(50 + i))).join('');
    const m = await master([
      async (c) => {
        await c.handshake();
        c.send(`+FULLRESYNC ${ID1} 0\r\n$5\r\nABCDE${first}`); // one chunk: the snapshot and 50 units
        await sleep(50);
        c.send(later);
      },
    ]);
    const held: Array<{ at: number; during: number }> = [];
    const r = link({
      url: m.url,
      afterUnit: () => {
        const at = r.units.length;
        if (at !== 10 && at !== 60) return undefined;
        return sleep(300).then(() => {
          held.push({ at, during: r.units.length - at });
        });
      },
    });
    r.link.start();
    await waitFor('100 units', () => r.units.length === 100, 10_000);
    expect(held).toEqual([
      { at: 10, during: 0 },
      { at: 60, during: 0 },
    ]);
    expect(r.units.map((u) => unitStrings(u)[0][1])).toEqual(Array.from({ length: 100 }, (_, i) => `k${i}`));
    expect(r.link.processedOffset).toBe(first.length + later.length);
  });

  it('reconnects after a silent master (read timeout) and never logs the password', async () => {
    const m = await master([
      async (c) => {
        await c.handshake();
        c.send(`+FULLRESYNC ${ID1} 0\r\n$0\r\n`);
        // then silence
      },
      async (c) => {
        const psync = await c.handshake();
        expect(psync).toEqual(['PSYNC', ID1, '1']);
        c.send('+CONTINUE\r\n');
      },
    ]);
    const r = link({ url: `redis://user:hunter2secret@127.0.0.1:${m.port}`, readTimeoutMs: 400 });
    r.link.start();
    await waitFor('continue', () => r.continues.length === 1);
    expect(m.errors).toEqual([]);
    expect(r.disconnects[0].error.message).toMatch(/no data from the source/);
    expect(r.logs.length).toBeGreaterThan(3);
    expect(r.logs.join('')).not.toContain('hunter2secret');
    expect(r.logs.join('')).toContain('user:***@127.0.0.1');
  });
});
