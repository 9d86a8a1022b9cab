import { describe, expect, it } from 'vitest';
import { OwnKeys } from '../../../services/capture/own-keys.js';

const cmd = (...a: string[]) => a.map((x) => Buffer.from(x));
const text = (cmds: Buffer[][]) => cmds.map((c) => c.map((b) => b.toString()).join(' '));

describe('own keys (cascade)', () => {
  const own = new OwnKeys(['HB']);

  it('knows the bookkeeping prefix and the heartbeat keys, not user keys that look alike', () => {
    expect(own.isOwn(Buffer.from('replistream:pos:g:t.s1.db0:0'))).toBe(true);
    expect(own.isOwn(Buffer.from('HB'))).toBe(true);
    expect(own.isOwn(Buffer.from('REPLISTREAM_TIMESTAMP_HEARTBEAT'))).toBe(true);
    expect(own.isOwn(Buffer.from('replistream'))).toBe(false);
    expect(own.isOwn(Buffer.from('replistreamer:x'))).toBe(false);
    expect(own.isOwn(Buffer.from('HB2'))).toBe(false);
  });

  it('forwards the origin keys (end-to-end lag in a cascade), not the rest of the prefix', () => {
    expect(own.isOwn(Buffer.from('replistream:origin:a'))).toBe(false);
    expect(own.isOwn(Buffer.from('replistream:origin:'))).toBe(true); // no source id: not an origin key
    expect(own.strip(0, [cmd('SET', 'replistream:origin:a', '123')])).toBeNull();
  });

  it('leaves a unit without bookkeeping alone (a user transaction across dbs is not cut)', () => {
    const unit = [cmd('SET', 'a', '1'), cmd('SELECT', '3'), cmd('INCR', 'b')];
    expect(own.mayTouch(unit)).toBe(false);
    expect(own.strip(0, unit)).toBeNull();
  });

  it("cuts an applier's transaction into one unit per database run, bookkeeping and SELECTs gone", () => {
    const tx = [
      cmd('SELECT', '3'), cmd('SET', 'a', '1'), cmd('INCR', 'n'),
      cmd('SELECT', '1'), cmd('LPUSH', 'l', 'x'),
      cmd('SELECT', '3'), cmd('MSET', 'c', '1', 'd', '2'),
      cmd('SELECT', '0'), cmd('SET', 'replistream:pos:g:t.s1.db3:0', '{}'), cmd('SET', 'replistream:pos:g:t.s1.db1:2', '{}'),
    ];
    expect(own.mayTouch(tx)).toBe(true);
    const runs = own.strip(0, tx)!;
    expect(runs.map((r) => ({ db: r.db, commands: text(r.commands) }))).toEqual([
      { db: 3, commands: ['SET a 1', 'INCR n'] },
      { db: 1, commands: ['LPUSH l x'] },
      { db: 3, commands: ['MSET c 1 d 2'] },
    ]);
  });

  it('keeps keyless commands (a flush) and drops what only touches own keys (their RESTORE after it)', () => {
    const runs = own.strip(2, [cmd('FLUSHDB'), cmd('RESTORE', 'replistream:pos:g:@epoch:db2', '0', 'payload', 'REPLACE'), cmd('DEL', 'replistream:a', 'replistream:b')])!;
    expect(runs.map((r) => ({ db: r.db, commands: text(r.commands) }))).toEqual([{ db: 2, commands: ['FLUSHDB'] }]);
  });

  it('a unit made only of bookkeeping leaves nothing', () => {
    expect(own.strip(0, [cmd('SET', 'replistream:pos:g:s', '{}')])).toEqual([]);
    expect(own.strip(0, [cmd('SET', 'HB', '123')])).toEqual([]);
  });

  it('a command mixing an own key with a user key is user data', () => {
    const runs = own.strip(0, [cmd('DEL', 'replistream:x', 'user'), cmd('SET', 'replistream:y', '1')])!;
    expect(runs.map((r) => text(r.commands))).toEqual([['DEL replistream:x user']]);
  });
});
