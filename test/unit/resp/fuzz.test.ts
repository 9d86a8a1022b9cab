import { describe, expect, it } from 'vitest';
import { ReplistreamError } from '../../../services/common/errors.js';
import { CommandGrouper, ReplyReader, RespParser, SnapshotReader } from '../../../services/replication/resp/index.js';
import { FIXTURES } from './fixtures.js';
import { prng } from '../../helpers/prng.js';


const INTERESTING = [...'*$\r\n-+:0123456789 '].map((c) => c.charCodeAt(0)).concat([0, 0xff, 0x7f]);

function mutate(input: Buffer, rnd: () => number): Buffer {
  let b = Buffer.from(input);
  const n = 1 + Math.floor(rnd() * 6);
  for (let k = 0; k < n; k++) {
    const at = Math.floor(rnd() * (b.length + 1));
    switch (Math.floor(rnd() * 7)) {
      case 0: // flip bits
        if (b.length) b[Math.min(at, b.length - 1)] ^= 1 << Math.floor(rnd() * 8);
        break;
      case 1: // replace with an interesting byte
        if (b.length) b[Math.min(at, b.length - 1)] = INTERESTING[Math.floor(rnd() * INTERESTING.length)];
        break;
      case 2: // insert
        b = Buffer.concat([b.subarray(0, at), Buffer.from([INTERESTING[Math.floor(rnd() * INTERESTING.length)]]), b.subarray(at)]);
        break;
      case 3: // delete a run
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + Math.floor(rnd() * 8))]);
        break;
      case 4: {
        // duplicate a slice somewhere else
        const from = Math.floor(rnd() * b.length);
        const slice = b.subarray(from, from + 1 + Math.floor(rnd() * 30));
        b = Buffer.concat([b.subarray(0, at), slice, b.subarray(at)]);
        break;
      }
      case 5: // truncate
        b = b.subarray(0, at);
        break;
      case 6: {
        // a random (possibly huge or negative) number after a '*' or '$'
        const digits = String(Math.floor((rnd() - 0.3) * 10 ** Math.floor(rnd() * 12)));
        b = Buffer.concat([b.subarray(0, at), Buffer.from(`${rnd() < 0.5 ? '*' : '$'}${digits}\r\n`), b.subarray(at)]);
        break;
      }
    }
  }
  return b;
}

function chunked(b: Buffer, rnd: () => number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < b.length; ) {
    const len = 1 + Math.floor(rnd() * (rnd() < 0.5 ? 4 : 200));
    out.push(b.subarray(i, i + len));
    i += len;
  }
  return out;
}

function expectOnlyProtocolErrors(fn: () => void): 'ok' | 'protocol' {
  try {
    fn();
    return 'ok';
  } catch (err) {
    if (!(err instanceof ReplistreamError) || err.code !== 'PROTOCOL') throw err;
    return 'protocol';
  }
}

describe('fuzz', () => {
  it('parser + grouper never crash or hang on mutated streams, only throw PROTOCOL', () => {
    const rnd = prng(0x5eed);
    const corpus = FIXTURES.map((f) => f.bytes).concat([Buffer.concat(FIXTURES.map((f) => f.bytes))]);
    const counts = { ok: 0, protocol: 0 };
    const started = Date.now();
    for (let i = 0; i < 4000; i++) {
      const input = mutate(corpus[i % corpus.length], rnd);
      const outcome = expectOnlyProtocolErrors(() => {
        const start = Math.floor(rnd() * 1000);
        const parser = new RespParser({ offset: start });
        const grouper = new CommandGrouper({ offset: start });
        let expectedNext = start;
        for (const c of chunked(input, rnd)) {
          for (const cmd of parser.push(c)) {
            // Invariant: commands tile the stream with no gap or overlap.
            if (cmd.offset !== expectedNext || cmd.size <= 0) throw new Error(`gap at ${cmd.offset}, expected ${expectedNext}`);
            expectedNext = cmd.offset + cmd.size;
            grouper.push(cmd);
          }
        }
        if (parser.offset !== start + input.length) throw new Error('parser lost bytes');
        if (parser.idle && expectedNext !== parser.offset) throw new Error('idle parser holds bytes');
      });
      counts[outcome]++;
    }
    expect(counts.ok).toBeGreaterThan(100);
    expect(counts.protocol).toBeGreaterThan(100);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('whole-chunk (fast path) and byte-by-byte (general path) parsing agree on mutated streams', () => {
    const rnd = prng(7);
    const corpus = FIXTURES.map((f) => f.bytes);
    const run = (chunks: Buffer[]) => {
      const p = new RespParser();
      const cmds: string[] = [];
      try {
        for (const c of chunks) for (const cmd of p.push(c)) cmds.push(`${cmd.offset}+${cmd.size}:${cmd.args.map((a) => a.toString('hex')).join(',')}`);
      } catch (err) {
        if (!(err instanceof ReplistreamError) || err.code !== 'PROTOCOL') throw err;
        return { error: true, cmds: null };
      }
      return { error: false, cmds, offset: p.offset, idle: p.idle };
    };
    let errors = 0;
    for (let i = 0; i < 3000; i++) {
      const input = mutate(corpus[i % corpus.length], rnd);
      const whole = run([input]);
      const bytewise = run([...input].map((b) => Buffer.from([b])));
      expect(whole).toEqual(bytewise);
      if (whole.error) errors++;
    }
    expect(errors).toBeGreaterThan(100);
  });

  it('reply reader and snapshot reader only throw PROTOCOL on mutated handshakes', () => {
    const rnd = prng(42);
    const mark = 'f'.repeat(40);
    const corpus = [
      Buffer.from('+PONG\r\n+OK\r\n\n+FULLRESYNC 0123456789012345678901234567890123456789 99\r\n\n$10\r\nREDIS0010x'),
      Buffer.from(`+CONTINUE\r\n\n$EOF:${mark}\r\nREDIS0010${mark}`),
      Buffer.from('-ERR unknown\r\n-NOAUTH x\r\n$0\r\n'),
    ];
    for (let i = 0; i < 3000; i++) {
      const input = mutate(corpus[i % corpus.length], rnd);
      expectOnlyProtocolErrors(() => {
        const reader = new ReplyReader({ maxLineLength: 256 });
        let snapshot: SnapshotReader | null = null;
        for (const c of chunked(input, rnd)) {
          if (snapshot) {
            snapshot.push(c);
            continue;
          }
          reader.push(c);
          for (let r = reader.next(); r; r = snapshot ? undefined : reader.next()) {
            if (r.type === 'bulk' || r.type === 'eof') {
              snapshot = new SnapshotReader(r);
              snapshot.push(reader.takeRemainder());
            }
          }
        }
      });
    }
  });
});
