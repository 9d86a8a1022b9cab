/** Byte fixtures of replication command streams, with what the parser must return for them. */

export interface ExpectedCommand {
  args: string[]; // latin1 strings (binary-safe round trip)
  offset: number; // relative to the fixture's first byte
  size: number;
}

export interface StreamFixture {
  name: string;
  bytes: Buffer;
  commands: ExpectedCommand[];
}

/** RESP array of bulk strings. */
export function resp(...args: Array<string | Buffer>): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = typeof a === 'string' ? Buffer.from(a, 'latin1') : a;
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/** Builds a fixture from pieces: each piece is [bytes, args it parses to]. */
function fixture(name: string, pieces: Array<[Buffer, string[]]>): StreamFixture {
  let offset = 0;
  const commands: ExpectedCommand[] = [];
  for (const [bytes, args] of pieces) {
    commands.push({ args, offset, size: bytes.length });
    offset += bytes.length;
  }
  return { name, bytes: Buffer.concat(pieces.map((p) => p[0])), commands };
}

const binary = Buffer.from([0x00, 0x0d, 0x0a, 0xff, 0x2a, 0x24, 0x0d, 0x0a, 0x0a]);
const big = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 31 + 7) & 0xff));

export const FIXTURES: StreamFixture[] = [
  fixture('one SET', [[resp('SET', 'k', 'v'), ['SET', 'k', 'v']]]),
  fixture('SELECT then writes', [
    [resp('SELECT', '0'), ['SELECT', '0']],
    [resp('SET', 'key:1', 'hello'), ['SET', 'key:1', 'hello']],
    [resp('SELECT', '3'), ['SELECT', '3']],
    [resp('LPUSH', 'l', 'a', 'b', 'c'), ['LPUSH', 'l', 'a', 'b', 'c']],
  ]),
  fixture('MULTI/EXEC', [
    [resp('MULTI'), ['MULTI']],
    [resp('SET', 'a', '1'), ['SET', 'a', '1']],
    [resp('INCR', 'a'), ['INCR', 'a']],
    [resp('EXEC'), ['EXEC']],
  ]),
  fixture('inline keepalives and PING', [
    [Buffer.from('\n'), []],
    [Buffer.from('PING\r\n'), ['PING']],
    [Buffer.from('\r\n'), []],
    [Buffer.from('  SET  a\tb \n'), ['SET', 'a', 'b']],
    [resp('ping'), ['ping']],
  ]),
  fixture('binary and empty arguments', [
    [resp('SET', binary, Buffer.alloc(0)), ['SET', binary.toString('latin1'), '']],
    [resp(Buffer.alloc(0)), ['']],
  ]),
  fixture('empty and null arrays', [
    [Buffer.from('*0\r\n'), []],
    [Buffer.from('*-1\r\n'), []],
    [resp('DEL', 'x'), ['DEL', 'x']],
  ]),
  fixture('REPLCONF GETACK and a big value', [
    [resp('REPLCONF', 'GETACK', '*'), ['REPLCONF', 'GETACK', '*']],
    [resp('SET', 'big', big), ['SET', 'big', big.toString('latin1')]],
    [resp('PING'), ['PING']],
  ]),
];

/** Inputs that are not a valid command stream; each must throw ReplistreamError('PROTOCOL'). */
export const BAD_STREAMS: Array<{ name: string; bytes: Buffer }> = [
  { name: 'integer inside an array', bytes: Buffer.from('*2\r\n:1\r\n$1\r\na\r\n') },
  { name: 'bad array length', bytes: Buffer.from('*1x\r\n') },
  { name: 'empty array length', bytes: Buffer.from('*\r\n') },
  { name: 'array header without CR', bytes: Buffer.from('*1\n$1\r\na\r\n') },
  { name: 'bad bulk length', bytes: Buffer.from('*1\r\n$abc\r\n') },
  { name: 'negative bulk length', bytes: Buffer.from('*1\r\n$-1\r\n') },
  { name: 'bulk header without CR', bytes: Buffer.from('*1\r\n$1\na\r\n') },
  { name: 'bulk not followed by CRLF', bytes: Buffer.from('*1\r\n$3\r\nabcd\r\n') },
  { name: 'bulk followed by CR only', bytes: Buffer.from('*1\r\n$3\r\nabc\rX') },
  { name: 'line too long', bytes: Buffer.alloc(70 * 1024, 0x41) },
  { name: 'huge length digits', bytes: Buffer.from('*1\r\n$99999999999999999999\r\n') },
];
