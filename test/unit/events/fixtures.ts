import { isDeepStrictEqual } from 'node:util';
import { expect } from 'vitest';
export { prng as rng } from '../../helpers/prng.js';
import type { ChangeEvent, SourcePosition, TypedValue, SnapshotKey, CommandEvent, StreamValue } from '../../../services/events/model.js';


/** n bytes covering every byte value (0x00…0xff, CR/LF, invalid UTF-8). */
export function bytes(n: number, salt = 0): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + salt * 7 + (i >> 8)) & 0xff;
  return b;
}

export const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

export const pos = (offset = 1234, seq = 0, epoch = 3): SourcePosition => ({ epoch, offset, seq, replid: '8de9b1b2c3d4e5f60718293a4b5c6d7e8f901234' });

export function key(value: TypedValue | null, extra: Partial<SnapshotKey> = {}): SnapshotKey {
  return {
    kind: 'snapshot-key',
    pos: pos(1000, 17),
    db: 2,
    key: Buffer.from('user:{42}:\x00\xff'),
    type: value?.type ?? 'string',
    expireAtMs: null,
    payload: null,
    value,
    piece: null,
    ...extra,
  };
}

export function command(commands: Buffer[][], extra: Partial<CommandEvent> = {}): CommandEvent {
  return { kind: 'command', pos: pos(5000), db: 0, commands, participants: [], piece: null, ...extra };
}

export const b = (s: string) => Buffer.from(s);

export function stream(overrides: Partial<StreamValue> = {}): StreamValue {
  return {
    entries: [
      { id: { ms: 1700000000000n, seq: 0n }, fields: [b('f'), b('v'), ALL_BYTES, Buffer.alloc(0)] },
      { id: { ms: 1700000000000n, seq: 1n }, fields: [] },
    ],
    length: 2,
    lastId: { ms: 1700000000000n, seq: 1n },
    firstId: { ms: 1700000000000n, seq: 0n },
    maxDeletedId: { ms: 0n, seq: 0n },
    entriesAdded: 2,
    groups: [
      {
        name: b('g1'),
        lastId: { ms: 1700000000000n, seq: 0n },
        entriesRead: 1,
        pending: [
          { id: { ms: 1700000000000n, seq: 0n }, deliveryTimeMs: 1700000000123, deliveryCount: 3, consumer: b('alice') },
          { id: { ms: 1700000000000n, seq: 1n }, deliveryTimeMs: 1700000000124, deliveryCount: 1 },
        ],
        consumers: [
          { name: b('alice'), seenTimeMs: 1700000000200, activeTimeMs: 1700000000100, pending: [{ ms: 1700000000000n, seq: 0n }] },
          { name: b('bob'), seenTimeMs: 1700000000300, pending: [] },
        ],
      },
      { name: b('g2'), lastId: { ms: 0n, seq: 0n }, pending: [], consumers: [] },
    ],
    ...overrides,
  };
}

/**
 * One event of every kind and every typed-value shape. Add new ones at the end only: the frozen
 * wire-format bytes (test/fixtures/events/, wire-fixtures.test.ts) hold its first N events.
 */
export function everyEvent(): ChangeEvent[] {
  const max = 0xffff_ffff_ffff_ffffn;
  return [
    { kind: 'snapshot-begin', pos: pos(0, 0, 1), db: 0, rdbVersion: 11, sourceVersion: '7.2.4' },
    { kind: 'snapshot-begin', pos: pos(2 ** 53 - 2, 0, 1), db: 15, rdbVersion: 6, sourceVersion: null },
    { kind: 'snapshot-end', pos: pos(99, 1_000_000, 1), db: 0, keyCount: 1_000_000 },
    key({ type: 'string', value: ALL_BYTES }, { expireAtMs: 1893456000000, payload: bytes(300) }),
    key({ type: 'string', value: Buffer.alloc(0) }, { key: Buffer.alloc(0) }),
    key({ type: 'list', items: [ALL_BYTES, Buffer.alloc(0), b('x')] }),
    key({ type: 'list', items: [] }),
    key({ type: 'set', members: [b('a'), ALL_BYTES] }),
    key({ type: 'set', members: [] }),
    key({
      type: 'zset',
      entries: [
        { member: b('neg0'), score: -0 },
        { member: b('pos0'), score: 0 },
        { member: b('nan'), score: Number.NaN },
        { member: b('inf'), score: Number.POSITIVE_INFINITY },
        { member: b('-inf'), score: Number.NEGATIVE_INFINITY },
        { member: b('tiny'), score: 5e-324 },
        { member: b('big'), score: 1.7976931348623157e308 },
        { member: ALL_BYTES, score: 1.5 },
      ],
    }),
    key({ type: 'zset', entries: [] }),
    key({
      type: 'hash',
      entries: [
        { field: b('f1'), value: ALL_BYTES, expireAtMs: null },
        { field: ALL_BYTES, value: Buffer.alloc(0), expireAtMs: 1893456000123 },
      ],
    }),
    key({ type: 'hash', entries: [] }),
    key({ type: 'stream', stream: stream() }),
    key({
      type: 'stream',
      stream: {
        entries: [{ id: { ms: max, seq: max }, fields: [b('a'), b('b')] }],
        length: 1,
        lastId: { ms: max, seq: max },
        groups: [{ name: b('g'), lastId: { ms: 2n ** 63n, seq: 2n ** 53n + 1n }, pending: [], consumers: [] }],
      },
    }),
    key({ type: 'stream', stream: { entries: [], length: 0, lastId: { ms: 0n, seq: 0n }, groups: [] } }),
    key({ type: 'module', moduleId: 'ReJSON-RL' }, { type: 'module', payload: bytes(100, 3) }),
    key(null, { type: 'hash', payload: bytes(50), expireAtMs: 1 }),
    key({ type: 'set', members: [b('m1')] }, { append: true }),
    key({ type: 'set', members: [b('m2')] }, { append: false }),
    key({ type: 'list', items: [b('x')] }, { piece: { index: 3, last: false, continued: true } }),
    key({ type: 'list', items: [b('x')] }, { piece: { index: 0, last: true } }),
    command([[b('SET'), b('k'), ALL_BYTES]]),
    command([[b('MULTI')], [b('INCR'), b('a')], [b('LPUSH'), b('l'), Buffer.alloc(0)], [b('EXEC')]], { participants: [{ db: 9, partition: 0 }, { db: 9, partition: 3 }, { db: 2, partition: 7 }], db: 9 }),
    command([], { piece: { index: 2, last: true }, pos: pos(5000, 2) }),
    { kind: 'heartbeat', pos: pos(77), db: 0, timeMs: 1893456000999 },
    // v2: a cluster source's slot hand-off
    { kind: 'slot-handoff', pos: pos(9000, 2 ** 52 + 1_800_000_000_000), db: 0, after: [{ partition: 0, pos: pos(40, 2 ** 52) }, { partition: 5, pos: pos(2 ** 53 - 2, 0, 3) }] },
  ];
}

/**
 * Deep equality that is fast on big Buffers (vitest's compares them element by element):
 * node's isDeepStrictEqual (Object.is on numbers, so -0 ≠ 0 and NaN = NaN), with vitest's diff
 * only when they differ.
 */
export function expectSame(actual: unknown, expected: unknown): void {
  if (isDeepStrictEqual(actual, expected)) return;
  expect(actual).toStrictEqual(expected);
  throw new Error('values differ (isDeepStrictEqual) though toStrictEqual found them equal');
}
