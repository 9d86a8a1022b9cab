import { describe, expect, it } from 'vitest';
import { assignWholeTopics } from '../../../services/transport/assignment.js';

const topics = (names: string[], n = 4) => names.map((topic) => ({ topic, partitions: [...Array(n).keys()].reverse() }));

describe('assignWholeTopics (the db strategy)', () => {
  it('gives every partition of a topic to one member, topics dealt over the members', () => {
    const plan = assignWholeTopics(['m-b', 'm-a', 'm-c'], topics(['t.s1.db7', 't.s1.db0', 't.s1.db1']));
    expect(Object.fromEntries(plan)).toEqual({
      'm-a': { 't.s1.db0': [0, 1, 2, 3] },
      'm-b': { 't.s1.db1': [0, 1, 2, 3] },
      'm-c': { 't.s1.db7': [0, 1, 2, 3] },
    });
  });

  it('members beyond the number of topics get nothing (standbys); fewer members take several topics', () => {
    expect(Object.fromEntries(assignWholeTopics(['a', 'b', 'c'], topics(['x'])))).toEqual({ a: { x: [0, 1, 2, 3] }, b: {}, c: {} });
    expect(Object.fromEntries(assignWholeTopics(['a', 'b'], topics(['x', 'y', 'z'], 2)))).toEqual({ a: { x: [0, 1], z: [0, 1] }, b: { y: [0, 1] } });
  });

  it('deals a topic only to members that read it (two hops of a cascade in one group name)', () => {
    const subs = new Map([
      ['hop1-a', ['a.db0', 'a.db1']],
      ['hop1-b', ['a.db0', 'a.db1']],
      ['hop2-a', ['b.db0', 'b.db1', 'b.db2']],
    ]);
    const plan = Object.fromEntries(assignWholeTopics([...subs.keys()], topics(['a.db0', 'a.db1', 'b.db0', 'b.db1', 'b.db2'], 1), subs));
    expect(plan).toEqual({
      'hop1-a': { 'a.db0': [0] },
      'hop1-b': { 'a.db1': [0] },
      'hop2-a': { 'b.db0': [0], 'b.db1': [0], 'b.db2': [0] },
    });
    // a topic nobody reads is left out; a member without known subscriptions takes any topic
    expect(Object.fromEntries(assignWholeTopics(['x'], topics(['t', 'u'], 1), new Map([['x', ['t']]])))).toEqual({ x: { t: [0] } });
    expect(Object.fromEntries(assignWholeTopics(['x', 'y'], topics(['t', 'u'], 1), new Map([['x', ['t']]])))).toEqual({ x: { t: [0] }, y: { u: [0] } });
  });

  it('is the same whatever order the broker lists members and topics in ', () => {
    const a = assignWholeTopics(['1', '2', '3'], topics(['p', 'q', 'r', 's']));
    const b = assignWholeTopics(['3', '1', '2'], topics(['s', 'r', 'q', 'p']));
    expect(Object.fromEntries(a)).toEqual(Object.fromEntries(b));
  });
});
