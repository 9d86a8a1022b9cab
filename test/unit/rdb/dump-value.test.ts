import { describe, expect, it } from 'vitest';
import { dumpPayloadValue } from '../../../services/replication/dump-value.js';
import { canon, entries, fixtureNames, loadFixture, parseWhole } from './util.js';

// The applier reads a value out of a RESTORE payload when it must write typed commands (a payload
// too new for the destination, or write-mode commands with payload-only snapshot keys): the value
// read must be the value the RDB holds, for every type and encoding, whatever its size.
describe('dumpPayloadValue', () => {
  for (const name of fixtureNames()) {
    it(`${name}: the value read from each key's payload equals the key's value in the RDB`, () => {
      const got = entries(parseWhole(loadFixture(name).rdb, { maxEntryBytes: 1 << 30 }).items);
      let checked = 0;
      for (const e of got) {
        if (!e.payload || e.value.type === 'module') continue;
        expect(canon(dumpPayloadValue(e.payload)), `${name} ${e.key.toString()}`).toBe(canon(e.value));
        checked++;
      }
      if (got.some((e) => e.payload)) expect(checked).toBeGreaterThan(0);
    });
  }
});
