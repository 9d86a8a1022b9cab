import { describe, expect, it } from 'vitest';
import { replyEnd } from '../../bench/raw-redis.js';

// Replies as Redis 7 writes them (RESP2): each must be found whole, and never before its last byte.
const REPLIES = ['+OK\r\n', '-ERR no such key\r\n', ':42\r\n', '$3\r\nabc\r\n', '$0\r\n\r\n', '$-1\r\n', '*-1\r\n', '*0\r\n', '*3\r\n+QUEUED\r\n$2\r\n\r\n\r\n*2\r\n:1\r\n-WRONGTYPE x\r\n'];

describe('replyEnd (the mixed bench generator counts replies without decoding them)', () => {
  it('finds every reply of a stream, fed whole', () => {
    const buf = Buffer.from(REPLIES.join(''));
    const ends: number[] = [];
    for (let p = 0; (p = replyEnd(buf, p)) > 0; ) ends.push(p);
    let at = 0;
    expect(ends).toEqual(REPLIES.map((r) => (at += r.length)));
  });

  it('reports an incomplete reply at every cut, and the whole one only with its last byte', () => {
    for (const r of REPLIES) {
      const buf = Buffer.from(r);
      for (let cut = 0; cut < buf.length; cut++) expect(replyEnd(buf.subarray(0, cut), 0), `${JSON.stringify(r)} cut at ${cut}`).toBe(-1);
      expect(replyEnd(buf, 0)).toBe(buf.length);
    }
  });
});
