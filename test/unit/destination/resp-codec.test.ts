import { describe, expect, it } from 'vitest';
import { encodeCommandChunks, commandArgs, commandCount, encodeCommands, RestoreCommand, RespProtocolError, RespReplyError, RespReplyParser, type RespReply } from '../../../services/destination/resp-codec.js';

describe('encodeCommands', () => {
  it('writes RESP arrays of bulk strings, binary and multi-byte arguments included', () => {
    const bytes = encodeCommands([
      ['SET', 'k', 'é'],
      ['RESTORE', Buffer.from([0x00, 0x0d, 0x0a, 0xff]), '0'],
      ['PING'],
    ]);
    expect(bytes.toString('latin1')).toBe(
      '*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n\xc3\xa9\r\n' + '*3\r\n$7\r\nRESTORE\r\n$4\r\n\x00\r\n\xff\r\n$1\r\n0\r\n' + '*1\r\n$4\r\nPING\r\n',
    );
  });

  it('sizes lengths of every digit count', () => {
    const big = Buffer.alloc(123_456, 0x61);
    const bytes = encodeCommands([['SET', 'k'.repeat(10), big]]);
    expect(bytes.subarray(0, 31).toString('latin1')).toBe('*3\r\n$3\r\nSET\r\n$10\r\nkkkkkkkkkk\r\n$');
    expect(bytes.length).toBe(4 + 9 + 17 + (1 + 6 + 2 + 123_456 + 2));
  });
});

describe('encodeCommandChunks', () => {
  const big = Buffer.alloc(70_000, 0x62);
  const commands = [
    ['MULTI'],
    ['SET', 'k', 'é'],
    ['SET', Buffer.from('big'), big],
    ['HSET', 'h', big, Buffer.from([0x00, 0x0d, 0x0a]), big, big],
    ['EXEC'],
  ];

  it('are the bytes of encodeCommands, big arguments passed by reference, not copied', () => {
    const chunks = encodeCommandChunks(commands);
    expect(Buffer.concat(chunks).equals(encodeCommands(commands))).toBe(true);
    expect(chunks.filter((c) => c === big)).toHaveLength(4);
    // headers before each big argument, its CRLF after it
    expect(chunks[0].toString('latin1')).toBe('*1\r\n$5\r\nMULTI\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n\xc3\xa9\r\n*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$70000\r\n');
    expect(chunks[chunks.length - 1].toString('latin1')).toBe('\r\n*1\r\n$4\r\nEXEC\r\n');
  });

  it('calls of more arguments than any call before (the lengths kept between calls grow) encode as encodeCommands', () => {
    for (const count of [3, 5_000, 20_000, 2]) {
      const many = [['DEL', ...Array.from({ length: count }, (_, i) => Buffer.from(`key:${i}`))], ['SET', 'k', 'é']];
      expect(Buffer.concat(encodeCommandChunks(many)).equals(encodeCommands(many))).toBe(true);
    }
  });

  it('commands already in RESP are copied as they are, runs of them back to back in one buffer at once', () => {
    const plain = [['SET', 'a', '1'], ['DEL', Buffer.from('b'), Buffer.from('c')], ['SET', 'k', big], ['INCR', 'n']];
    const shared = encodeCommands([['PING'], ...plain]);
    const at: number[] = [];
    for (let i = 0, p = 0; i <= plain.length + 1; i++) {
      at.push(p);
      p += i === 0 ? encodeCommands([['PING']]).length : i <= plain.length ? encodeCommands([plain[i - 1]]).length : 0;
    }
    const enc = (i: number) => ({ resp: shared, respStart: at[i + 1], respEnd: at[i + 2] });
    const other = encodeCommands([['SET', 'x', 'y']]);
    // in order (one run), out of order, mixed with argument lists, and in another buffer
    const mixed = [['MULTI'], enc(0), enc(1), ['SELECT', '2'], enc(3), enc(2), { resp: other, respStart: 0, respEnd: other.length }, ['EXEC']];
    const expected = encodeCommands([['MULTI'], plain[0], plain[1], ['SELECT', '2'], plain[3], plain[2], ['SET', 'x', 'y'], ['EXEC']]);
    expect(Buffer.concat(encodeCommandChunks(mixed)).equals(expected)).toBe(true);
    expect(Buffer.concat(encodeCommandChunks([enc(0), enc(1), enc(2), enc(3)])).equals(encodeCommands(plain))).toBe(true);
    expect(commandArgs(enc(1))).toEqual([Buffer.from('DEL'), Buffer.from('b'), Buffer.from('c')]);
  });

  it('one buffer when no argument is big; the threshold is inclusive', () => {
    const small = [['SET', 'k', Buffer.alloc(100, 1)], ['PING']];
    expect(encodeCommandChunks(small)).toEqual([encodeCommands(small)]);
    const at = [['SET', 'k', Buffer.alloc(100, 1)]];
    expect(encodeCommandChunks(at, 100)).toHaveLength(3);
    expect(encodeCommandChunks(at, 101)).toHaveLength(1);
    expect(Buffer.concat(encodeCommandChunks(at, 100)).equals(encodeCommands(at))).toBe(true);
  });

  it('a big argument last or first in the stream, an empty list', () => {
    for (const c of [[['SET', 'k', big]], [[big]], [[big, big]]]) {
      const chunks = encodeCommandChunks(c);
      expect(Buffer.concat(chunks).equals(encodeCommands(c))).toBe(true);
    }
    expect(Buffer.concat(encodeCommandChunks([])).length).toBe(0);
  });

  it('RESTOREs from their template are the bytes of their argument lists; big payloads passed by reference', () => {
    const restores: RestoreCommand[] = [];
    for (const keyLength of [0, 1, 9, 16, 17, 100, 1000]) {
      for (const payloadLength of [1, 16, 17, 99, 100, 65_535, 70_000]) {
        for (const ttl of ['0', '7', '1735689600000']) {
          for (const absTtl of [true, false]) {
            restores.push(new RestoreCommand(Buffer.alloc(keyLength, 0x6b), ttl, Buffer.alloc(payloadLength, 0xfe), absTtl));
          }
        }
      }
    }
    for (const r of restores) {
      const plain = [r.argList()];
      expect(plain[0]).toHaveLength(r.absTtl ? 6 : 5);
      expect(Buffer.concat(encodeCommandChunks([r])).equals(encodeCommands(plain))).toBe(true);
      if (r.payload.length < 65_536) expect(r.encodedLength()).toBe(encodeCommands(plain).length);
      expect(commandArgs(r)).toEqual(plain[0]);
    }
    // mixed with every other kind, big payloads not copied
    const mixed = [['MULTI'], ...restores, ['SET', 'k', big], ...restores.slice(0, 9), ['EXEC']];
    const chunks = encodeCommandChunks(mixed);
    expect(Buffer.concat(chunks).equals(encodeCommands(mixed.map((c) => (c instanceof RestoreCommand ? c.argList() : c))))).toBe(true);
    expect(chunks.filter((c) => restores.some((r) => r.payload === c))).toHaveLength(restores.filter((r) => r.payload.length >= 65_536).length);
  });

  it('batches encoded earlier are sent as they are, between commands, first, last, empty', () => {
    const body = commands.slice(1, 4);
    const batch = { chunks: encodeCommandChunks(body), count: body.length };
    const empty = { chunks: encodeCommandChunks([]), count: 0 };
    const cases = [
      [[['MULTI'], batch, ['EXEC']], commands],
      [[batch], body],
      [[empty, ['PING'], batch, empty], [['PING'], ...body]],
      [[batch, batch], [...body, ...body]],
    ] as const;
    for (const [sendable, plain] of cases) {
      const chunks = encodeCommandChunks(sendable);
      expect(Buffer.concat(chunks).equals(encodeCommands(plain))).toBe(true);
      expect(chunks.every((c) => c.length > 0)).toBe(true);
      expect(chunks.filter((c) => c === big)).toHaveLength(4 * sendable.filter((x) => x === batch).length); // not copied again
      expect(commandCount(sendable)).toBe(plain.length);
    }
  });
});

/** What a MULTI … EXEC of a transaction answers, as Redis sends it. */
const FIXTURE = Buffer.from(
  '+OK\r\n' + // SELECT
    '+QUEUED\r\n+QUEUED\r\n' +
    '*5\r\n+OK\r\n:42\r\n$5\r\nhello\r\n$-1\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n' + // EXEC
    '*-1\r\n' + // EXEC aborted by WATCH
    '*2\r\n*2\r\n:1\r\n$0\r\n\r\n*0\r\n' + // nested arrays
    '-EXECABORT Transaction discarded because of previous errors.\r\n',
  'latin1',
);

function expected(): RespReply[] {
  return [
    'OK',
    'QUEUED',
    'QUEUED',
    ['OK', 42, 'hello', null, new RespReplyError('WRONGTYPE Operation against a key holding the wrong kind of value')],
    null,
    [[1, ''], []],
    new RespReplyError('EXECABORT Transaction discarded because of previous errors.'),
  ];
}

function normalise(r: RespReply): unknown {
  if (r instanceof RespReplyError) return { error: r.message, name: r.name };
  if (Array.isArray(r)) return r.map(normalise);
  return r;
}

function feed(chunks: Buffer[]): RespReply[] {
  const p = new RespReplyParser();
  const out: RespReply[] = [];
  for (const c of chunks) out.push(...p.push(c));
  expect(p.idle).toBe(true);
  return out;
}

describe('RespReplyParser', () => {
  it('reads a fixture fed whole', () => {
    expect(feed([FIXTURE]).map(normalise)).toEqual(expected().map(normalise));
  });

  it('reads it fed byte by byte', () => {
    const chunks = [...FIXTURE].map((b) => Buffer.from([b]));
    expect(feed(chunks).map(normalise)).toEqual(expected().map(normalise));
  });

  it('reads it split at every boundary', () => {
    for (let i = 1; i < FIXTURE.length; i++) {
      expect(feed([FIXTURE.subarray(0, i), FIXTURE.subarray(i)]).map(normalise)).toEqual(expected().map(normalise));
    }
  });

  it('errors are ReplyErrors, as the writer classifies them', () => {
    const [e] = new RespReplyParser().push(Buffer.from('-MOVED 3999 127.0.0.1:6381\r\n'));
    expect(e).toBeInstanceOf(Error);
    expect((e as Error).name).toBe('ReplyError');
  });

  it('refuses bytes that are not RESP', () => {
    expect(() => new RespReplyParser().push(Buffer.from('hello\r\n'))).toThrow(RespProtocolError);
    expect(() => new RespReplyParser().push(Buffer.from('$abc\r\n'))).toThrow(/bulk length/);
  });
});
