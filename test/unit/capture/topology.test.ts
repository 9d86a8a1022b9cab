import { describe, expect, it } from 'vitest';
import calculateSlot from 'cluster-key-slot';
import { initialLayout, movedSlots, observe, parseClusterNodes, ShardKeyFilter } from '../../../services/capture/topology.js';

const A = 'a'.repeat(40);
const B = 'b'.repeat(40);
const C = 'c'.repeat(40);
const RA = '1'.repeat(40); // replica of A
const RB = '2'.repeat(40); // replica of B

const masters = [
  { index: 0, host: '127.0.0.1', port: 7001, id: A },
  { index: 1, host: '127.0.0.1', port: 7002, id: B },
  { index: 2, host: '127.0.0.1', port: 7003, id: C },
];

function nodes(lines: string[]): string {
  return lines.join('\n') + '\n';
}

const steady = nodes([
  `${A} 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460`,
  `${B} 127.0.0.1:7002@17002 master - 0 0 2 connected 5461-10922`,
  `${C} 127.0.0.1:7003@17003 master - 0 0 3 connected 10923-16383`,
  `${RA} 127.0.0.1:7004@17004 slave ${A} 0 0 1 connected`,
  `${RB} 127.0.0.1:7005@17005 slave ${B} 0 0 2 connected`,
]);

describe('CLUSTER NODES parsing', () => {
  it('reads addresses, roles, slots and migrations', () => {
    const parsed = parseClusterNodes(
      nodes([
        `${A} 127.0.0.1:7001@17001,host-a myself,master - 0 0 1 connected 0-100 200 [201->-${B}]`,
        `${RA} [::1]:7004@17004 slave,fail ${A} 0 0 1 disconnected`,
      ]),
    );
    expect(parsed[0]).toEqual({ id: A, host: '127.0.0.1', port: 7001, master: true, unusable: false, masterId: null, slots: [[0, 100], [200, 200]], migrating: true });
    expect(parsed[1]).toMatchObject({ host: '[::1]', port: 7004, master: false, unusable: true, masterId: A, migrating: false });
  });
});

describe('topology changes', () => {
  it('a promoted replica stays in its shard, slots do not count as moved', () => {
    const first = initialLayout(masters, parseClusterNodes(steady));
    const after = parseClusterNodes(
      nodes([
        `${A} 127.0.0.1:7001@17001 master,fail - 0 0 1 disconnected`,
        `${B} 127.0.0.1:7002@17002 master - 0 0 2 connected 5461-10922`,
        `${C} 127.0.0.1:7003@17003 master - 0 0 3 connected 10923-16383`,
        `${RA} 127.0.0.1:7004@17004 myself,master - 0 0 4 connected 0-5460`,
        `${RB} 127.0.0.1:7005@17005 slave ${B} 0 0 2 connected`,
      ]),
    );
    const { layout, changes } = observe(first, after);
    expect(changes).toEqual([{ kind: 'master-moved', shard: 0, from: { host: '127.0.0.1', port: 7001, id: A }, to: { host: '127.0.0.1', port: 7004, id: RA } }]);
    expect(layout.shards[0]).toMatchObject({ masterId: RA, port: 7004 });
    expect(movedSlots(first.owners, layout.owners)).toBe(0);
    // read again: nothing new
    expect(observe(layout, after).changes).toEqual([]);
  });

  it('a failed master keeps its slots until a replica is elected', () => {
    const first = initialLayout(masters, parseClusterNodes(steady));
    const failing = steady.replace('myself,master - 0 0 1 connected', 'master,fail - 0 0 1 disconnected');
    const { layout, changes } = observe(first, parseClusterNodes(failing));
    expect(changes).toEqual([]);
    expect(movedSlots(first.owners, layout.owners)).toBe(0);
  });

  it('slots resharded between masters are counted; a migration under way is seen', () => {
    const first = initialLayout(masters, parseClusterNodes(steady));
    const migrating = steady.replace('connected 0-5460', `connected 0-5460 [5460->-${B}]`);
    expect(observe(first, parseClusterNodes(migrating)).migrating).toBe(true);
    const moved = steady.replace('connected 0-5460', 'connected 0-5000').replace('connected 5461-10922', 'connected 5001-10922');
    const { layout, changes, migrating: still } = observe(first, parseClusterNodes(moved));
    expect(changes).toEqual([]);
    expect(still).toBe(false);
    expect(movedSlots(first.owners, layout.owners)).toBe(460);
  });

  it('a master of no known shard without slots (just added) is reported as slotless', () => {
    const first = initialLayout(masters, parseClusterNodes(steady));
    const D = 'd'.repeat(40);
    const added = steady + `${D} 127.0.0.1:7006@17006 master - 0 0 5 connected\n`;
    const seen = observe(first, parseClusterNodes(added));
    expect(seen.changes).toEqual([{ kind: 'new-master', node: { host: '127.0.0.1', port: 7006, id: D }, slotless: true }]);
    expect(seen.layout.owners).toEqual(first.owners);
  });

  it('a master of no known shard serving slots is a new master', () => {
    const first = initialLayout(masters, parseClusterNodes(steady));
    const D = 'd'.repeat(40);
    const added = steady.replace('connected 10923-16383', 'connected 10923-15000') + `${D} 127.0.0.1:7006@17006 master - 0 0 5 connected 15001-16383\n`;
    expect(observe(first, parseClusterNodes(added)).changes).toEqual([{ kind: 'new-master', node: { host: '127.0.0.1', port: 7006, id: D } }]);
  });
});

describe('a shard\'s key filter', () => {
  it('leaves out snapshot keys of slots the shard does not own, and keeps the task\'s globs', () => {
    const f = new ShardKeyFilter({ exclude: ['skip:*'] });
    const a = Buffer.from('{a}x');
    const b = Buffer.from('{b}x');
    f.ownSlots((slot) => slot === calculateSlot(a));
    expect(f.filtersKeys).toBe(true);
    expect(f.keySelected(a)).toBe(true);
    expect(f.keySelected(b)).toBe(false);
    expect(f.keySelected(Buffer.from('skip:{a}'))).toBe(false);
    f.ownSlots(() => true);
    expect(f.keySelected(b)).toBe(true);
  });

  it('notes the units that write slots the shard does not own, and those slots, until its slots are assigned again', () => {
    const f = new ShardKeyFilter({});
    const a = Buffer.from('{a}x');
    const b = Buffer.from('{b}x');
    const cmd = (...args: string[]) => args.map((x) => Buffer.from(x));
    f.ownSlots((slot) => slot === calculateSlot(a));
    expect(f.touchesForeign([cmd('SET', '{a}x', '1')])).toBe(false);
    expect(f.touchesForeign([cmd('PING')])).toBe(false);
    expect(f.touchesForeign([cmd('MULTI'), cmd('SET', '{a}y', '1'), cmd('RESTORE', '{b}x', '0', 'payload'), cmd('EXEC')])).toBe(true);
    expect(f.foreignWrites).toBe(1);
    expect([...f.foreignSlots]).toEqual([calculateSlot(b)]);
    f.ownSlots(() => true); // a hand-off or a new epoch starts again
    expect(f.foreignWrites).toBe(0);
    expect(f.foreignSlots.size).toBe(0);
    expect(f.touchesForeign([cmd('DEL', '{b}x')])).toBe(false);
  });
});
