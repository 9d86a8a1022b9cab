import { describe, expect, it } from 'vitest';
import calculateSlot from 'cluster-key-slot';
import {
  type Arg,
  type CommandContext,
  KeyTable,
  type Op,
  scoreString,
  translateCommands,
  typedWriteCommands,
} from '../../../services/destination/translate.js';
import { ReplistreamError } from '../../../services/common/errors.js';
import { buildDumpPayload } from '../../../services/replication/dump-payload.js';

const B = (...a: Array<string | number>) => a.map((x) => Buffer.from(String(x)));
const str = (args: Arg[]) => args.map((a) => (typeof a === 'string' ? a : a.toString())).join(' ');
const ops = (r: ReturnType<typeof translateCommands>) => r.items.map((i) => (i.t === 'op' ? i.op : null)).filter((o): o is Op => o !== null);

const keys = KeyTable.fromSpecs({ set: [1, 1, 1], rename: [1, 2, 1], mset: [1, -1, 2], incr: [1, 1, 1], publish: [0, 0, 0] });

function ctx(over: Partial<CommandContext> = {}): CommandContext {
  const map = new Map([[0, 0], [1, 3], [2, 4]]);
  return {
    cluster: false,
    mapDb: (db) => map.get(db),
    mappedTargets: () => [0, 3, 4],
    refuseFlush: false,
    preservedPrefixes: ['replistream:'],
    positionDb: 0,
    keys,
    homeSlot: 42,
    ...over,
  };
}

describe('translateCommands (standalone)', () => {
  it('maps SELECT, MOVE, COPY … DB and drops what targets unsynchronized dbs', () => {
    const r = translateCommands(
      [B('SET', 'a', 1), B('SELECT', 1), B('SET', 'b', 2), B('MOVE', 'b', 2), B('MOVE', 'b', 9), B('COPY', 'b', 'c', 'DB', 0, 'REPLACE'), B('COPY', 'b', 'c', 'db', 7), B('SELECT', 9), B('SET', 'lost', 1), B('SELECT', 0), B('INCR', 'n')],
      0,
      5,
      ctx(),
    );
    expect(ops(r).map((o) => [o.db, str(o.args)])).toEqual([
      [0, 'SET a 1'],
      [3, 'SET b 2'],
      [3, 'MOVE b 4'],
      [3, 'DEL b'], // moved to a db that is not synchronized: gone from the synced ones
      [3, 'COPY b c DB 0 REPLACE'],
      [0, 'INCR n'],
    ]);
    expect(r.dropped).toEqual(['COPY', 'SET']);
    expect(ops(r).map((o) => o.origin!.id)).toEqual(['5/0', '5/1', '5/2', '5/3', '5/4', '5/5']);
  });

  it('keeps replistream keys through SWAPDB and flushes; FLUSHALL flushes the mapped dbs only', () => {
    const r = translateCommands([B('MULTI'), B('SWAPDB', 1, 2), B('SWAPDB', 0, 1), B('FLUSHDB', 'ASYNC'), B('FLUSHALL'), B('EXEC')], 0, 0, ctx());
    const o = ops(r);
    expect(str(o[0].args)).toBe('SWAPDB 3 4');
    expect(o[1].args[0]).toBe('EVAL');
    expect(o[1].args.slice(2).map(String)).toEqual(['0', '0', '3', 'replistream:*']);
    expect(o[1].clobbersDb).toBe(true);
    expect(o.slice(2).map((x) => [x.db, x.args[0], String(x.args.at(-1))])).toEqual([
      [0, 'EVAL', 'replistream:*'],
      [0, 'EVAL', 'replistream:*'],
      [3, 'EVAL', 'replistream:*'],
      [4, 'EVAL', 'replistream:*'],
    ]);
    expect(() => translateCommands([B('SWAPDB', 0, 9)], 0, 0, ctx())).toThrow(expect.objectContaining({ setting: 'db-map' }));
    const err = (() => {
      try {
        translateCommands([B('FLUSHALL')], 0, 0, ctx({ refuseFlush: true }));
      } catch (e) {
        return e as ReplistreamError;
      }
    })();
    expect(err?.setting).toBe('refuse-flush');
  });

  it('escapes glob characters of preserved prefixes', () => {
    const r = translateCommands([B('FLUSHDB')], 0, 0, ctx({ preservedPrefixes: ['a*b?[x]'] }));
    expect(String(ops(r)[0].args.at(-1))).toBe('a\\*b\\?\\[x\\]*');
  });
});

describe('translateCommands (cluster)', () => {
  const c = ctx({ cluster: true, mapDb: (db) => (db === 0 ? 0 : undefined), mappedTargets: () => [0] });
  it('routes ops by slot, splits or emulates cross-slot commands, sends keyless ones to the home slot', () => {
    const r = translateCommands([B('SET', 'a', 1), B('RENAME', '{t}a', '{t}b'), B('RENAME', 'a', 'b'), B('PUBLISH', 'ch', 'm'), B('MSET', 'x', 1, 'y', 2)], 0, 0, c);
    expect(r.items.map((i) => i.t)).toEqual(['op', 'op', 'cross-slot', 'op', 'op', 'op']);
    const o = ops(r);
    expect(o.map((x) => x.slot)).toEqual([calculateSlot('a'), calculateSlot('t'), 42, calculateSlot('x'), calculateSlot('y')]);
    expect(o.slice(3).map((x) => str(x.args))).toEqual(['MSET x 1', 'MSET y 2']);
    const cross = r.items[2];
    expect(cross.t === 'cross-slot' && cross.plan.kind === 'emulate' ? cross.plan.slots : null).toEqual([calculateSlot('b'), calculateSlot('a')]);
  });

  it('turns FLUSH* into barriers and FUNCTION into idempotent all-masters commands', () => {
    const r = translateCommands([B('FLUSHALL'), B('FUNCTION', 'LOAD', 'code'), B('FUNCTION', 'RESTORE', 'payload', 'FLUSH'), B('SELECT', 3), B('FLUSHDB')], 0, 0, c);
    expect(r.items.map((i) => (i.t === 'all-masters' ? `${i.t}:${str(i.args)}` : i.t))).toEqual([
      'flush',
      'all-masters:FUNCTION LOAD REPLACE code',
      'all-masters:FUNCTION RESTORE payload REPLACE',
    ]);
    expect(r.dropped).toEqual(['FLUSHDB']);
  });
});

describe('typedWriteCommands', () => {
  const f = { streamMeta: true, createConsumer: true, hashFieldTtl: false };
  const k = Buffer.from('k');
  it('DELs with the first part, appends with the others, sets the (absolute) TTL with each', () => {
    const items = B(...Array.from({ length: 1100 }, (_, i) => i));
    expect(typedWriteCommands(k, { type: 'list', items }, 123, true, f).map((c) => [c[0], c.length])).toEqual([
      ['DEL', 2],
      ['RPUSH', 514],
      ['RPUSH', 514],
      ['RPUSH', 78],
      ['PEXPIREAT', 3],
    ]);
    expect(typedWriteCommands(k, { type: 'list', items: B('x') }, 123, false, f).map(str)).toEqual(['RPUSH k x', 'PEXPIREAT k 123']);
    expect(typedWriteCommands(k, { type: 'string', value: Buffer.from('ab') }, null, false, f).map(str)).toEqual(['APPEND k ab']);
    expect(typedWriteCommands(k, { type: 'string', value: Buffer.from('ab') }, null, true, f).map(str)).toEqual(['DEL k', 'SET k ab']);
  });

  it('writes exact scores and field TTLs', () => {
    expect([Infinity, -Infinity, -0, 0.1, 1e21, 3].map(scoreString)).toEqual(['+inf', '-inf', '-0', '0.1', '1e+21', '3']);
    const h = typedWriteCommands(k, { type: 'hash', entries: [{ field: Buffer.from('a'), value: Buffer.from('1'), expireAtMs: 500 }, { field: Buffer.from('b'), value: Buffer.from('2'), expireAtMs: 500 }, { field: Buffer.from('c'), value: Buffer.from('3'), expireAtMs: null }] }, null, true, f);
    expect(h.map(str)).toEqual(['DEL k', 'HSET k a 1 b 2 c 3', 'HPEXPIREAT k 500 FIELDS 2 a b']);
  });

  it('rebuilds stream metadata and consumer groups', () => {
    const id = (ms: number, seq = 0) => ({ ms: BigInt(ms), seq: BigInt(seq) });
    const cmds = typedWriteCommands(
      k,
      {
        type: 'stream',
        stream: {
          entries: [{ id: id(5, 1), fields: B('f', 'v') }],
          length: 1,
          lastId: id(7),
          maxDeletedId: id(6),
          entriesAdded: 3,
          groups: [{ name: Buffer.from('g'), lastId: id(5, 1), entriesRead: 1, pending: [{ id: id(5, 1), deliveryTimeMs: 99, deliveryCount: 2 }], consumers: [{ name: Buffer.from('alice'), seenTimeMs: 1, pending: [id(5, 1)] }] }],
        },
      },
      null,
      true,
      f,
    ).map(str);
    expect(cmds).toEqual([
      'DEL k',
      'XADD k 5-1 f v',
      'XGROUP CREATE k __replistream_tmp__ 0 MKSTREAM',
      'XGROUP DESTROY k __replistream_tmp__',
      'XSETID k 7-0 ENTRIESADDED 3 MAXDELETEDID 6-0',
      'XGROUP DESTROY k g',
      'XGROUP CREATE k g 5-1 ENTRIESREAD 1',
      'XGROUP CREATECONSUMER k g alice',
      'XCLAIM k g alice 0 5-1 TIME 99 RETRYCOUNT 2 FORCE JUSTID',
    ]);
  });

  it('writes stream metadata only with the part that carries it', () => {
    const id = (ms: number, seq = 0) => ({ ms: BigInt(ms), seq: BigInt(seq) });
    const entriesOnly = { entries: [{ id: id(1), fields: B('a', 'b') }], length: 0, lastId: id(0), groups: [] };
    expect(typedWriteCommands(k, { type: 'stream', stream: entriesOnly }, null, false, f).map(str)).toEqual(['XADD k 1-0 a b']);
    expect(typedWriteCommands(k, { type: 'stream', stream: entriesOnly }, null, true, f).map(str)).toEqual([
      'DEL k',
      'XADD k 1-0 a b',
      'XGROUP CREATE k __replistream_tmp__ 0 MKSTREAM',
      'XGROUP DESTROY k __replistream_tmp__',
    ]);
  });

  it('refuses module values', () => {
    expect(() => typedWriteCommands(k, { type: 'module', moduleId: 'ReJSON-RL' }, null, true, f)).toThrow(/only be written with RESTORE/);
  });
});

describe('payloads and keys', () => {
  it('finds keys of numkeys commands', () => {
    expect(keys.keysOf(B('ZUNIONSTORE', 'd', 2, 'a', 'b', 'WEIGHTS', 1, 2)).map(String)).toEqual(['d', 'a', 'b']);
    expect(keys.keysOf(B('EVAL', 'script', 1, 'k', 'argv')).map(String)).toEqual(['k']);
    expect(keys.keysOf(B('SORT', 'l', 'BY', 'x', 'STORE', 'dst')).map(String)).toEqual(['l', 'dst']);
    expect(keys.keysOf(B('MSET', 'a', 1, 'b', 2)).map(String)).toEqual(['a', 'b']);
  });
});

describe('RESTORE of a payload newer than the destination reads', () => {
  // a string value "abc" (type 0: length 3, then the bytes) in a payload of RDB version 10 (Redis 7.0)
  const payload = buildDumpPayload(0, Buffer.from([3, 0x61, 0x62, 0x63]), 10);
  const features = { streamMeta: false, createConsumer: true, hashFieldTtl: false };
  const restore = (cmd: Buffer[], rdbVersion: number, fallback: boolean) => ops(translateCommands([cmd], 0, 1, ctx({ restore: { rdbVersion, fallback, features } }))).map((o) => str(o.args));

  it('passes RESTORE unchanged when the destination reads the payload', () => {
    const cmd = [...B('RESTORE', 'k', 0), payload, ...B('REPLACE')];
    expect(restore(cmd, 10, false)).toEqual([str(cmd)]);
  });

  it('writes the value with typed commands when allowed, keeping an absolute or relative TTL', () => {
    expect(restore([...B('RESTORE', 'k', 1900000000000), payload, ...B('REPLACE', 'ABSTTL')], 9, true)).toEqual(['DEL k', 'SET k abc', 'PEXPIREAT k 1900000000000']);
    expect(restore([...B('RESTORE', 'k', 5000), payload], 9, true)).toEqual(['DEL k', 'SET k abc', 'PEXPIRE k 5000']);
    expect(restore([...B('RESTORE', 'k', 0), payload, ...B('IDLETIME', 10)], 9, true)).toEqual(['DEL k', 'SET k abc']);
  });

  it('otherwise stops naming the key, both RDB versions and restore-fallback', () => {
    let err: unknown;
    try {
      restore([...B('RESTORE', 'user:1', 0), payload], 9, false);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ReplistreamError);
    expect((err as ReplistreamError).setting).toBe('restore-fallback');
    expect((err as ReplistreamError).message).toBe(
      'RESTORE of key "user:1": its payload has RDB version 10 (Redis 7.0), the destination reads RDB versions up to 9 (Redis 5.0–6.2); enable restore-fallback to write such keys with typed commands (or set write-mode to commands)',
    );
  });

  it('refuses a payload whose checksum does not match instead of writing a garbled value', () => {
    const bad = Buffer.from(payload);
    bad[2] ^= 1;
    expect(() => restore([...B('RESTORE', 'k', 0), bad], 9, true)).toThrow(/checksum mismatch/);
  });
});
