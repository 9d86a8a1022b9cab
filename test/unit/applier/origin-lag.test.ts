import { describe, expect, it } from 'vitest';
import { OriginTracker } from '../../../services/applier/origin-lag.js';
import type { ChangeEvent } from '../../../services/events/model.js';
import { decodeBatch, encodeBatch } from '../../../services/events/codec.js';
import { EncodedCommandEvent } from '../../../services/events/encoded-command.js';

const pos = { epoch: 1, replid: 'r', offset: 0, seq: 0 } as never;
const hb = (timeMs: number, db = 0): ChangeEvent => ({ kind: 'heartbeat', pos, db, timeMs });
const set = (...a: string[]): ChangeEvent => ({ kind: 'command', pos, db: 0, commands: [a.map((x) => Buffer.from(x))], participants: [], piece: null });

describe('origin lag (cascade)', () => {
  it('reports the lag from the origin key going by, naming its source', () => {
    const t = new OriginTracker();
    expect(t.report()).toBeNull();
    t.observe([set('SET', 'replistream:origin:a', '1000'), set('set', 'replistream:origin:a', '2000', 'PXAT', '99')]);
    expect(t.report(2500)).toEqual({ sourceId: 'a', timeMs: 2000, ms: 500 });
    t.observe([set('SET', 'replistream:origin:a', '1500')]); // an older time never moves it back
    expect(t.report(2500)?.timeMs).toBe(2000);
  });

  it('ignores other keys and values that are not times', () => {
    const t = new OriginTracker();
    t.observe([set('SET', 'replistream:pos:g', '1000'), set('SET', 'replistream:origin:a', 'x'), set('GET', 'replistream:origin:a', '5'), set('SET', 'user', '1')]);
    expect(t.report()).toBeNull();
  });

  it('events read in RESP (a standalone destination) are looked at in their bytes, with the same outcome', () => {
    const events = [set('SET', 'user', '1'), set('SET', 'replistream:origin:a', '1000'), set('GET', 'replistream:origin:b', '5'), set('SET', 'replistream:origin:b', 'x'), set('DEL', 'k')];
    const inResp = decodeBatch(encodeBatch(events.map((e) => ({ ...e, pos: { epoch: 1, replid: 'r', offset: 0, seq: 0 } }))), undefined, { encodeCommands: true });
    expect(inResp.every((e) => e instanceof EncodedCommandEvent)).toBe(true);
    const t = new OriginTracker();
    t.observe(inResp);
    expect(t.report(2500)).toEqual({ sourceId: 'a', timeMs: 1000, ms: 1500 });
  });

  it('the farthest origin wins (the oldest time)', () => {
    const t = new OriginTracker();
    t.observe([set('SET', 'replistream:origin:b', '3000'), set('SET', 'replistream:origin:a', '2000')]);
    expect(t.report(4000)).toEqual({ sourceId: 'a', timeMs: 2000, ms: 2000 });
  });

  it('counts its source as an origin after three heartbeat ticks without an origin key (one tick per time, whatever the dbs)', () => {
    const t = new OriginTracker();
    t.observe([hb(1000, 0), hb(1000, 1), hb(1000, 2), hb(2000, 0)]);
    expect(t.sourceIsOrigin()).toBe(false);
    t.observe([hb(3000)]);
    expect(t.sourceIsOrigin()).toBe(true);
    t.observe([set('SET', 'replistream:origin:a', '2500')]);
    expect(t.sourceIsOrigin()).toBe(false);
  });
});
