/**
 * Streaming RDB parser.
 *
 * Bytes are pushed in chunks of any size; every item completed by a chunk is returned at once.
 * Memory stays bounded: the parser keeps only the unparsed tail of the input, plus (while an
 * entry is small enough to be delivered whole) the entry's own bytes, which become its RESTORE
 * payload. An entry whose serialized size passes `maxEntryBytes`, or whose decoded elements do
 * (counted with a per-element overhead, entry.ts), switches to piece mode: its
 * elements are delivered in batches of about `maxEntryBytes` decoded bytes (payload null), and a
 * huge plain or LZF string in byte slices of exactly `maxEntryBytes` (the last one shorter).
 *
 * Design: one state machine over the input buffer. Each step (a top-level record, one element
 * of a value, one listpack blob, one PEL entry…) reads everything it needs and only then commits;
 * when the buffer runs dry a step throws the NEED sentinel, the position goes back to the last
 * commit and the parser waits until enough bytes have arrived.
 *
 * Layers, one job each: cursor.ts (input bytes, primitive reads, checksums) ← entry.ts (what
 * every key has: prefix, key, pieces, emission) ← values.ts (a reader per value encoding) ← this
 * file (the public API and the top-level records). types.ts names the type bytes and opcodes.
 *
 * Formats covered: RDB 1–12 (`REDIS0001`…`REDIS0012`) and Valkey (`VALKEY080`, `VALKEY081`…).
 * Value types 0–5, 7, 9–21; in `REDIS` files 22–25 (Redis 7.4's hashes with field TTLs: 22 and 23
 * as 7.4's development builds wrote them, 24 and 25 as released), in `VALKEY` files 22 (Valkey 9's
 * HASH_2): the magic decides what 22 means (types.ts). Opcodes 244–255. Type 6 (pre-GA module),
 * Valkey files with types above 22, and unknown bytes stop the parse with an error naming the
 * byte and its offset: an unknown type cannot be skipped safely. Empty lists, sets, sorted sets
 * and hashes are skipped as Redis skips them on load, and counted (`emptyKeysSkipped`).
 */
import { ReplistreamError } from '../../common/errors.js';
import { NEED } from './cursor.js';
import type { RdbItem, RdbParserOptions } from './items.js';
import { FIRST_OPCODE, RDB_OPCODE, RDB_TYPE, REDIS_TYPES, unsupportedType, VALKEY_TYPES } from './types.js';
import { moduleName, rdbError } from './util.js';
import { ValueReader } from './values.js';

export type { RdbEntry, RdbItem, RdbParserOptions } from './items.js';
export { RDB_ENCODING_NAMES, RDB_OPCODE, RDB_TYPE } from './types.js';

const DEFAULT_MAX_ENTRY_BYTES = 8 * 1024 * 1024;

// Parser states.
const S_HEADER = 0;
const S_OPCODE = 1;
const S_VALUE = 2;
const S_CHECKSUM = 3;
const S_DONE = 4;

export class RdbParser extends ValueReader {
  private received = 0;
  private state = S_HEADER;
  private failure: ReplistreamError | null = null;
  private remainder: Buffer[] = [];
  private rdbLength = 0;
  private eofAbs = -1;

  constructor(opts: RdbParserOptions = {}) {
    super(Math.max(1, Math.floor(opts.maxEntryBytes ?? DEFAULT_MAX_ENTRY_BYTES)), opts.verifyChecksum ?? true, opts.payloads ?? true);
  }

  /** True once the EOF opcode and the checksum have been consumed. */
  get done(): boolean {
    return this.state === S_DONE;
  }

  /** Bytes of the RDB consumed so far (the whole RDB once done). */
  get bytesConsumed(): number {
    return this.state === S_DONE ? this.rdbLength : this.base + this.mark;
  }

  /** The RDB version from the header (0 before it is read; 80+ for Valkey). */
  get rdbVersion(): number {
    return this.version;
  }

  /**
   * Keys skipped because they hold an empty list, set, sorted set or hash (Redis skips them when
   * it loads a file, and a destination would refuse them): how many so far.
   */
  get emptyKeysSkipped(): number {
    return this.emptyCount;
  }

  /** The first (up to 10) of the keys counted by `emptyKeysSkipped`, for a log line. */
  get emptyKeysSample(): ReadonlyArray<{ db: number; key: Buffer }> {
    return this.emptyKeys;
  }

  /** Feeds bytes; returns every item they complete. */
  push(chunk: Buffer): RdbItem[] {
    if (this.failure) throw this.failure;
    if (this.state === S_DONE) {
      if (chunk.length > 0) this.remainder.push(Buffer.from(chunk));
      return [];
    }
    this.received += chunk.length;
    this.append(chunk);
    const out: RdbItem[] = [];
    if (this.base + this.end < this.needEnd) return out;
    this.run(out);
    return out;
  }

  /** Bytes pushed after the end of the RDB (where a replication stream continues). */
  takeRemainder(): Buffer {
    const r = this.remainder.length === 1 ? this.remainder[0] : Buffer.concat(this.remainder);
    this.remainder = [];
    return r;
  }

  /** Call at end of input: throws RDB_FORMAT if the RDB is incomplete. */
  finish(): void {
    if (this.failure) throw this.failure;
    if (this.state === S_DONE) return;
    const at = this.base + this.mark;
    const what =
      this.state === S_HEADER
        ? 'header'
        : this.state === S_CHECKSUM
          ? 'checksum'
          : this.entryStartAbs >= 0
            ? `entry starting at offset ${this.entryStartAbs}`
            : `record starting at offset ${at}`;
    this.failure = new ReplistreamError(
      'RDB_FORMAT',
      `RDB truncated at offset ${this.received}: input ended inside the ${what}`,
      { details: { offset: this.received, parsedUpTo: at } },
    );
    throw this.failure;
  }

  // ---------------------------------------------------------------------------------------------
  // Main loop

  private run(out: RdbItem[]): void {
    this.out = out;
    this.needEnd = 0;
    for (;;) {
      this.mark = this.pos;
      try {
        switch (this.state) {
          case S_OPCODE:
            this.parseOpcode();
            break;
          case S_VALUE:
            this.valueStep();
            this.state = S_OPCODE;
            break;
          case S_HEADER:
            this.parseHeader();
            break;
          case S_CHECKSUM:
            this.parseChecksum();
            break;
          default:
            this.finishDone();
            return;
        }
      } catch (e) {
        if (e === NEED) {
          this.pos = this.mark;
          this.settleChecksums(this.pos);
          return;
        }
        throw this.fail(e);
      }
    }
  }

  private fail(e: unknown): ReplistreamError {
    if (e instanceof ReplistreamError) {
      this.failure = e;
    } else {
      const msg = e instanceof Error ? e.message : String(e);
      const err = rdbError(this.base + this.pos, `internal parser error: ${msg}`, { internal: true });
      (err as { cause?: unknown }).cause = e;
      this.failure = err;
    }
    return this.failure;
  }

  private finishDone(): void {
    if (this.pos < this.end) this.remainder.push(Buffer.from(this.buf.subarray(this.pos, this.end)));
    this.mark = this.pos = this.end;
    this.setBuffer(Buffer.alloc(0));
    this.base += this.end;
    this.pos = this.mark = this.end = 0;
  }

  // ---------------------------------------------------------------------------------------------
  // Top level

  private parseHeader(): void {
    if (this.end < 9) this.needMore(9);
    const magic = this.buf.toString('latin1', 0, 9);
    let version: number;
    if (/^REDIS\d{4}$/.test(magic)) {
      version = Number(magic.slice(5));
      if (version < 1 || version > 12) {
        throw rdbError(0, `unsupported RDB version ${version} (this parser reads 1 to 12 and Valkey 80+)`);
      }
    } else if (/^VALKEY\d{3}$/.test(magic)) {
      version = Number(magic.slice(6));
      if (version < 80) throw rdbError(0, `unsupported Valkey RDB version ${version}`);
    } else {
      throw rdbError(0, `not an RDB file (header ${JSON.stringify(magic)})`);
    }
    this.version = version;
    this.types = magic.startsWith('VALKEY') ? VALKEY_TYPES : REDIS_TYPES;
    this.pos = 9;
    this.state = S_OPCODE;
    this.out.push({ kind: 'header', version, offset: 0 });
  }

  private parseChecksum(): void {
    const p = this.pos;
    this.settleChecksums(this.eofAbs + 1 - this.base);
    if (this.version >= 5) {
      if (p + 8 > this.end) this.needMore(p + 8);
      const stored = this.buf.readBigUInt64LE(p);
      if (this.verify && stored !== 0n && this.fileChecksum !== stored) {
        throw rdbError(
          this.base + p,
          `checksum mismatch: file says ${stored.toString(16).padStart(16, '0')}, content gives ${this.fileChecksum
            .toString(16)
            .padStart(16, '0')}`,
        );
      }
      this.pos = p + 8;
      this.out.push({ kind: 'end', offset: this.eofAbs, checksum: stored });
    } else {
      this.out.push({ kind: 'end', offset: this.eofAbs, checksum: null });
    }
    this.rdbLength = this.base + this.pos;
    this.state = S_DONE;
  }

  private parseOpcode(): void {
    const start = this.pos;
    if (start >= this.end) this.needMore(start + 1);
    const op = this.buf[start];
    this.pos = start + 1;
    if (op < FIRST_OPCODE) {
      if (op === RDB_TYPE.STRING && this.smallStringEntry(start)) return;
      if (this.types.redisType[op] === undefined) throw rdbError(this.base + start, unsupportedType(op, this.types.valkey), { type: op });
      const key = this.readString();
      // Committed: the entry begins. Its value follows at once (no trip through the step loop).
      this.startPrefix(start);
      this.beginValue(op, key);
      this.state = S_VALUE;
      this.mark = this.pos;
      this.valueStep();
      this.state = S_OPCODE;
      return;
    }
    switch (op) {
      case RDB_OPCODE.EXPIRETIME_MS: {
        const ms = this.readMs();
        this.startPrefix(start);
        this.expireAtMs = ms;
        return;
      }
      case RDB_OPCODE.SELECTDB: {
        const db = this.readLen();
        this.db = db;
        this.out.push({ kind: 'select', db });
        return;
      }
      case RDB_OPCODE.RESIZEDB: {
        const size = this.readLenApprox();
        const expires = this.readLenApprox();
        this.out.push({ kind: 'resize', db: this.db, size, expires });
        return;
      }
      case RDB_OPCODE.AUX: {
        const key = this.readString();
        const value = this.readString();
        this.out.push({ kind: 'aux', key, value });
        return;
      }
      case RDB_OPCODE.EXPIRETIME: {
        const p = this.pos;
        if (p + 4 > this.end) this.needMore(p + 4);
        const s = this.buf.readInt32LE(p);
        this.pos = p + 4;
        this.startPrefix(start);
        this.expireAtMs = s * 1000;
        return;
      }
      case RDB_OPCODE.IDLE: {
        const idle = this.readLenApprox();
        this.startPrefix(start);
        this.idle = idle;
        return;
      }
      case RDB_OPCODE.FREQ: {
        const f = this.readU8();
        this.startPrefix(start);
        this.freq = f;
        return;
      }
      case RDB_OPCODE.EOF: {
        this.eofAbs = this.base + start;
        this.state = S_CHECKSUM;
        return;
      }
      case RDB_OPCODE.MODULE_AUX: {
        const id = this.readLenBig();
        const whenOpAt = this.pos;
        const whenOp = this.readLen();
        if (whenOp !== 2) throw rdbError(this.base + whenOpAt, `module aux data: bad 'when' opcode ${whenOp}`);
        this.readLen();
        this.skipModuleOps();
        this.out.push({
          kind: 'module-aux',
          moduleId: moduleName(id),
          raw: Buffer.from(this.buf.subarray(start + 1, this.pos)),
        });
        return;
      }
      case RDB_OPCODE.FUNCTION2: {
        const code = this.readString();
        this.out.push({ kind: 'function', code });
        return;
      }
      case RDB_OPCODE.FUNCTION_PRE_GA: {
        // 7.0 rc1/rc2: name, engine, [description], code; translated to the GA form
        // "#!<engine> name=<name>\n<code>".
        const name = this.readString();
        const engine = this.readString();
        const hasDesc = this.readLen();
        if (hasDesc) this.readString();
        const body = this.readString();
        const code = Buffer.concat([Buffer.from(`#!${engine.toString('latin1')} name=`, 'latin1'), name, Buffer.from('\n'), body]);
        this.out.push({ kind: 'function', code });
        return;
      }
      case RDB_OPCODE.SLOT_INFO: {
        // slot id, keys in slot, expires in slot: a cluster sizing hint, nothing to report.
        this.readLenApprox();
        this.readLenApprox();
        this.readLenApprox();
        return;
      }
      default:
        throw rdbError(this.base + start, unsupportedType(op), { type: op });
    }
  }
}
