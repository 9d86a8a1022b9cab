/**
 * A workload made of commands whose keys fall in different slots of a cluster (every kind a
 * source propagates: split per slot or emulated by the writer), with TTLs, missing inputs, RENAME
 * onto an existing key, MSETNX refused as a whole, and a unit spanning slots. Keys are `prefix` +
 * a short name, without hash tags, so they spread over the slots.
 */
export type A = string | number;

/** The units, in order; `at` (ms since the epoch) anchors the absolute TTLs. */
export function crossSlotUnits(p: string, at: number): A[][][] {
  const k = (n: string) => `${p}${n}`;
  const ttl = at + 600_000;
  return [
    // RENAME with a TTL, onto an existing key, of a key of every type
    [['SET', k('r1'), 'v1']], [['PEXPIREAT', k('r1'), ttl]], [['RENAME', k('r1'), k('r2')]],
    [['SET', k('r3'), 'old']], [['SET', k('r4'), 'new']], [['RENAME', k('r4'), k('r3')]],
    [['HSET', k('rh'), 'f', 'v', 'g', 'w']], [['RENAME', k('rh'), k('rh2')]],
    [['ZADD', k('rz'), 1, 'a', 2, 'b']], [['RENAME', k('rz'), k('rz2')]],
    [['XADD', k('rx'), '1-1', 'f', 'v']], [['XGROUP', 'CREATE', k('rx'), 'g', '0']], [['RENAME', k('rx'), k('rx2')]],
    [['SET', k('n1'), 'a']], [['SET', k('n2'), 'b']], [['RENAMENX', k('n1'), k('n3')]],
    // COPY: plain, onto an existing key with REPLACE, from a missing key, with a TTL
    [['SET', k('c1'), 'copy']], [['PEXPIREAT', k('c1'), ttl + 1000]], [['COPY', k('c1'), k('c2')]], [['SET', k('c3'), 'x']], [['COPY', k('c1'), k('c3'), 'REPLACE']],
    [['COPY', k('nothing'), k('c4')]],
    // SMOVE, LMOVE, RPOPLPUSH, also from missing keys
    [['SADD', k('s1'), 'a', 'b', 'c']], [['SMOVE', k('s1'), k('s2'), 'a']], [['SMOVE', k('s1'), k('s2'), 'zz']], [['SMOVE', k('s1'), k('s3'), 'b']],
    [['RPUSH', k('l1'), 'a', 'b', 'c', 'd']], [['LMOVE', k('l1'), k('l2'), 'LEFT', 'RIGHT']], [['LMOVE', k('l1'), k('l2'), 'RIGHT', 'LEFT']], [['RPOPLPUSH', k('l1'), k('l3')]],
    [['RPOPLPUSH', k('nolist'), k('l3')]],
    // MSET, MSETNX (applied, then refused as a whole because one key exists), DEL, UNLINK, TOUCH
    [['MSET', k('m1'), 1, k('m2'), 2, k('m3'), 3, k('m4'), 4]], [['MSETNX', k('x1'), 1, k('x2'), 2, k('x3'), 3]], [['MSETNX', k('x4'), 9, k('x1'), 9]],
    [['DEL', k('m1'), k('m2'), k('nothing')]], [['UNLINK', k('m3'), k('x3')]], [['TOUCH', k('m4'), k('x1')]],
    // the *STORE family against inputs on other slots, one input missing
    [['SADD', k('sa'), 'a', 'b', 'c']], [['SADD', k('sb'), 'b', 'c', 'd']],
    [['SINTERSTORE', k('si'), k('sa'), k('sb')]], [['SUNIONSTORE', k('su'), k('sa'), k('sb'), k('nothing')]], [['SDIFFSTORE', k('sd'), k('sa'), k('sb')]],
    [['ZADD', k('za'), 1, 'a', 2, 'b']], [['ZADD', k('zb'), 3, 'b', 4, 'c']],
    [['ZUNIONSTORE', k('zu'), 2, k('za'), k('zb'), 'WEIGHTS', 2, 3, 'AGGREGATE', 'MAX']], [['ZINTERSTORE', k('zi'), 2, k('za'), k('zb')]], [['ZDIFFSTORE', k('zd'), 2, k('za'), k('zb')]],
    [['ZRANGESTORE', k('zr'), k('zb'), 0, -1]],
    [['SETBIT', k('b1'), 5, 1]], [['SETBIT', k('b2'), 9, 1]], [['BITOP', 'OR', k('bo'), k('b1'), k('b2')]],
    [['PFADD', k('h1'), 'a', 'b']], [['PFADD', k('h2'), 'c']], [['PFMERGE', k('hm'), k('h1'), k('h2')]],
    [['GEOADD', k('g1'), 13.361389, 38.115556, 'Palermo', 15.087269, 37.502669, 'Catania']],
    [['GEOSEARCHSTORE', k('gs'), k('g1'), 'FROMLONLAT', 15, 37, 'BYRADIUS', 200, 'km', 'ASC']],
    [['SORT', k('l2'), 'ALPHA', 'STORE', k('sorted')]],
    // a unit spanning slots, with an emulated command in its middle
    [['SET', k('t1'), 'a'], ['INCR', k('tc')], ['RENAME', k('t1'), k('t2')], ['APPEND', k('t2'), 'b'], ['MSET', k('t3'), 'x', k('t4'), 'y'], ['SMOVE', k('sa'), k('t5'), 'c'], ['INCR', k('tc')]],
  ];
}

