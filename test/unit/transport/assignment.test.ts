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

  it('is the same whatever order the broker lists members and topics in ', () => {
    const a = assignWholeTopics(['1', '2', '3'], topics(['p', 'q', 'r', 's']));
    const b = assignWholeTopics(['3', '1', '2'], topics(['s', 'r', 'q', 'p']));
    expect(Object.fromEntries(a)).toEqual(Object.fromEntries(b));
  });
});
