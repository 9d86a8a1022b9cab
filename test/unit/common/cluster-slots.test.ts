import { describe, expect, it } from 'vitest';
import { parseClusterSlots } from '../../../services/common/cluster-slots.js';

describe('parseClusterSlots', () => {
  it('reads each range with its master, replicas left out', () => {
    const reply = [
      [0, 5460, ['127.0.0.1', 7001, 'a'.repeat(40), []], ['127.0.0.1', 7004, 'd'.repeat(40), []]],
      [5461, 10922, ['', 7002, 'b'.repeat(40)]],
      [10923, 16383, ['10.0.0.3', '7003']],
    ];
    expect(parseClusterSlots(reply)).toEqual([
      { start: 0, end: 5460, host: '127.0.0.1', port: 7001, id: 'a'.repeat(40) },
      { start: 5461, end: 10922, host: '', port: 7002, id: 'b'.repeat(40) },
      { start: 10923, end: 16383, host: '10.0.0.3', port: 7003, id: null },
    ]);
  });
});
