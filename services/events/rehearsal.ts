/**
 * A made-up command stream for the services' warm-up rehearsals (capture/warm-up.ts,
 * applier/warm-up.ts): what they run through their command path once at start, so that V8 has
 * compiled it before the first real command arrives.
 *
 * Why the mix matters: V8 compiles a function for the shapes of values it has seen. A rehearsal of
 * SETs alone leaves the code for hashes, expirations, multi-key commands and transactions to be
 * compiled (and the SET-only code thrown away) under real traffic. So the stream holds the
 * commands applications send most, in the proportions of a write-heavy cache: mostly SET, some
 * counters, hashes, lists, sets, sorted sets, expirations, a few multi-key commands and MULTI/EXEC
 * units. Pure data: nothing here is ever sent anywhere.
 */

/**
 * The replication id the rehearsals' positions carry: one of the real length (40 hex digits), so
 * that positions are encoded and read as real ones are.
 */
export const REHEARSAL_REPLID = 'feedfacefeedfacefeedfacefeedfacefeedface';

/** One unit of the stream: a lone command, or the commands of a MULTI/EXEC (without MULTI and EXEC). */
export type RehearsalUnit = Buffer[][];

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

/**
 * Keys under a prefix no user key is expected to use (they are never written anywhere anyway). Not
 * under `replistream:`: capture drops its own keys from the stream (capture/own-keys.ts), and the
 * rehearsal must take the path user keys take.
 */
export const REHEARSAL_KEY_PREFIX = 'rehearsal.replistream:';

/** The units of one round, for key number `n` (keys vary so that routing spreads over partitions). */
function round(n: number): RehearsalUnit[] {
  const k = (kind: string, i = 0): Buffer => b(`${REHEARSAL_KEY_PREFIX}${kind}:${(n + i) % 1000}`);
  const v = b(`v${n}`);
  return [
    [[b('SET'), k('s'), v]],
    [[b('SET'), k('s', 1), v]],
    [[b('SET'), k('s', 2), v, b('PX'), b('60000')]],
    [[b('SET'), k('s', 3), v]],
    [[b('INCR'), k('c')]],
    [[b('HSET'), k('h'), b('f'), v]],
    [[b('SET'), k('s', 4), v]],
    [[b('LPUSH'), k('l'), v]],
    [[b('SADD'), k('t'), v]],
    [[b('SET'), k('s', 5), v]],
    [[b('ZADD'), k('z'), b(String(n % 97)), v]],
    [[b('PEXPIREAT'), k('s', 1), b('4102444800000')]],
    [[b('SET'), k('s', 6), v]],
    [[b('HINCRBY'), k('h'), b('n'), b('1')]],
    [[b('DEL'), k('s', 7)]],
    [[b('MSET'), k('s', 8), v, k('s', 9), v]],
    [[b('SET'), k('s', 10), v]],
    [[b('RPOP'), k('l')]],
    [[b('INCR'), k('c', 1)], [b('SET'), k('s', 11), v]],
    [[b('DEL'), k('s', 12), k('s', 13)]],
  ];
}

/** Units of the rehearsal stream, about `count` of them, in the same order every time. */
export function* rehearsalUnits(count: number): Generator<RehearsalUnit> {
  let made = 0;
  for (let n = 0; made < count; n++) {
    for (const unit of round(n)) {
      yield unit;
      if (++made >= count) return;
    }
  }
}

/** The rehearsal stream's units as replication-stream bytes (a transaction wrapped in MULTI/EXEC). */
export function rehearsalStreamBytes(units: readonly RehearsalUnit[]): Buffer {
  const parts: Buffer[] = [];
  const command = (args: readonly Buffer[]): void => {
    parts.push(b(`*${args.length}\r\n`));
    for (const a of args) parts.push(b(`$${a.length}\r\n`), a, b('\r\n'));
  };
  for (const unit of units) {
    if (unit.length > 1) command([b('MULTI')]);
    for (const args of unit) command(args);
    if (unit.length > 1) command([b('EXEC')]);
  }
  return Buffer.concat(parts);
}
