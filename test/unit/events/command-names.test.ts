import { describe, expect, it } from 'vitest';
import { lowerCommandName, sharedCommandName, upperCommandName } from '../../../services/events/command-names.js';

const b = (s: string) => Buffer.from(s, 'latin1');

describe('command names', () => {
  it('changes the case of a name however it was written, and hands out the same string again', () => {
    for (const n of ['set', 'SET', 'Set', 'sEt']) {
      expect(lowerCommandName(b(n))).toBe('set');
      expect(upperCommandName(b(n))).toBe('SET');
    }
    expect(lowerCommandName(b('XADD'))).toBe('xadd');
    expect(upperCommandName(b('client|kill'))).toBe('CLIENT|KILL');
  });

  it('does not confuse names of the same length or the same hash bucket', () => {
    // every two-letter name: plenty of same-length neighbours, and any hash collision must miss
    const letters = 'abcdefghijklmnopqrstuvwxyz';
    for (const x of letters) {
      for (const y of letters) {
        expect(lowerCommandName(b(`${x}${y}`.toUpperCase()))).toBe(`${x}${y}`);
        expect(upperCommandName(b(`${x}${y}`))).toBe(`${x}${y}`.toUpperCase());
      }
    }
  });

  it('keeps non-ASCII and long names correct without keeping them', () => {
    expect(lowerCommandName(b('\xc9TAT'))).toBe('\xe9tat');
    expect(upperCommandName(b('\xe9tat'))).toBe('\xc9TAT');
    const long = 'x'.repeat(40);
    expect(lowerCommandName(b(long.toUpperCase()))).toBe(long);
    expect(upperCommandName(b(long))).toBe(long.toUpperCase());
  });

  it('shares one Buffer per name, a copy that does not keep the record alive, case kept', () => {
    const record = b('..SET..set..SET');
    const first = sharedCommandName(record, 2, 5);
    const again = sharedCommandName(record, 12, 15);
    expect(first.toString()).toBe('SET');
    expect(again).toBe(first);
    const lower = sharedCommandName(record, 7, 10);
    expect(lower.toString()).toBe('set');
    expect(lower).not.toBe(first);
    record.fill(0);
    expect(first.toString()).toBe('SET');
  });

  it('hands a long name out as a view of its record', () => {
    const record = b(`#${'y'.repeat(40)}#`);
    const name = sharedCommandName(record, 1, 41);
    expect(name.toString()).toBe('y'.repeat(40));
    record[1] = 0x7a;
    expect(name[0]).toBe(0x7a);
  });
});
