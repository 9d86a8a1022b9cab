/**
 * Value readers, one per RDB encoding: each reads its value from the cursor, one committed step
 * at a time (an element, a blob, a stream consumer…), and hands elements to `add()`.
 */
import type { StreamId, StreamValue, TypedValue } from '../../events/model.js';
import { EntryReader, K_HASH, K_LIST, K_SET, K_STREAM, K_STRING, K_ZSET, newEntry } from './entry.js';
import { decodeIntset } from './intset.js';
import { decodeListpack, type LpValue } from './listpack.js';
import { lzfDecompress, LzfStreamDecoder } from './lzf.js';
import { decodeStreamNode, readStreamId, type StreamEntry } from './stream.js';
import { RDB_TYPE as T } from './types.js';
import { intToBuf, moduleName, parseScore, rdbError } from './util.js';
import { decodeZiplist } from './ziplist.js';
import { decodeZipmap } from './zipmap.js';

// Phases of a string value after its header (phase 0), when it is delivered in slices.
const STR_LZF_SLICES = 2;
const STR_PLAIN_SLICES = 3;

/** A stream consumer group's entries_read when unknown (2^64 − 1). */
const U64_MAX = (1n << 64n) - 1n;

interface StreamMeta {
  length: number;
  lastId: StreamId;
  firstId?: StreamId;
  maxDeletedId?: StreamId;
  entriesAdded?: number;
  groups: StreamValue['groups'];
}

type Group = StreamValue['groups'][number];
type Consumer = Group['consumers'][number];
type Pending = Group['pending'][number];

function toBuf(v: LpValue): Buffer {
  return v instanceof Uint8Array ? (v as Buffer) : intToBuf(v);
}

function toScore(v: LpValue): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  return parseScore(v.toString('latin1'));
}

function idKey(id: StreamId): string {
  return `${id.ms}-${id.seq}`;
}

export abstract class ValueReader extends EntryReader {
  private strValue: Buffer = Buffer.alloc(0);
  private moduleId = '';
  private minExpire = 0;
  private lzf: LzfStreamDecoder | null = null;
  // Streams.
  private smeta: StreamMeta | null = null;
  private sGroups = 0;
  private sConsumers = 0;
  private sGroup: Group | null = null;
  private sConsumer: Consumer | null = null;
  private sPel: Map<string, Pending> | null = null;

  /**
   * Reads (more of) the current value. Returns once the value is complete and emitted; throws
   * NEED when the buffer runs dry (after committing, via `mark`, whatever it has finished).
   */
  protected valueStep(): void {
    switch (this.vType) {
      case T.STRING:
        return this.stepString();
      case T.LIST:
      case T.SET:
        return this.stepStrings();
      case T.ZSET:
      case T.ZSET_2:
        return this.stepZset();
      case T.HASH:
        return this.stepHash();
      case T.HASH_METADATA:
        return this.stepHashMetadata();
      case T.HASH_METADATA_PRE_GA: // = T.VALKEY_HASH_2: the magic decides (see types.ts)
        return this.types.valkey ? this.stepValkeyHash2() : this.stepHashMetadata();
      case T.MODULE_2:
        return this.stepModule();
      case T.LIST_QUICKLIST:
      case T.LIST_QUICKLIST_2:
        return this.stepQuicklist();
      case T.STREAM_LISTPACKS:
      case T.STREAM_LISTPACKS_2:
      case T.STREAM_LISTPACKS_3:
        return this.stepStream();
      default:
        return this.stepBlob();
    }
  }

  /**
   * The common entry in one go: a plain string key and a plain string value with 6- or 14-bit
   * lengths, all in the buffer, whole (within the limit). Small keys dominate most RDBs, and this
   * skips the general path's state machine. Returns false, having consumed nothing, for anything
   * else. `start`: buffer index of the type byte (STRING), which the caller has read.
   */
  protected smallStringEntry(start: number): boolean {
    const buf = this.buf;
    const end = this.end;
    let p = start + 1;
    if (p + 2 > end) return false;
    let b = buf[p];
    let klen: number;
    if (b < 0x40) {
      klen = b;
      p += 1;
    } else if (b < 0x80) {
      klen = ((b & 0x3f) << 8) | buf[p + 1];
      p += 2;
    } else return false;
    const ks = p;
    const vs = ks + klen; // the value: its length, then its bytes
    p = vs;
    if (p + 2 > end) return false;
    b = buf[p];
    let vlen: number;
    if (b < 0x40) {
      vlen = b;
      p += 1;
    } else if (b < 0x80) {
      vlen = ((b & 0x3f) << 8) | buf[p + 1];
      p += 2;
    } else return false;
    const ve = p + vlen;
    if (ve > end) return false;
    const entryStart = this.entryStartAbs >= 0 ? this.entryStartAbs : this.base + start;
    if (this.base + ve - entryStart > this.limit && vlen !== 0) return false; // piece mode
    const key = this.bufCopy(ks, vs);
    let value: Buffer;
    let payload: Buffer | null = null;
    if (this.payloads) {
      payload = this.makePayload(T.STRING, vs, ve);
      const at = this.payloadSlab.lastOffset;
      value = at >= 0 ? this.payloadSlab.view(at + 1 + p - vs, vlen) : payload.subarray(1 + p - vs, 1 + ve - vs);
    } else {
      value = this.bufCopy(p, ve);
    }
    this.out.push(newEntry(this.db, key, 'string', 'string', this.expireAtMs, this.idle, this.freq, { type: 'string', value }, payload, null, entryStart));
    this.pos = ve;
    this.resetPrefix();
    return true;
  }

  private stepString(): void {
    if (this.vPhase === 0) {
      const len = this.readStringHeader();
      const p = this.pos;
      const sizeSoFar = this.base + p - this.entryStartAbs;
      if (len === -1) {
        this.encoding = 'string-int';
        this.strValue = intToBuf(this.hdrInt);
        return this.endValue();
      }
      if (len === -2) {
        this.encoding = 'string-lzf';
        const clen = this.hdrClen;
        if (sizeSoFar + clen <= this.limit) {
          const e = p + clen;
          if (e > this.end) this.needMore(e);
          this.strValue = lzfDecompress(this.buf, p, e, this.hdrUlen, this.valueStartAbs);
          this.pos = e;
          return this.endValue();
        }
        this.lzf = new LzfStreamDecoder(clen, this.hdrUlen, this.limit, this.valueStartAbs);
        this.enterSliceMode(STR_LZF_SLICES);
      } else if (sizeSoFar + len <= this.limit || len === 0) {
        const e = p + len;
        if (e > this.end) this.needMore(e);
        this.pos = e;
        if (this.payloads) {
          // The value's bytes are inside the payload: share them instead of copying twice.
          const vs = this.valueStartAbs - this.base;
          const payload = this.makePayload(T.STRING, vs, e);
          const slabAt = this.payloadSlab.lastOffset;
          const at = 1 + p - vs;
          const value = slabAt >= 0 ? this.payloadSlab.view(slabAt + at, len) : payload.subarray(at, at + len);
          this.out.push(this.entryItem({ type: 'string', value }, payload, null));
          return this.resetEntry();
        }
        this.strValue = this.bufCopy(p, e);
        return this.endValue();
      } else {
        this.vCount = len;
        this.enterSliceMode(STR_PLAIN_SLICES);
      }
    }
    if (this.vPhase === STR_LZF_SLICES) return this.lzfSlices();
    this.plainSlices();
  }

  /** A huge LZF string: decodes what is there, emitting slices. */
  private lzfSlices(): void {
    const lzf = this.lzf!;
    const used = lzf.feed(this.buf, this.pos, this.end, (slice, last) => this.emitStringPiece(slice, last));
    this.pos += used;
    this.mark = this.pos;
    if (lzf.done) return this.resetEntry();
    this.needMore(this.end + 1);
  }

  /** A huge plain string: slices of exactly `limit` bytes. */
  private plainSlices(): void {
    while (this.vCount > 0) {
      const n = Math.min(this.vCount, this.limit);
      const p = this.pos;
      if (p + n > this.end) this.needMore(p + n);
      const slice = this.bufCopy(p, p + n);
      this.pos = p + n;
      this.vCount -= n;
      this.mark = this.pos;
      this.emitStringPiece(slice, this.vCount === 0);
    }
    this.resetEntry();
  }

  private stepStrings(): void {
    this.readCountOnce();
    while (this.vCount > 0) {
      const s = this.readString();
      this.add(s, s.length);
      this.elementDone();
    }
    this.endValue();
  }

  private stepZset(): void {
    this.readCountOnce();
    const binary = this.vType === T.ZSET_2;
    while (this.vCount > 0) {
      const member = this.readString();
      const score = binary ? this.readF64() : this.readStrDouble();
      this.add({ member, score }, member.length + 8);
      this.elementDone();
    }
    this.endValue();
  }

  private stepHash(): void {
    this.readCountOnce();
    while (this.vCount > 0) {
      const field = this.readString();
      const value = this.readString();
      this.add({ field, value, expireAtMs: null }, field.length + value.length);
      this.elementDone();
    }
    this.endValue();
  }

  /**
   * HASH_METADATA: int64 LE minExpire, count, then (ttl, field, value); ttl 0 = none, else
   * minExpire + ttl − 1. HASH_METADATA_PRE_GA (7.4 development builds, in `REDIS` files): no
   * minExpire, and ttl is the absolute time (0 = none). Redis 7.4 still loads the pre-release
   * layout, so these files are read rather than refused.
   */
  private stepHashMetadata(): void {
    if (this.vPhase === 0) {
      const preGa = this.vType === T.HASH_METADATA_PRE_GA;
      const minExpire = preGa ? 1 : this.readMs(); // pre-GA: 1 + ttl − 1 = the absolute ttl
      const count = this.readLen();
      this.minExpire = minExpire;
      this.vCount = count;
      this.vPhase = 1;
      this.mark = this.pos;
    }
    while (this.vCount > 0) {
      const ttl = this.readLenApprox();
      const field = this.readString();
      const value = this.readString();
      this.add({ field, value, expireAtMs: ttl === 0 ? null : this.minExpire + ttl - 1 }, field.length + value.length);
      this.elementDone();
    }
    this.endValue();
  }

  /**
   * Valkey 9's HASH_2 (type 22 in a `VALKEY` file): count, then (field, value, int64 LE expiry in
   * ms) for every field, −1 for a field without one. Unlike Redis's types, 0 is not "none" there
   * but a time long past: such a field goes out with expireAtMs 0, and HPEXPIREAT 0 at the
   * destination deletes it, as Valkey would have. The typed value carries each field's TTL like
   * the Redis 7.4 types; the payload keeps the type byte and the file's version (80+), so only a
   * Valkey 9+ destination RESTOREs it.
   */
  private stepValkeyHash2(): void {
    this.readCountOnce();
    while (this.vCount > 0) {
      const field = this.readString();
      const value = this.readString();
      const at = this.pos;
      const ms = this.readMs();
      if (ms < -1) throw rdbError(this.base + at, `hash-2 field expiry ${ms} is negative (only -1, "no expiry", is)`);
      this.add({ field, value, expireAtMs: ms === -1 ? null : ms }, field.length + value.length);
      this.elementDone();
    }
    this.endValue();
  }

  private stepModule(): void {
    if (this.vPhase === 0) {
      const id = this.readLenBig();
      this.moduleId = moduleName(id);
      this.vPhase = 1;
      this.mark = this.pos;
    }
    // One module opcode per commit, so a long value never has to be re-walked.
    for (;;) {
      const at = this.pos;
      const op = this.readLen();
      if (op === 0) {
        this.checkPieceSwitch();
        return this.endValue();
      }
      if (!this.skipModuleOperand(op)) {
        throw rdbError(this.base + at, `unknown module value opcode ${op} in module ${this.moduleId}`);
      }
      this.checkPieceSwitch();
      this.mark = this.pos;
    }
  }

  /**
   * Single-blob encodings: zipmap, ziplists, intset, listpacks (HASH_LISTPACK_EX: minExpire first;
   * its 7.4 development-build form HASH_LISTPACK_EX_PRE_GA is the same listpack without it).
   */
  private stepBlob(): void {
    if (this.vPhase === 0 && this.vType === T.HASH_LISTPACK_EX) {
      this.minExpire = this.readMs();
      this.vPhase = 1;
      this.mark = this.pos;
    }
    this.readBlob();
    const vals: LpValue[] = [];
    const { bsrc, bstart, bend, boff } = this;
    switch (this.vType) {
      case T.HASH_ZIPMAP:
        decodeZipmap(bsrc, bstart, bend, boff, vals);
        break;
      case T.LIST_ZIPLIST:
      case T.ZSET_ZIPLIST:
      case T.HASH_ZIPLIST:
        decodeZiplist(bsrc, bstart, bend, boff, vals);
        break;
      case T.SET_INTSET:
        decodeIntset(bsrc, bstart, bend, boff, vals);
        break;
      default: // HASH_LISTPACK, ZSET_LISTPACK, SET_LISTPACK, HASH_LISTPACK_EX(_PRE_GA)
        decodeListpack(bsrc, bstart, bend, boff, vals);
    }
    switch (this.kind) {
      case K_LIST:
      case K_SET:
        this.addBufs(vals);
        break;
      case K_ZSET:
        if (vals.length & 1) throw rdbError(boff, `sorted set ${this.encoding} has an odd number of elements`);
        for (let i = 0; i < vals.length; i += 2) {
          const member = toBuf(vals[i]);
          this.add({ member, score: toScore(vals[i + 1]) }, member.length + 8);
        }
        break;
      default: {
        // hash
        if (this.vType === T.HASH_LISTPACK_EX || this.vType === T.HASH_LISTPACK_EX_PRE_GA) {
          if (vals.length % 3) throw rdbError(boff, `${this.encoding} does not hold field/value/ttl triples`);
          for (let i = 0; i < vals.length; i += 3) {
            const field = toBuf(vals[i]);
            const value = toBuf(vals[i + 1]);
            const ttl = vals[i + 2];
            if (typeof ttl !== 'number' && typeof ttl !== 'bigint') {
              throw rdbError(boff, `${this.encoding} field TTL is not an integer`);
            }
            this.add({ field, value, expireAtMs: ttl === 0 ? null : Number(ttl) }, field.length + value.length);
          }
        } else {
          if (vals.length & 1) throw rdbError(boff, `hash ${this.encoding} has an odd number of elements`);
          for (let i = 0; i < vals.length; i += 2) {
            const field = toBuf(vals[i]);
            const value = toBuf(vals[i + 1]);
            this.add({ field, value, expireAtMs: null }, field.length + value.length);
          }
        }
      }
    }
    this.checkPieceSwitch();
    this.endValue();
  }

  /** Adds decoded list/set elements. */
  private addBufs(vals: LpValue[]): void {
    for (let i = 0; i < vals.length; i++) {
      const b = toBuf(vals[i]);
      this.add(b, b.length);
    }
  }

  /** LIST_QUICKLIST (N ziplists) and LIST_QUICKLIST_2 (N × container + blob: 1 PLAIN element, 2 PACKED listpack). */
  private stepQuicklist(): void {
    this.readCountOnce();
    const v2 = this.vType === T.LIST_QUICKLIST_2;
    const vals: LpValue[] = [];
    while (this.vCount > 0) {
      let container = 2;
      if (v2) {
        const at = this.pos;
        container = this.readLen();
        if (container !== 1 && container !== 2) throw rdbError(this.base + at, `quicklist node has bad container ${container}`);
      }
      this.readBlob();
      if (container === 1) {
        const el = this.blobCopy();
        this.add(el, el.length);
      } else {
        vals.length = 0;
        if (v2) decodeListpack(this.bsrc, this.bstart, this.bend, this.boff, vals);
        else decodeZiplist(this.bsrc, this.bstart, this.bend, this.boff, vals);
        // An empty node is skipped, as Redis does when it loads one (a list of only empty nodes
        // is then an empty list: endValue skips it).
        this.addBufs(vals);
      }
      this.checkPieceSwitch();
      this.elementDone();
    }
    this.endValue();
  }

  private stepStream(): void {
    const t = this.vType;
    for (;;) {
      switch (this.vPhase) {
        case 0: // node count
          this.vCount = this.readLen();
          this.vPhase = 1;
          break;
        case 1: {
          // nodes: master ID (16-byte string) + listpack
          if (this.vCount === 0) {
            this.vPhase = 2;
            break;
          }
          const keyAt = this.base + this.pos;
          const nodeKey = this.readString();
          if (nodeKey.length !== 16) throw rdbError(keyAt, `stream node key is ${nodeKey.length} bytes, expected 16`);
          this.readBlob();
          const entries: StreamEntry[] = [];
          decodeStreamNode(readStreamId(nodeKey, 0), this.bsrc, this.bstart, this.bend, this.boff, entries);
          for (const e of entries) {
            let size = 16;
            for (const f of e.fields) size += f.length;
            this.add(e, size);
          }
          this.checkPieceSwitch();
          this.vCount--;
          break;
        }
        case 2: {
          // metadata
          const length = this.readLenApprox();
          const lastId = this.readIdLens();
          const meta: StreamMeta = { length, lastId, groups: [] };
          if (t !== T.STREAM_LISTPACKS) {
            meta.firstId = this.readIdLens();
            meta.maxDeletedId = this.readIdLens();
            meta.entriesAdded = this.readLenApprox();
          }
          this.smeta = meta;
          this.vPhase = 3;
          break;
        }
        case 3:
          this.sGroups = this.readLen();
          this.vPhase = 4;
          break;
        case 4: {
          // group header
          if (this.sGroups === 0) {
            this.checkPieceSwitch();
            return this.endValue();
          }
          const name = this.readString();
          const lastId = this.readIdLens();
          let entriesRead: bigint | null = null;
          if (t !== T.STREAM_LISTPACKS) entriesRead = this.readLenBig();
          const pel = this.readLen();
          const group: Group = { name, lastId, pending: [], consumers: [] };
          if (entriesRead !== null && entriesRead !== U64_MAX) group.entriesRead = Number(entriesRead);
          this.smeta!.groups.push(group);
          this.sGroup = group;
          this.sPel = new Map();
          this.vCount = pel;
          this.vPhase = 5;
          break;
        }
        case 5: {
          // group PEL: 16-byte ID, int64 LE delivery time, delivery count
          if (this.vCount === 0) {
            this.vPhase = 6;
            break;
          }
          const id = this.readRawId(24);
          const deliveryTimeMs = this.readMs();
          const deliveryCount = this.readLenApprox();
          const pe: Pending = { id, deliveryTimeMs, deliveryCount };
          this.sGroup!.pending.push(pe);
          this.sPel!.set(idKey(id), pe);
          this.vCount--;
          break;
        }
        case 6:
          this.sConsumers = this.readLen();
          this.vPhase = 7;
          break;
        case 7: {
          // consumer header
          if (this.sConsumers === 0) {
            this.sGroups--;
            this.vPhase = 4;
            break;
          }
          const name = this.readString();
          const seenTimeMs = this.readMs();
          const consumer: Consumer = { name, seenTimeMs, pending: [] };
          if (t === T.STREAM_LISTPACKS_3) consumer.activeTimeMs = this.readMs();
          const pel = this.readLen();
          this.sGroup!.consumers.push(consumer);
          this.sConsumer = consumer;
          this.vCount = pel;
          this.vPhase = 8;
          break;
        }
        case 8: {
          // consumer PEL: 16-byte IDs
          if (this.vCount === 0) {
            this.sConsumers--;
            this.vPhase = 7;
            break;
          }
          const id = this.readRawId(16);
          this.sConsumer!.pending.push(id);
          const pe = this.sPel!.get(idKey(id));
          if (pe) pe.consumer = this.sConsumer!.name;
          this.vCount--;
          break;
        }
      }
      // Big consumer groups count too: stop retaining the entry's bytes once it is too big.
      this.checkPieceSwitch();
      this.mark = this.pos;
    }
  }

  protected makeValue(last: boolean): TypedValue {
    const items = this.items;
    switch (this.kind) {
      case K_STRING:
        return { type: 'string', value: this.strValue };
      case K_LIST:
        return { type: 'list', items: items as Buffer[] };
      case K_SET:
        return { type: 'set', members: items as Buffer[] };
      case K_ZSET:
        return { type: 'zset', entries: items as Array<{ member: Buffer; score: number }> };
      case K_HASH:
        return { type: 'hash', entries: items as Array<{ field: Buffer; value: Buffer; expireAtMs: number | null }> };
      case K_STREAM: {
        const entries = items as StreamEntry[];
        if (!last || !this.smeta) return { type: 'stream', stream: { entries, length: 0, lastId: { ms: 0n, seq: 0n }, groups: [] } };
        const m = this.smeta;
        const stream: StreamValue = { entries, length: m.length, lastId: m.lastId, groups: m.groups };
        if (m.firstId) stream.firstId = m.firstId;
        if (m.maxDeletedId) stream.maxDeletedId = m.maxDeletedId;
        if (m.entriesAdded !== undefined) stream.entriesAdded = m.entriesAdded;
        return { type: 'stream', stream };
      }
      default:
        return { type: 'module', moduleId: this.moduleId };
    }
  }

  protected resetValue(): void {
    this.lzf = null;
    this.smeta = null;
    this.sGroup = null;
    this.sConsumer = null;
    this.sPel = null;
  }
}
