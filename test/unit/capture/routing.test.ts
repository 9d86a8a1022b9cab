import { describe, expect, it } from 'vitest';
import { commandKeys } from '../../../services/capture/command-keys.js';
import { globToRegExp, KeyFilter } from '../../../services/capture/key-filter.js';
import { partitionOfKey, routeUnit } from '../../../services/capture/routing.js';

const cmd = (...a: string[]) => a.map((s) => Buffer.from(s));
const ctx = { partitions: 8, syncedDbs: [0, 1, 2] };

describe('command keys', () => {
  it.each([
    [['SET', 'k', 'v'], ['k']],
    [['MSET', 'a', '1', 'b', '2'], ['a', 'b']],
    [['DEL', 'a', 'b', 'c'], ['a', 'b', 'c']],
    [['RENAME', 'a', 'b'], ['a', 'b']],
    [['BITOP', 'AND', 'd', 's1', 's2'], ['d', 's1', 's2']],
    [['ZUNIONSTORE', 'd', '2', 'x', 'y', 'WEIGHTS', '1', '2'], ['d', 'x', 'y']],
    [['SINTERSTORE', 'd', 'x', 'y'], ['d', 'x', 'y']],
    [['LMOVE', 'a', 'b', 'LEFT', 'RIGHT'], ['a', 'b']],
    [['SORT', 'l', 'BY', 'w', 'STORE', 'out'], ['l', 'out']],
    [['PUBLISH', 'ch', 'msg'], []],
    [['XGROUP', 'CREATE', 's', 'g', '$'], ['s']],
  ])('%j → %j', (args, keys) => {
    expect(commandKeys(cmd(...args))?.map(String)).toEqual(keys);
  });
  it('returns null for an unknown command so the caller can route it everywhere', () => {
    expect(commandKeys(cmd('SOMEMODULE.WRITE', 'k'))).toBeNull();
  });
});

describe('routing', () => {
  it('keeps a key in one partition and respects hash tags', () => {
    expect(partitionOfKey(Buffer.from('{user1}:a'), 8)).toBe(partitionOfKey(Buffer.from('{user1}:b'), 8));
    const r = routeUnit(0, [cmd('SET', 'k', 'v')], ctx);
    expect(r).toEqual([{ db: 0, partition: partitionOfKey(Buffer.from('k'), 8) }]);
  });
  it('makes a barrier of a multi-key command across partitions', () => {
    const keys = ['a', 'b', 'c', 'd', 'e'];
    const parts = new Set(keys.map((k) => partitionOfKey(Buffer.from(k), 8)));
    const r = routeUnit(0, [cmd('DEL', ...keys)], ctx);
    expect(r.length).toBe(parts.size);
    expect(r.length).toBeGreaterThan(1);
  });
  it('follows SELECT inside a transaction and crosses databases', () => {
    const r = routeUnit(0, [cmd('MULTI'), cmd('SET', 'k', '1'), cmd('SELECT', '2'), cmd('SET', 'k', '2'), cmd('EXEC')], ctx);
    expect(r.map((p) => p.db)).toEqual([0, 2]);
  });
  it('routes FLUSHDB to every partition, FLUSHALL to every synced db, SWAPDB to both dbs', () => {
    expect(routeUnit(1, [cmd('FLUSHDB')], ctx)).toHaveLength(8);
    expect(routeUnit(1, [cmd('FLUSHALL')], ctx)).toHaveLength(24);
    expect(new Set(routeUnit(0, [cmd('SWAPDB', '1', '2')], ctx).map((p) => p.db))).toEqual(new Set([1, 2]));
  });
  it('MOVE touches the key in both dbs; an unsynced db is dropped', () => {
    const r = routeUnit(0, [cmd('MOVE', 'k', '1')], ctx);
    expect(r.map((p) => p.db)).toEqual([0, 1]);
    expect(routeUnit(5, [cmd('SET', 'k', 'v')], ctx)).toEqual([]);
  });
  it('routes an unknown command to every partition of its db', () => {
    expect(routeUnit(0, [cmd('X.WRITE', 'k')], ctx)).toHaveLength(8);
  });
});

describe('key filter', () => {
  it('matches Redis globs', () => {
    expect(globToRegExp('user:*').test('user:1')).toBe(true);
    expect(globToRegExp('h?llo').test('hallo')).toBe(true);
    expect(globToRegExp('h[ae]llo').test('hillo')).toBe(false);
    expect(globToRegExp('h[^e]llo').test('hallo')).toBe(true);
    expect(globToRegExp('h[a-c]llo').test('hbllo')).toBe(true);
    expect(globToRegExp('a\\*b').test('a*b')).toBe(true);
    expect(globToRegExp('a\\*b').test('axb')).toBe(false);
  });
  it('applies include then exclude, and db selection', () => {
    const f = new KeyFilter({ dbs: [0], include: ['user:*'], exclude: ['user:tmp:*'] });
    expect(f.keySelected(Buffer.from('user:1'))).toBe(true);
    expect(f.keySelected(Buffer.from('user:tmp:1'))).toBe(false);
    expect(f.keySelected(Buffer.from('order:1'))).toBe(false);
    expect(f.dbSelected(0)).toBe(true);
    expect(f.dbSelected(1)).toBe(false);
  });
});
