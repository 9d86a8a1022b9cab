import { describe, expect, it } from 'vitest';
import { ReplistreamError } from '../../../services/common/errors.js';
import { ReplyReader, SnapshotReader, type HandshakeReply } from '../../../services/replication/resp/index.js';

const MARK = Buffer.from('0123456789abcdef0123456789abcdef01234567');

function readAll(chunks: Buffer[]): { replies: HandshakeReply[]; rest: Buffer } {
  const r = new ReplyReader();
  const replies: HandshakeReply[] = [];
  let stop = false;
  for (const c of chunks) {
    r.push(c);
    for (let x = stop ? undefined : r.next(); x; x = stop ? undefined : r.next()) {
      replies.push(x);
      if (x.type === 'bulk' || x.type === 'eof') stop = true;
    }
  }
  return { replies, rest: r.takeRemainder() };
}

function splittings(bytes: Buffer): Buffer[][] {
  const ways: Buffer[][] = [[bytes]];
  ways.push([...bytes].map((b) => Buffer.from([b])));
  for (let i = 0; i <= bytes.length; i++) ways.push([bytes.subarray(0, i), bytes.subarray(i)]);
  return ways;
}

describe('ReplyReader', () => {
  it('reads status, error, keepalive and disk preamble lines, keeping the RDB bytes', () => {
    const bytes = Buffer.from('+PONG\r\n-NOAUTH Authentication required.\r\n+OK\r\n\n\n+FULLRESYNC abc 42\r\n\n$5\r\nREDIS');
    for (const chunks of splittings(bytes)) {
      const { replies, rest } = readAll(chunks);
      expect(replies).toEqual([
        { type: 'status', text: 'PONG' },
        { type: 'error', text: 'NOAUTH Authentication required.' },
        { type: 'status', text: 'OK' },
        { type: 'newline' },
        { type: 'newline' },
        { type: 'status', text: 'FULLRESYNC abc 42' },
        { type: 'newline' },
        { type: 'bulk', length: 5 },
      ]);
      expect(rest.toString()).toBe('REDIS');
    }
  });

  it('reads a diskless preamble', () => {
    const bytes = Buffer.concat([Buffer.from('$EOF:'), MARK, Buffer.from('\r\nREDIS0010')]);
    for (const chunks of splittings(bytes)) {
      const { replies, rest } = readAll(chunks);
      expect(replies).toHaveLength(1);
      expect(replies[0].type).toBe('eof');
      expect((replies[0] as { mark: Buffer }).mark.equals(MARK)).toBe(true);
      expect(rest.toString()).toBe('REDIS0010');
    }
  });

  it('rejects unexpected replies with PROTOCOL', () => {
    for (const bad of [':1\r\n', '*1\r\n', '$x\r\n', '$EOF:short\r\n', '$-1\r\n']) {
      const r = new ReplyReader();
      r.push(Buffer.from(bad));
      let caught: unknown;
      try {
        r.next();
      } catch (e) {
        caught = e;
      }
      expect(caught, bad).toBeInstanceOf(ReplistreamError);
      expect((caught as ReplistreamError).code).toBe('PROTOCOL');
    }
    const long = new ReplyReader({ maxLineLength: 10 });
    long.push(Buffer.from('+aaaaaaaaaaaaaaaaaaaaaaaa'));
    expect(() => long.next()).toThrow(/longer than/);
  });
});

describe('SnapshotReader', () => {
  function runSnapshot(reader: SnapshotReader, chunks: Buffer[]) {
    const data: Buffer[] = [];
    let rest = Buffer.alloc(0);
    let doneAt = -1;
    chunks.forEach((c, i) => {
      if (reader.done) {
        rest = Buffer.concat([rest, c]);
        return;
      }
      const p = reader.push(c);
      data.push(...p.data);
      if (p.done) {
        doneAt = i;
        rest = Buffer.concat([rest, p.rest]);
      }
    });
    return { data: Buffer.concat(data), rest, doneAt };
  }

  it('cuts a disk-based snapshot at its length, however split', () => {
    const rdb = Buffer.from('REDIS0010-some-rdb-bytes');
    const bytes = Buffer.concat([rdb, Buffer.from('*1\r\n$4\r\nPING\r\n')]);
    for (const chunks of splittings(bytes)) {
      const out = runSnapshot(new SnapshotReader({ type: 'bulk', length: rdb.length }), chunks);
      expect(out.data.equals(rdb)).toBe(true);
      expect(out.rest.toString()).toBe('*1\r\n$4\r\nPING\r\n');
    }
  });

  it('handles an empty disk-based snapshot', () => {
    const r = new SnapshotReader({ type: 'bulk', length: 0 });
    expect(r.done).toBe(true);
    expect(r.push(Buffer.from('x')).rest.toString()).toBe('x');
  });

  it('finds the diskless end mark and never returns its bytes, however split', () => {
    // The RDB contains a near-copy of the mark, to check partial matches are not taken for the end.
    const rdb = Buffer.concat([Buffer.from('REDIS0010'), MARK.subarray(0, 39), Buffer.from('Z'), Buffer.alloc(100, 7)]);
    const bytes = Buffer.concat([rdb, MARK]);
    for (const chunks of splittings(bytes)) {
      const reader = new SnapshotReader({ type: 'eof', mark: MARK });
      const out = runSnapshot(reader, chunks);
      expect(out.doneAt).toBe(chunks.length - 1 - (chunks[chunks.length - 1].length === 0 ? 1 : 0));
      expect(out.data.equals(rdb)).toBe(true);
      expect(reader.bytes).toBe(rdb.length);
      expect(reader.diskless).toBe(true);
    }
  });

  it('does not end a diskless snapshot before the mark arrives', () => {
    const reader = new SnapshotReader({ type: 'eof', mark: MARK });
    const p = reader.push(Buffer.alloc(1000, 1));
    expect(p.done).toBe(false);
    expect(p.data.reduce((n, d) => n + d.length, 0)).toBe(960);
    expect(reader.push(MARK).done).toBe(true);
    expect(reader.bytes).toBe(1000);
  });
});
