import { describe, expect, it } from 'vitest';
import calculateSlot from 'cluster-key-slot';
import {
  type CrossSlotPlan,
  type Emulation,
  type ReadValue,
  planCrossSlot,
  remainingSteps,
  resumption,
  splitAcrossSlots,
  tempKey,
} from '../../../services/destination/cross-slot.js';
import type { Arg } from '../../../services/destination/translate.js';

const B = (...a: Array<string | number>) => a.map((x) => Buffer.from(String(x)));
const str = (args: Arg[]) => args.map((a) => (typeof a === 'string' ? a : a.toString())).join(' ');
const slot = (k: string) => calculateSlot(k);
const [A, Bs, C] = ['{a}', '{b}', '{c}'].map(slot);
const payload = Buffer.from('PAYLOAD');

function emulation(p: CrossSlotPlan): Emulation {
  if (p.kind !== 'emulate') throw new Error(`${p.name}: ${p.reason}`);
  return p;
}

/** The slot transactions of a fresh run, as text, for the read values given. */
function fresh(p: Emulation, values: ReadValue[]): { decision: string; steps: string[] } {
  const d = p.decide(values);
  const branch = d.t === 'apply' ? 'apply' : 'noop';
  const steps = remainingSteps(p, branch, p.slots.map(() => false), values).map((s) => `${s.slot}: ${s.commands.map(str).join('; ')}`);
  return { decision: d.t, steps };
}

describe('splitAcrossSlots', () => {
  it('splits DEL, UNLINK, TOUCH and MSET per slot, keys and values kept in order', () => {
    expect(splitAcrossSlots(B('DEL', '{a}1', '{b}1', '{a}2'), [1, 2, 3])?.map((p) => [p.slot, str(p.args)])).toEqual([
      [A, 'DEL {a}1 {a}2'],
      [Bs, 'DEL {b}1'],
    ]);
    expect(splitAcrossSlots(B('MSET', '{a}1', 'x', '{b}1', 'y', '{a}1', 'z'), [1, 3, 5])?.map((p) => [p.slot, str(p.args)])).toEqual([
      [A, 'MSET {a}1 x {a}1 z'],
      [Bs, 'MSET {b}1 y'],
    ]);
    expect(splitAcrossSlots(B('UNLINK', '{a}', '{c}'), [1, 2])?.map((p) => p.slot)).toEqual([A, C]);
    expect(splitAcrossSlots(B('TOUCH', '{a}', '{c}'), [1, 2])?.length).toBe(2);
  });

  it('does not split what must be emulated', () => {
    expect(splitAcrossSlots(B('RENAME', '{a}', '{b}'), [1, 2])).toBeNull();
    expect(splitAcrossSlots(B('MSETNX', '{a}', 1, '{b}', 2), [1, 3])).toBeNull();
  });
});

describe('planCrossSlot', () => {
  it('RENAME: writes the new name (value and TTL) first, then deletes the old; a missing key is refused', () => {
    const p = emulation(planCrossSlot(B('RENAME', '{a}old', '{b}new'), [1, 2]));
    expect(p.slots).toEqual([Bs, A]);
    expect(p.reads).toEqual([{ t: 'dump', slot: A, key: Buffer.from('{a}old') }]);
    expect(fresh(p, [{ payload, pttl: 5000 }])).toEqual({ decision: 'apply', steps: [`${Bs}: RESTORE {b}new 5000 PAYLOAD REPLACE`, `${A}: DEL {a}old`] });
    expect(fresh(p, [{ payload, pttl: -1 }]).steps[0]).toBe(`${Bs}: RESTORE {b}new 0 PAYLOAD REPLACE`);
    expect(fresh(p, [{ payload, pttl: 0 }]).steps[0]).toBe(`${Bs}: RESTORE {b}new 1 PAYLOAD REPLACE`); // about to expire: not made persistent
    const missing = p.decide([{ payload: null, pttl: -2 }]);
    expect(missing.t).toBe('refuse');
  });

  it('RENAMENX: nothing when the new name exists', () => {
    const p = emulation(planCrossSlot(B('RENAMENX', '{a}old', '{b}new'), [1, 2]));
    expect(p.reads.map((r) => [r.t, r.slot])).toEqual([['dump', A], ['exists', Bs]]);
    expect(fresh(p, [{ payload, pttl: -1 }, true])).toEqual({ decision: 'noop', steps: [`${A}: `, `${Bs}: `] });
    expect(fresh(p, [{ payload, pttl: -1 }, false]).steps).toEqual([`${Bs}: RESTORE {b}new 0 PAYLOAD REPLACE`, `${A}: DEL {a}old`]);
  });

  it('COPY: one write on the destination slot, unless the copy has nothing to do', () => {
    const p = emulation(planCrossSlot(B('COPY', '{a}s', '{b}d'), [1, 2]));
    expect(p.slots).toEqual([Bs]);
    expect(fresh(p, [{ payload, pttl: 700 }, false]).steps).toEqual([`${Bs}: RESTORE {b}d 700 PAYLOAD REPLACE`]);
    expect(fresh(p, [{ payload, pttl: 700 }, true]).decision).toBe('noop'); // target exists, no REPLACE
    expect(fresh(p, [{ payload: null, pttl: -2 }, false]).decision).toBe('noop'); // source missing
    const r = emulation(planCrossSlot(B('COPY', '{a}s', '{b}d', 'REPLACE'), [1, 2]));
    expect(r.reads.map((x) => x.t)).toEqual(['dump']);
    expect(fresh(r, [{ payload, pttl: -1 }]).decision).toBe('apply');
  });

  it('SMOVE and LMOVE: push on the target, then remove from the source; nothing when there is nothing to move', () => {
    const s = emulation(planCrossSlot(B('SMOVE', '{a}s', '{b}d', 'm'), [1, 2]));
    expect(fresh(s, [true]).steps).toEqual([`${Bs}: SADD {b}d m`, `${A}: SREM {a}s m`]);
    expect(fresh(s, [false]).decision).toBe('noop');
    const l = emulation(planCrossSlot(B('LMOVE', '{a}s', '{b}d', 'LEFT', 'RIGHT'), [1, 2]));
    expect(l.reads).toEqual([{ t: 'lindex', slot: A, key: Buffer.from('{a}s'), index: 0 }]);
    expect(fresh(l, [Buffer.from('e')]).steps).toEqual([`${Bs}: RPUSH {b}d e`, `${A}: LPOP {a}s`]);
    expect(fresh(l, [null]).decision).toBe('noop');
    const r = emulation(planCrossSlot(B('RPOPLPUSH', '{a}s', '{b}d'), [1, 2]));
    expect(r.reads[0]).toMatchObject({ t: 'lindex', index: -1 });
    expect(fresh(r, [Buffer.from('e')]).steps).toEqual([`${Bs}: LPUSH {b}d e`, `${A}: RPOP {a}s`]);
    const bl = emulation(planCrossSlot(B('BLMOVE', '{a}s', '{b}d', 'RIGHT', 'LEFT', 0), [1, 2]));
    expect(fresh(bl, [Buffer.from('e')]).steps).toEqual([`${Bs}: LPUSH {b}d e`, `${A}: RPOP {a}s`]);
  });

  it('MSETNX: all or nothing, slot by slot in ascending order', () => {
    const p = emulation(planCrossSlot(B('MSETNX', '{c}1', 'x', '{a}1', 'y', '{c}2', 'z'), [1, 3, 5]));
    const order = [A, C].sort((x, y) => x - y);
    expect(p.slots).toEqual(order);
    expect(p.reads.map((r) => r.t)).toEqual(['exists', 'exists', 'exists']);
    const byslot: Record<number, string> = { [A]: 'MSET {a}1 y', [C]: 'MSET {c}1 x {c}2 z' };
    expect(fresh(p, [false, false, false]).steps).toEqual(order.map((s) => `${s}: ${byslot[s]}`));
    expect(fresh(p, [false, true, false])).toEqual({ decision: 'noop', steps: [...order].reverse().map((s) => `${s}: `) });
  });

  it('the *STORE family runs on the output node against temporary copies of the other slots inputs', () => {
    const p = emulation(planCrossSlot(B('ZUNIONSTORE', '{a}out', 3, '{b}1', '{a}2', '{b}1', 'WEIGHTS', 1, 2, 3), [1, 3, 4, 5]));
    expect(p.slots).toEqual([A]);
    expect(p.reads).toEqual([{ t: 'dump', slot: Bs, key: Buffer.from('{b}1') }]); // once, though named twice
    const t0 = tempKey(A, 0);
    expect(slot(t0)).toBe(A);
    expect(fresh(p, [{ payload, pttl: 9 }]).steps).toEqual([`${A}: RESTORE ${t0} 0 PAYLOAD REPLACE; ZUNIONSTORE {a}out 3 ${t0} {a}2 ${t0} WEIGHTS 1 2 3; DEL ${t0}`]);
    // a missing input stays missing
    expect(fresh(p, [{ payload: null, pttl: -2 }]).steps).toEqual([`${A}: ZUNIONSTORE {a}out 3 ${t0} {a}2 ${t0} WEIGHTS 1 2 3; DEL ${t0}`]);
  });

  it('finds the output of SORT … STORE, BITOP, PFMERGE, GEOSEARCHSTORE', () => {
    const sort = emulation(planCrossSlot(B('SORT', '{b}src', 'ALPHA', 'STORE', '{a}dst'), [1, 4]));
    expect(sort.slots).toEqual([A]);
    expect(str(sort.commands(0, [{ payload, pttl: -1 }]).at(1)!)).toBe(`SORT ${tempKey(A, 0)} ALPHA STORE {a}dst`);
    const bitop = emulation(planCrossSlot(B('BITOP', 'XOR', '{a}d', '{b}1', '{c}1'), [2, 3, 4]));
    expect(bitop.reads.map((r) => r.slot)).toEqual([Bs, C]);
    expect(str(bitop.commands(0, [{ payload, pttl: -1 }, { payload, pttl: -1 }]).at(-2)!)).toBe(`BITOP XOR {a}d ${tempKey(A, 0)} ${tempKey(A, 1)}`);
    expect(emulation(planCrossSlot(B('PFMERGE', '{b}d', '{a}1'), [1, 2])).slots).toEqual([Bs]);
    expect(emulation(planCrossSlot(B('GEOSEARCHSTORE', '{b}d', '{a}s', 'FROMMEMBER', 'm', 'BYRADIUS', 1, 'km'), [1, 2])).reads[0].slot).toBe(A);
  });

  it('says what it cannot emulate, naming the command', () => {
    const p = planCrossSlot(B('EVAL', 'return 1', 2, '{a}', '{b}'), [3, 4]);
    expect(p).toMatchObject({ kind: 'unsupported', name: 'EVAL' });
    expect(p.kind === 'unsupported' && p.reason).toMatch(/cannot be emulated across slots/);
  });
});

describe('resuming a command cut between two slot transactions', () => {
  const rename = emulation(planCrossSlot(B('RENAME', '{a}old', '{b}new'), [1, 2]));
  it('nothing committed: read and decide; everything committed: done', () => {
    expect(resumption(rename, [false, false])).toBe('decide');
    expect(resumption(rename, [true, true])).toBe('done');
  });

  it('the first slot committed: the command took effect; the rest completes without reading', () => {
    expect(resumption(rename, [true, false])).toBe('apply');
    expect(remainingSteps(rename, 'apply', [true, false], null).map((s) => `${s.slot}: ${s.commands.map(str).join('; ')}`)).toEqual([`${A}: DEL {a}old`]);
  });

  it('only later slots committed: it was a no-op (written in reverse), and stays one', () => {
    const m = emulation(planCrossSlot(B('MSETNX', '{a}1', 'x', '{b}1', 'y', '{c}1', 'z'), [1, 3, 5]));
    const committed = m.slots.map((_, i) => i === m.slots.length - 1);
    expect(resumption(m, committed)).toBe('noop');
    expect(remainingSteps(m, 'noop', committed, null).every((s) => s.commands.length === 0)).toBe(true);
    // an apply cut after its first slot is told apart
    const applied = m.slots.map((_, i) => i === 0);
    expect(resumption(m, applied)).toBe('apply');
    expect(remainingSteps(m, 'apply', applied, null).map((s) => s.slot)).toEqual(m.slots.slice(1));
  });
});
