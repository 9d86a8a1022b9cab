/**
 * A hand-written Avro reader for the events that make up nearly all of a topic: snapshot keys
 * (payload only, or string, list, set, zset and hash values), commands and heartbeats. The twin
 * of fast-writer.ts: it reads exactly what avsc reads from the same bytes into the same model
 * objects (tests compare them for every event shape), following the schema's field and branch
 * order taken from the avsc types at start-up (`FastReadLayout`), not hard-coded.
 *
 * Why: avsc reads a batch into its own records (one object per union branch, record and array,
 * every `bytes` copied into a new Buffer), which avro-mapping.ts then maps to the model: in a
 * profile of the applier that was a sixth of its time, and most of its garbage. Here each event
 * is built once, its byte strings are views of the record (no copy), and the position's replid —
 * the same 40 characters in every event — is decoded once per batch.
 *
 * Anything else (snapshot-begin/end, stream and module values, a batch that does not end where
 * its last event does) makes `read` return null: the caller decodes the batch with avsc, which
 * reads it or says what is wrong.
 */
import type { ChangeEvent, CommandEvent, EventPiece, Heartbeat, SnapshotKey, SourcePosition, TypedValue } from './model.js';
import { NO_PARTICIPANTS } from './model.js';
import { payloadRdbVersion } from '../replication/dump-payload.js';
import { PACK_ARGS_FROM, PackedArgs, resizableArrayBuffers } from './packed-args.js';
import { EncodedCommandEvent, respDigits, writeRespHeader } from './encoded-command.js';
import { sharedCommandName } from './command-names.js';

/** Where things are in the schema: union branch indexes and enum symbols. */
export interface FastReadLayout {
  /** Branch index of each event kind read here in the event union. */
  snapshotKey: number;
  command: number;
  heartbeat: number;
  /** RedisType symbols by index. */
  typeSymbols: readonly string[];
  /** SnapshotKey.value: typed value kind by branch index (null branch and unread kinds: null). */
  valueKinds: ReadonlyArray<'string' | 'list' | 'set' | 'zset' | 'hash' | null>;
}

/** What a reader of a batch may leave out. */
export interface ReadOptions {
  /**
   * Snapshot keys carrying a RESTORE payload written with this RDB version or an older one are
   * read without their typed value (`value` null): a writer that restores payloads onto a server
   * of that version never looks at it, and for small keys the value is a third of the objects a
   * key decodes into. Keys whose payload is newer (the writer falls back to typed writes), keys
   * without a payload and appended pieces keep their value.
   */
  skipValuesUpToRdbVersion?: number | null;
  /**
   * Events of one command (not a piece) are read as `EncodedCommandEvent`s: the command written
   * into RESP, for a writer that sends it to a standalone Redis as it is (encoded-command.ts).
   */
  encodeCommands?: boolean;
}

/** Thrown inside the reader to give up on a batch (caught in `read`). */
class NotMine extends Error {}
const NOT_MINE = new NotMine();
const EMPTY = Buffer.alloc(0);
const EMPTY_VIEW = new DataView(new ArrayBuffer(0));

export class FastReader {
  private buf: Buffer = EMPTY;
  private p = 0;
  private replidBytes: Buffer | null = null;
  /** `replidBytes` as little-endian 32-bit words (its whole words; the rest is compared by byte). */
  private replidWords = new Int32Array(0);
  /** A view of `buf`'s bytes, for reading four at a time. */
  private view: DataView = EMPTY_VIEW;
  private replid = '';
  private skipValuesUpTo = -1;
  private encodeCommands = false;
  /** Where this record's encoded commands go: `out[outAt..]` is free. */
  private out: Buffer = EMPTY;
  private outAt = 0;

  constructor(private readonly layout: FastReadLayout) {}

  /** The events of an EventBatch body, or null when it holds anything this reader leaves to avsc. */
  read(body: Buffer, options: ReadOptions = {}): ChangeEvent[] | null {
    this.buf = body;
    this.view = new DataView(body.buffer, body.byteOffset, body.length);
    this.p = 0;
    this.skipValuesUpTo = options.skipValuesUpToRdbVersion ?? -1;
    this.encodeCommands = options.encodeCommands === true;
    this.out = EMPTY;
    this.outAt = 0;
    try {
      // sized from the first block (a record's events are one block): no growth by push
      let n = this.blockCount();
      const events: ChangeEvent[] = new Array<ChangeEvent>(n);
      for (let i = 0; i < n; i++) events[i] = this.event();
      for (n = n === 0 ? 0 : this.blockCount(); n > 0; n = this.blockCount()) {
        for (let i = 0; i < n; i++) events.push(this.event());
      }
      if (this.p !== body.length) return null;
      return events;
    } catch (err) {
      if (err === NOT_MINE || err instanceof RangeError) return null;
      throw err;
    } finally {
      this.buf = EMPTY; // not keeping the record alive
      this.view = EMPTY_VIEW;
      this.out = EMPTY;
    }
  }

  // ----- Avro primitives

  private long(): number {
    const b = this.buf;
    let p = this.p;
    let byte = b[p++];
    if (byte === undefined) throw NOT_MINE;
    if (byte < 0x80) {
      // one byte (-64..63): most lengths, counts, dbs and branches
      this.p = p;
      return (byte >>> 1) ^ -(byte & 1);
    }
    let n = byte & 0x7f;
    if (byte & 0x80) {
      let mult = 128;
      do {
        byte = b[p++];
        if (byte === undefined || mult > 2 ** 56) throw NOT_MINE;
        n += (byte & 0x7f) * mult;
        mult *= 128;
      } while (byte & 0x80);
    }
    this.p = p;
    if (n > Number.MAX_SAFE_INTEGER) throw NOT_MINE; // avsc refuses these too (with its message)
    return n % 2 === 0 ? n / 2 : -(n + 1) / 2;
  }

  /** Moves past a byte string; returns where it starts (it ends at `this.p`). */
  private bytesStart(): number {
    const len = this.long();
    const start = this.p;
    const end = start + len;
    if (len < 0 || end > this.buf.length) throw NOT_MINE;
    this.p = end;
    return start;
  }

  private bytes(): Buffer {
    const start = this.bytesStart();
    return this.buf.subarray(start, this.p);
  }

  /**
   * A command's name: the same few names come in every event, so each distinct one is kept as its
   * own small Buffer and handed out again (a view made per event was a third of the Buffers of a
   * SET). Shared: nothing writes into command arguments.
   */
  private commandNameBytes(): Buffer {
    const start = this.bytesStart();
    return sharedCommandName(this.buf, start, this.p);
  }

  /**
   * A command event's participants. Most events are single-stream: they share one frozen empty
   * list (nothing appends to one).
   */
  private participants(): Array<{ db: number; partition: number }> {
    let participants = NO_PARTICIPANTS;
    for (let n = this.blockCount(); n > 0; n = this.blockCount()) {
      if (participants === NO_PARTICIPANTS) participants = [];
      for (let i = 0; i < n; i++) {
        const pdb = this.long();
        participants.push({ db: pdb, partition: this.long() });
      }
    }
    return participants;
  }

  private boolean(): boolean {
    const v = this.buf[this.p++];
    if (v !== 0 && v !== 1) throw NOT_MINE;
    return v === 1;
  }

  private double(): number {
    if (this.p + 8 > this.buf.length) throw NOT_MINE;
    const v = this.buf.readDoubleLE(this.p);
    this.p += 8;
    return v;
  }

  /** Items in the next array block (0: the array ends); skips a block's byte size. */
  private blockCount(): number {
    let n = this.long();
    if (n < 0) {
      n = -n;
      this.long();
    }
    return n;
  }

  /**
   * An array of byte strings. Sized from its first block (writers put a whole array in one): an
   * array grown by push keeps room for 16 more, and commands of three arguments are most events.
   */
  private bytesArray(): Buffer[] {
    let n = this.blockCount();
    if (n === 0) return [];
    const out: Buffer[] = new Array<Buffer>(n);
    for (let i = 0; i < n; i++) out[i] = this.bytes();
    for (n = this.blockCount(); n > 0; n = this.blockCount()) for (let i = 0; i < n; i++) out.push(this.bytes());
    return out;
  }

  /**
   * A command's arguments: packed (packed-args.ts, their bytes copied into one buffer) when its
   * first block holds `PACK_ARGS_FROM` or more, else `bytesArray`. Why: a piece of a 1,000,000-field
   * HSET holds ~80,000 arguments; read as views they were ~9 MB of Buffer objects per piece, copied
   * into the packed command being rebuilt and dropped, which the collector found late (the
   * applier's RSS went past 300 MB while the pieces came).
   */
  private commandArgs(): Buffer[] {
    const save = this.p;
    const n = this.blockCount();
    if (n < PACK_ARGS_FROM || !resizableArrayBuffers()) {
      if (n === 0) {
        this.p = save;
        return this.bytesArray();
      }
      const out: Buffer[] = new Array<Buffer>(n);
      out[0] = this.commandNameBytes();
      for (let i = 1; i < n; i++) out[i] = this.bytes();
      for (let m = this.blockCount(); m > 0; m = this.blockCount()) for (let i = 0; i < m; i++) out.push(this.bytes());
      return out;
    }
    const packed = new PackedArgs();
    for (let m = n; m > 0; m = this.blockCount()) {
      for (let i = 0; i < m; i++) {
        const start = this.bytesStart();
        packed.push(EMPTY);
        packed.extendLastFrom(this.buf, start, this.p);
      }
    }
    return packed.view();
  }

  /**
   * The rest of a command event as an `EncodedCommandEvent` when it is one command of fewer than
   * `PACK_ARGS_FROM` arguments and not a piece; else null, with nothing read. Two walks over the
   * arguments: one measures the RESP, the other writes it.
   */
  private encodedCommand(pos: SourcePosition, db: number): EncodedCommandEvent | null {
    const at = this.p;
    if (this.blockCount() !== 1) return this.rewind(at);
    const argsAt = this.p;
    let argc = 0;
    let size = 0;
    for (let m = this.blockCount(); m > 0; m = this.blockCount()) {
      argc += m;
      if (argc >= PACK_ARGS_FROM) return this.rewind(at);
      for (let i = 0; i < m; i++) {
        const from = this.bytesStart();
        const len = this.p - from;
        size += 1 + respDigits(len) + 2 + len + 2;
      }
    }
    if (argc === 0 || this.blockCount() !== 0) return this.rewind(at);
    const participants = this.participants();
    if (this.piece() !== null) return this.rewind(at);
    const end = this.p;
    size += 1 + respDigits(argc) + 2;
    if (this.outAt + size > this.out.length) {
      // sized for the rest of the record: a SET is shorter in RESP than in the record (its position)
      this.out = Buffer.allocUnsafe(Math.max(size, this.buf.length - at + 256));
      this.outAt = 0;
    }
    const out = this.out;
    const b = this.buf;
    const start = this.outAt;
    let o = writeRespHeader(out, start, 0x2a, argc); // '*'
    let name: Buffer = EMPTY;
    let keyStart = -1;
    let keyEnd = -1;
    let k = 0;
    this.p = argsAt;
    for (let m = this.blockCount(); m > 0; m = this.blockCount()) {
      for (let i = 0; i < m; i++, k++) {
        const from = this.bytesStart();
        const to = this.p;
        o = writeRespHeader(out, o, 0x24, to - from); // '$'
        if (k === 0) name = sharedCommandName(this.buf, from, to);
        else if (k === 1) keyStart = o;
        if (to - from <= 16) for (let j = from; j < to; j++) out[o++] = b[j];
        else o += b.copy(out, o, from, to);
        if (k === 1) keyEnd = o;
        out[o++] = 0x0d;
        out[o++] = 0x0a;
      }
    }
    this.outAt = o;
    this.p = end;
    return new EncodedCommandEvent(pos, db, out, start, o, name, keyStart, keyEnd, participants);
  }

  private rewind(at: number): null {
    this.p = at;
    return null;
  }

  // ----- model parts

  private pos(): SourcePosition {
    const epoch = this.long();
    const offset = this.long();
    const seq = this.long();
    const len = this.long();
    const end = this.p + len;
    if (len < 0 || end > this.buf.length) throw NOT_MINE;
    const prev = this.replidBytes;
    // the same id in every event of a record: compared four bytes at a time (Buffer#compare's
    // checks and call cost more than the 40 bytes; byte by byte, this was half of `pos`)
    let same = prev !== null && prev.length === len;
    if (same) {
      const v = this.view;
      const w = this.replidWords;
      const p = this.p;
      const words = len >>> 2;
      for (let i = 0; i < words; i++) {
        if (v.getInt32(p + i * 4, true) !== w[i]) {
          same = false;
          break;
        }
      }
      for (let i = words * 4, b = this.buf; same && i < len; i++) same = prev![i] === b[p + i];
    }
    if (!same) {
      this.replid = this.buf.toString('utf8', this.p, end);
      const copy = Buffer.from(this.buf.subarray(this.p, end));
      this.replidBytes = copy;
      this.replidWords = new Int32Array(len >>> 2);
      for (let i = 0; i < this.replidWords.length; i++) this.replidWords[i] = copy.readInt32LE(i * 4);
    }
    this.p = end;
    return { epoch, offset, seq, replid: this.replid };
  }

  private piece(): EventPiece | null {
    const branch = this.long();
    if (branch === 0) return null;
    if (branch !== 1) throw NOT_MINE;
    const index = this.long();
    const last = this.boolean();
    const p: EventPiece = { index, last };
    if (this.boolean()) p.continued = true;
    return p;
  }

  private nullableLong(): number | null {
    const branch = this.long();
    if (branch === 0) return null;
    if (branch !== 1) throw NOT_MINE;
    return this.long();
  }

  private value(): TypedValue | null {
    const branch = this.long();
    if (branch === 0) return null;
    switch (this.layout.valueKinds[branch]) {
      case 'string':
        return { type: 'string', value: this.bytes() };
      case 'list':
        return { type: 'list', items: this.bytesArray() };
      case 'set':
        return { type: 'set', members: this.bytesArray() };
      case 'zset': {
        const entries: Array<{ member: Buffer; score: number }> = [];
        for (let n = this.blockCount(); n > 0; n = this.blockCount()) {
          for (let i = 0; i < n; i++) {
            const member = this.bytes();
            entries.push({ member, score: this.double() });
          }
        }
        return { type: 'zset', entries };
      }
      case 'hash': {
        const entries: Array<{ field: Buffer; value: Buffer; expireAtMs: number | null }> = [];
        for (let n = this.blockCount(); n > 0; n = this.blockCount()) {
          for (let i = 0; i < n; i++) {
            const field = this.bytes();
            const value = this.bytes();
            entries.push({ field, value, expireAtMs: this.nullableLong() });
          }
        }
        return { type: 'hash', entries };
      }
      default:
        throw NOT_MINE; // streams, modules: avsc
    }
  }

  /** Moves past a typed value without building it (the same walk as `value`). */
  private skipValue(): void {
    const branch = this.long();
    if (branch === 0) return;
    const kind = this.layout.valueKinds[branch];
    if (kind === 'string') return this.skipBytes();
    if (kind === null || kind === undefined) throw NOT_MINE;
    for (let n = this.blockCount(); n > 0; n = this.blockCount()) {
      for (let i = 0; i < n; i++) {
        this.skipBytes();
        if (kind === 'zset') {
          if (this.p + 8 > this.buf.length) throw NOT_MINE;
          this.p += 8;
        } else if (kind === 'hash') {
          this.skipBytes();
          this.nullableLong();
        }
      }
    }
  }

  private skipBytes(): void {
    this.bytesStart();
  }

  private event(): ChangeEvent {
    const branch = this.long();
    const L = this.layout;
    if (branch === L.snapshotKey) {
      const pos = this.pos();
      const db = this.long();
      const key = this.bytes();
      const type = L.typeSymbols[this.long()];
      if (type === undefined) throw NOT_MINE;
      const expireAtMs = this.nullableLong();
      const payloadBranch = this.long();
      if (payloadBranch !== 0 && payloadBranch !== 1) throw NOT_MINE;
      const payload = payloadBranch === 1 ? this.bytes() : null;
      const valueAt = this.p;
      let value: TypedValue | null = null;
      const skipped = payload !== null && this.skipValuesUpTo >= 0 && payloadRdbVersion(payload) >= 0 && payloadRdbVersion(payload) <= this.skipValuesUpTo;
      if (skipped) this.skipValue();
      else value = this.value();
      const piece = this.piece();
      const k: SnapshotKey = { kind: 'snapshot-key', pos, db, key, type: type as SnapshotKey['type'], expireAtMs, payload, value, piece };
      const appendBranch = this.long();
      if (appendBranch === 1) k.append = this.boolean();
      else if (appendBranch !== 0) throw NOT_MINE;
      if (skipped && k.append === true) {
        // an appended piece is written from its value, payload or not: read it after all
        const after = this.p;
        this.p = valueAt;
        k.value = this.value();
        this.p = after;
      }
      return k;
    }
    if (branch === L.command) {
      const pos = this.pos();
      const db = this.long();
      if (this.encodeCommands) {
        const e = this.encodedCommand(pos, db);
        if (e !== null) return e;
      }
      let n = this.blockCount();
      const commands: Buffer[][] = new Array<Buffer[]>(n); // sized as in bytesArray
      for (let i = 0; i < n; i++) commands[i] = this.commandArgs();
      for (n = n === 0 ? 0 : this.blockCount(); n > 0; n = this.blockCount()) for (let i = 0; i < n; i++) commands.push(this.commandArgs());
      const e: CommandEvent = { kind: 'command', pos, db, commands, participants: this.participants(), piece: this.piece() };
      return e;
    }
    if (branch === L.heartbeat) {
      const pos = this.pos();
      const db = this.long();
      const h: Heartbeat = { kind: 'heartbeat', pos, db, timeMs: this.long() };
      return h;
    }
    throw NOT_MINE;
  }
}
