/**
 * A split command rebuilt from its pieces as they come (`CommandSeries`), for reassembly
 * (piece-assembler.ts): a big argument grows in place, a command of many arguments is packed.
 */
import { constants as bufferConstants } from 'node:buffer';
import { ReplistreamError } from '../common/errors.js';
import type { CommandEvent } from './model.js';
import { growTo, newResizable, PACK_ARGS_FROM, PackedArgs, packedArgsOf, packedEnd, packedStart, resizableArrayBuffers, type PackedStorage } from './packed-args.js';

const EMPTY = Buffer.alloc(0);
/** The largest Buffer node makes. */
const MAX_LENGTH = bufferConstants.MAX_LENGTH;

/**
 * Above this size, an argument continued over several pieces grows in place (`GrowingBytes`)
 * instead of by `Buffer.concat`. An argument is only continued when it fills a record, so one that
 * grows past a record's worth is a big one; small continued ones (a piece boundary falling inside
 * a short HSET field) keep the cheap concat.
 */
const GROW_IN_PLACE_BYTES = 256 * 1024;

/**
 * The bytes of one argument rebuilt from its slices, in one resizable ArrayBuffer: it reserves
 * address space for the largest Buffer and commits memory as it grows, so each slice is copied
 * once, in place, and the record it came from can be let go at once.
 *
 * Why: a 100 MB SET travels in ~115 pieces. Joined by `Buffer.concat` at every piece, the applier
 * copied 6 GB and held the old and the new copy at each step; joined once at the end, it held every
 * piece's record (views of them) and the joined copy together, twice the argument. Growing in
 * place holds the argument once, plus the records not yet collected.
 */
class GrowingBytes {
  private readonly ab = newResizable();
  /** A length-tracking view of `ab`. */
  private readonly all = new Uint8Array(this.ab);
  private length = 0;

  constructor(first: Buffer) {
    this.append(first);
  }

  get bytes(): number {
    return this.length;
  }

  append(b: Buffer): void {
    if (b.length === 0) return;
    const end = this.length + b.length;
    if (end > MAX_LENGTH) throw new ReplistreamError('PROTOCOL', `pieces rebuild an argument longer than ${MAX_LENGTH} bytes`);
    if (end > this.ab.byteLength) growTo(this.ab, end);
    this.all.set(b, this.length);
    this.length = end;
  }

  /** The bytes so far, as a Buffer (not length-tracking: later appends do not change it). */
  done(): Buffer {
    this.ab.resize(this.length);
    return Buffer.from(this.ab, 0, this.length);
  }
}

/**
 * A split command rebuilt piece by piece, as they come (see `sliceBufferList` for the rule): each
 * piece is taken in and can be dropped at once, so what a series costs while it is read is the
 * command being rebuilt, not its pieces too. The argument arrays of the pieces are copied before
 * they are appended to (a piece may share them with the event it was split from).
 */
export class CommandSeries {
  private readonly commands: Buffer[][];
  /** commands[last] is an array of our own (appended to in place). */
  private lastOwned = false;
  /** The last argument of commands[last], growing while pieces continue it. */
  private growing: GrowingBytes | null = null;
  /**
   * commands[last]'s arguments once they are `PACK_ARGS_FROM` or more (an HSET of a million
   * fields): packed, not one Buffer each (packed-args.ts).
   */
  private packed: PackedArgs | null = null;
  /** Pieces taken in. */
  count = 1;

  constructor(readonly first: CommandEvent) {
    this.commands = [...first.commands];
  }

  add(p: CommandEvent): void {
    this.count++;
    const cmds = p.commands;
    let i = 0;
    if (p.piece!.continued && cmds.length && this.commands.length) {
      const frag = cmds[0];
      i = 1;
      if (frag.length > 0 && !this.packed) {
        // a packed command (or fragment of one) stays packed: its arguments are copied from storage
        const lastPacked = packedArgsOf(this.commands[this.commands.length - 1]);
        if (lastPacked) this.packFrom(lastPacked);
        else if (packedArgsOf(frag)) this.pack(this.ownLast());
      }
      if (frag.length > 0 && this.packed) {
        const fp = packedArgsOf(frag);
        if (fp) {
          this.packed.extendLastFrom(fp.data, packedStart(fp, 0), packedEnd(fp, 0));
          this.packed.appendRange(fp, 1);
        } else {
          this.packed.extendLast(frag[0]);
          for (let k = 1; k < frag.length; k++) this.packed.push(frag[k]);
        }
      } else if (frag.length > 0) {
        const last = this.ownLast();
        // the fragment's first buffer extends the last argument; its other buffers follow it
        if (last.length === 0) last.push(frag[0]);
        else this.extend(last, frag[0]);
        if (frag.length > 1) {
          this.settle();
          for (let k = 1; k < frag.length; k++) last.push(frag[k]);
        }
        if (last.length >= PACK_ARGS_FROM && resizableArrayBuffers()) this.pack(last);
      }
    }
    if (i < cmds.length) {
      this.settle();
      for (; i < cmds.length; i++) this.commands.push(cmds[i]);
      this.lastOwned = false;
    }
  }

  whole(): CommandEvent {
    this.settle();
    return { ...this.first, commands: this.commands, piece: null };
  }

  /** From now on the last command's arguments are packed: a copy of packed `s`. */
  private packFrom(s: PackedStorage): void {
    this.settle();
    const packed = new PackedArgs();
    packed.appendRange(s, 0);
    this.packed = packed;
    this.commands[this.commands.length - 1] = [];
  }

  /** From now on the last command's arguments are packed (its Buffers are let go). */
  private pack(last: Buffer[]): void {
    this.settle();
    const packed = new PackedArgs();
    for (const a of last) packed.push(a);
    this.packed = packed;
    this.commands[this.commands.length - 1] = [];
  }

  private ownLast(): Buffer[] {
    const at = this.commands.length - 1;
    if (!this.lastOwned) {
      this.commands[at] = [...this.commands[at]];
      this.lastOwned = true;
    }
    return this.commands[at];
  }

  /** Appends `more` to the last argument of `last` (our own array). */
  private extend(last: Buffer[], more: Buffer): void {
    if (this.growing) {
      this.growing.append(more);
      return;
    }
    const prev = last[last.length - 1];
    if (prev.length + more.length >= GROW_IN_PLACE_BYTES && resizableArrayBuffers()) {
      this.growing = new GrowingBytes(prev);
      this.growing.append(more);
      last[last.length - 1] = EMPTY; // the slice (and its record) is not needed any more
    } else if (more.length > 0) last[last.length - 1] = Buffer.concat([prev, more]);
  }

  /**
   * The growing argument or the packed arguments, if any, take their place in the last command:
   * no later piece extends them.
   */
  private settle(): void {
    if (this.packed) {
      this.commands[this.commands.length - 1] = this.packed.view();
      this.packed = null;
      this.lastOwned = false;
    }
    if (!this.growing) return;
    const last = this.commands[this.commands.length - 1];
    last[last.length - 1] = this.growing.done();
    this.growing = null;
  }
}
