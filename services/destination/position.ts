/**
 * Where the writer keeps its progress in the destination, and how.
 *
 * Keys (all under `positionKeyPrefix`, e.g. `replistream:pos:<group>`):
 * - standalone destination, in the writer's `positionDb` (default 0):
 *     `<prefix>:<stream>`            the stream's position (last event whose effects are applied)
 *     `<prefix>:@epoch:db<N>`         epoch marker of destination db N (the snapshot epoch it holds)
 *     `<prefix>:@error:<stream>`      set when a runtime error stopped the stream (see transaction-runner.ts)
 * - cluster destination (db 0), one per slot `s`, `{t}` a hash tag of slot s:
 *     `<prefix>:<stream>:{t}`         the stream's position for the writes of slot s
 *     `<prefix>:@epoch:{t}`           epoch marker of slot s
 *     `<prefix>:@error:<stream>:{t}`  (t = the stream's home slot)
 *
 * Positions are stored as JSON ({"epoch","offset","seq","replid"} plus "part" when non-zero), so
 * Lua scripts can compare them with cjson and a human can read them with GET. A position may
 * also carry "resume": an opaque token its reader attached to the event (`setResumeToken`; the
 * applier's: the Kafka offset after the record the event ends), written in the same transaction
 * as the event's effects, so it is exactly as true as the position.
 */
import type { SourcePosition } from '../events/model.js';
import { ReplistreamError } from '../common/errors.js';
import { keySlot, slotTag } from './connection.js';

/**
 * A position inside the writer: the event's SourcePosition plus `part`, which orders the pieces
 * of one event that a cluster destination applies in separate steps (a unit holding FLUSHALL
 * between other writes). 0 for everything else.
 */
export interface WriterPosition extends SourcePosition {
  part: number;
  /** The resume token stored with the position (read back from the destination only). */
  resume?: string;
}

/**
 * Tokens attached to event positions by whoever reads the events (one per record, not per event:
 * a WeakMap, so the positions keep their shape and the tokens go with them).
 */
const resumeTokens = new WeakMap<SourcePosition, string>();

/** Attach `token` to `pos`: stored with it whenever it is the position a transaction records. */
export function setResumeToken(pos: SourcePosition, token: string): void {
  resumeTokens.set(pos, token);
}

/**
 * `p` as a writer position. For part 0 of an event it is the event's own position object
 * (read-only everywhere), `part` absent and read as 0: one object less per event.
 */
export function withPart(p: SourcePosition, part = 0): WriterPosition {
  if (part === 0 && !(p as Partial<WriterPosition>).part) return p as WriterPosition;
  return { epoch: p.epoch, offset: p.offset, seq: p.seq, replid: p.replid, part };
}

export function compareWriterPositions(a: WriterPosition, b: WriterPosition): number {
  return a.epoch - b.epoch || a.offset - b.offset || a.seq - b.seq || (a.part || 0) - (b.part || 0);
}

export function encodePosition(p: WriterPosition | SourcePosition): string {
  const o: Record<string, unknown> = { epoch: p.epoch, offset: p.offset, seq: p.seq, replid: p.replid };
  const part = (p as WriterPosition).part;
  if (part) o.part = part;
  const resume = resumeTokens.get(p);
  if (resume !== undefined) o.resume = resume;
  return JSON.stringify(o);
}

export function decodePosition(s: string | Buffer | null | undefined, key = 'position key'): WriterPosition | null {
  if (s === null || s === undefined) return null;
  try {
    const o = JSON.parse(s.toString()) as Partial<WriterPosition>;
    if (typeof o.epoch !== 'number' || typeof o.offset !== 'number' || typeof o.seq !== 'number') throw new Error('missing fields');
    const p: WriterPosition = { epoch: o.epoch, offset: o.offset, seq: o.seq, replid: String(o.replid ?? ''), part: typeof o.part === 'number' ? o.part : 0 };
    if (typeof o.resume === 'string') p.resume = o.resume;
    return p;
  } catch (err) {
    throw new ReplistreamError('DESTINATION', `${key} holds ${JSON.stringify(s.toString().slice(0, 80))}, not a replistream position`, { cause: err });
  }
}

export function formatPosition(p: SourcePosition | null): string {
  if (!p) return '(start)';
  const part = (p as WriterPosition).part;
  return `epoch ${p.epoch} offset ${p.offset} seq ${p.seq}${part ? ` part ${part}` : ''}`;
}

/** Key names; `cluster` decides whether they carry a slot hash tag. */
export class PositionKeys {
  constructor(
    readonly prefix: string,
    readonly cluster: boolean,
  ) {
    if (cluster && /[{}]/.test(prefix)) {
      throw new ReplistreamError('CONFIG', `position key prefix ${JSON.stringify(prefix)} must not contain { or } on a cluster destination`, { setting: 'group' });
    }
  }

  checkStream(stream: string): void {
    if (this.cluster && /[{}]/.test(stream)) {
      throw new ReplistreamError('CONFIG', `stream name ${JSON.stringify(stream)} must not contain { or } on a cluster destination`);
    }
  }

  /** The slot whose position key covers keyless events (heartbeats, PUBLISH, snapshot markers). */
  homeSlot(stream: string): number {
    return this.cluster ? keySlot(stream) : 0;
  }

  position(stream: string, slot = 0): string {
    return this.cluster ? `${this.prefix}:${stream}:{${slotTag(slot)}}` : `${this.prefix}:${stream}`;
  }

  /** Epoch marker: per destination db (standalone) or per slot (cluster). */
  marker(dbOrSlot: number): string {
    return this.cluster ? `${this.prefix}:@epoch:{${slotTag(dbOrSlot)}}` : `${this.prefix}:@epoch:db${dbOrSlot}`;
  }

  error(stream: string): string {
    return this.cluster ? `${this.prefix}:@error:${stream}:{${slotTag(this.homeSlot(stream))}}` : `${this.prefix}:@error:${stream}`;
  }
}
