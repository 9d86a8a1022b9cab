/**
 * Command names, each built once and then shared.
 *
 * Every event names a command, and three hot paths read that name for every event: capture's
 * routing (lower case, to look the command up), the applier's translation (upper case, for its
 * rules and error messages) and the RESP read path (the name's bytes, shared by the events of a
 * record). Building a new string (decode, then change case) or a new Buffer each time showed in
 * their profiles; there are only a few dozen distinct names in practice.
 *
 * A name is found by a hash of its (case-folded) bytes and confirmed byte by byte, so a collision
 * only costs a miss. Only short printable-ASCII names are kept, at most `MAX_NAMES` of each kind:
 * arbitrary input (a client sending random command names) cannot make the tables grow.
 */

/** Longest name kept (the longest Redis command name is under 32 bytes). */
const MAX_NAME_BYTES = 32;
/** Names kept per table; past that, names are built every time. */
const MAX_NAMES = 1024;

const KEEP = 0;
const LOWER = 1;
const UPPER = 2;
type Fold = typeof KEEP | typeof LOWER | typeof UPPER;

function fold(c: number, f: Fold): number {
  if (f === LOWER) return c >= 65 && c <= 90 ? c + 32 : c;
  if (f === UPPER) return c >= 97 && c <= 122 ? c - 32 : c;
  return c;
}

function hashOf(b: Uint8Array, start: number, end: number, f: Fold): number {
  let h = end - start;
  for (let i = start; i < end; i++) h = (Math.imul(h, 31) + fold(b[i], f)) | 0;
  return h;
}

const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

/** Case-folded names as strings, by the hash of their folded bytes. */
class StringNames {
  private readonly byHash = new Map<number, string>();

  constructor(private readonly f: typeof LOWER | typeof UPPER) {}

  get(a: Buffer): string {
    const n = a.length;
    if (n > MAX_NAME_BYTES) return this.build(a);
    const f = this.f;
    const h = hashOf(a, 0, n, f);
    const known = this.byHash.get(h);
    if (known !== undefined && known.length === n) {
      let same = true;
      for (let i = 0; i < n && same; i++) same = fold(a[i], f) === known.charCodeAt(i);
      if (same) return known;
    }
    const name = this.build(a);
    // only ASCII: changing the case of a latin1 character may give one outside latin1
    if (this.byHash.size < MAX_NAMES && name.length === n && PRINTABLE_ASCII.test(name)) this.byHash.set(h, name);
    return name;
  }

  private build(a: Buffer): string {
    const s = a.toString('latin1');
    return this.f === LOWER ? s.toLowerCase() : s.toUpperCase();
  }
}

const lowerNames = new StringNames(LOWER);
const upperNames = new StringNames(UPPER);
const sharedBytes = new Map<number, Buffer>();

/** The lower-case name of a command whose name argument is `a` (capture's command table is lower case). */
export function lowerCommandName(a: Buffer): string {
  return lowerNames.get(a);
}

/** The upper-case name of a command whose name argument is `a`. */
export function upperCommandName(a: Buffer): string {
  return upperNames.get(a);
}

/**
 * The bytes `b[start, end)` of a command name as a Buffer shared by every event naming the same
 * command, case kept; a name too long or past the table's size is a view of `b`.
 */
export function sharedCommandName(b: Buffer, start: number, end: number): Buffer {
  const len = end - start;
  if (len > MAX_NAME_BYTES) return b.subarray(start, end);
  const h = hashOf(b, start, end, KEEP);
  const known = sharedBytes.get(h);
  if (known !== undefined && known.length === len) {
    let same = true;
    for (let i = 0; i < len && same; i++) same = known[i] === b[start + i];
    if (same) return known;
  }
  if (sharedBytes.size >= MAX_NAMES) return b.subarray(start, end);
  const copy = Buffer.from(b.subarray(start, end)); // not a view: it must not keep the record alive
  sharedBytes.set(h, copy);
  return copy;
}
