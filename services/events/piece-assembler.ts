/**
 * Reassembly: the whole event rebuilt from its pieces (`assemblePieces`, and `PieceAssembler`, one
 * per partition, fed in offset order), the inverse of split-event.ts.
 */
import { ReplistreamError } from '../common/errors.js';
import { CommandSeries } from './command-series.js';
import type { ChangeEvent, CommandEvent, EventPiece, SnapshotKey, SourcePosition, TypedValue } from './model.js';
import { joinBufferLists } from './slicing.js';

function pieceOf(e: ChangeEvent): EventPiece | null {
  return e.kind === 'snapshot-key' || e.kind === 'command' ? e.piece : null;
}

/**
 * Position of the whole event a piece belongs to (its first piece's): a command's piece i has
 * `seq` + i, a snapshot key's pieces share the key's position.
 */
export function seriesPosition(piece: ChangeEvent, index: number): SourcePosition {
  return piece.kind === 'command' ? { ...piece.pos, seq: piece.pos.seq - index } : piece.pos;
}

function sameSeries(first: ChangeEvent, e: ChangeEvent, index: number): boolean {
  if (first.kind !== e.kind || first.db !== e.db || first.pos.epoch !== e.pos.epoch || first.pos.offset !== e.pos.offset) return false;
  if (first.kind === 'snapshot-key') return e.pos.seq === first.pos.seq && (e as SnapshotKey).key.equals(first.key);
  return e.pos.seq === first.pos.seq + index;
}

function mergeValue(acc: TypedValue, next: TypedValue, continued: boolean): void {
  if (acc.type !== next.type) throw new ReplistreamError('PROTOCOL', `pieces of one key disagree on its type (${acc.type} then ${next.type})`);
  switch (acc.type) {
    case 'string':
      acc.value = Buffer.concat([acc.value, (next as typeof acc).value]);
      return;
    case 'module':
      return;
    case 'list':
    case 'set': {
      const a = acc.type === 'list' ? acc.items : acc.members;
      const n = next.type === 'list' ? next.items : (next as { members: Buffer[] }).members;
      let i = 0;
      if (continued && n.length && a.length) a[a.length - 1] = Buffer.concat([a[a.length - 1], n[i++]]);
      for (; i < n.length; i++) a.push(n[i]);
      return;
    }
    case 'zset': {
      const n = (next as typeof acc).entries;
      let i = 0;
      if (continued && n.length && acc.entries.length) {
        const last = acc.entries[acc.entries.length - 1];
        acc.entries[acc.entries.length - 1] = { member: Buffer.concat([last.member, n[0].member]), score: n[0].score };
        i = 1;
      }
      for (; i < n.length; i++) acc.entries.push(n[i]);
      return;
    }
    case 'hash': {
      const n = (next as typeof acc).entries;
      let i = 0;
      if (continued && n.length && acc.entries.length) {
        const last = acc.entries[acc.entries.length - 1];
        acc.entries[acc.entries.length - 1] = {
          field: Buffer.concat([last.field, n[0].field]),
          value: Buffer.concat([last.value, n[0].value]),
          expireAtMs: n[0].expireAtMs,
        };
        i = 1;
      }
      for (; i < n.length; i++) acc.entries.push(n[i]);
      return;
    }
    case 'stream': {
      const a = acc.stream;
      const n = (next as typeof acc).stream;
      let i = 0;
      if (continued && n.entries.length && a.entries.length) {
        const last = a.entries[a.entries.length - 1];
        const fields = [...last.fields];
        joinBufferLists(fields, n.entries[0].fields);
        a.entries[a.entries.length - 1] = { id: last.id, fields };
        i = 1;
      }
      for (; i < n.entries.length; i++) a.entries.push(n.entries[i]);
      for (const g of n.groups) {
        const have = a.groups.find((x) => x.name.equals(g.name));
        if (!have) {
          a.groups.push({ ...g, pending: [...g.pending], consumers: g.consumers.map((c) => ({ ...c, pending: [...c.pending] })) });
          continue;
        }
        have.pending.push(...g.pending);
        for (const c of g.consumers) {
          const hc = have.consumers.find((x) => x.name.equals(c.name));
          if (hc) hc.pending.push(...c.pending);
          else have.consumers.push({ ...c, pending: [...c.pending] });
        }
      }
      return;
    }
  }
}

/** A copy of a typed value whose element arrays (and stream groups) can be appended to. */
export function cloneValue(v: TypedValue): TypedValue {
  switch (v.type) {
    case 'string':
    case 'module':
      return { ...v };
    case 'list':
      return { type: 'list', items: [...v.items] };
    case 'set':
      return { type: 'set', members: [...v.members] };
    case 'zset':
      return { type: 'zset', entries: [...v.entries] };
    case 'hash':
      return { type: 'hash', entries: [...v.entries] };
    case 'stream':
      return {
        type: 'stream',
        stream: {
          ...v.stream,
          entries: [...v.stream.entries],
          groups: v.stream.groups.map((g) => ({ ...g, pending: [...g.pending], consumers: g.consumers.map((c) => ({ ...c, pending: [...c.pending] })) })),
        },
      };
  }
}

/** The whole event rebuilt from all its pieces, in index order (see `splitForRecordLimit`). */
export function assemblePieces(pieces: ChangeEvent[]): ChangeEvent {
  const first = pieces[0];
  if (!first) throw new ReplistreamError('INTERNAL', 'assemblePieces: no pieces');
  pieces.forEach((p, i) => {
    const pc = pieceOf(p);
    if (!pc || pc.index !== i || pc.last !== (i === pieces.length - 1) || !sameSeries(first, p, i)) {
      throw new ReplistreamError('PROTOCOL', `pieces of an event are incomplete or out of order (piece ${i})`, { details: { pos: p.pos } });
    }
  });
  if (first.kind === 'command') {
    const series = new CommandSeries(first);
    for (let i = 1; i < pieces.length; i++) series.add(pieces[i] as CommandEvent);
    return series.whole();
  }
  const keys = pieces as SnapshotKey[];
  const payloads = keys.filter((p) => p.payload !== null).map((p) => p.payload as Buffer);
  let value: TypedValue | null = null;
  for (const p of keys) {
    if (p.value === null) continue;
    if (value === null) value = cloneValue(p.value);
    else mergeValue(value, p.value, p.piece!.continued === true);
  }
  const k = first as SnapshotKey;
  return { ...k, payload: payloads.length ? Buffer.concat(payloads) : null, value, piece: null };
}

export interface PieceAssemblerOptions {
  /** Called when pieces are discarded: a series cut short (capture restarted mid-event) or one read from its middle. */
  onDiscard?: (reason: string, pieces: number, pos: ChangeEvent['pos']) => void;
}

/**
 * Rebuilds split events for an applier. Use one per topic-partition and feed it events in offset
 * order: `push` returns the event itself when it is whole, the rebuilt event when its last piece
 * arrives, or null while pieces are pending.
 *
 * A series that does not complete (another event or a new piece 0 arrives first: the capture
 * crashed mid-event and re-sent it whole later) is discarded; so are pieces read without their
 * beginning (a consumer started in the middle of a series). Both are reported to `onDiscard`.
 */
export class PieceAssembler {
  /** Pieces of a snapshot key series, kept until its last piece. */
  private parts: ChangeEvent[] = [];
  /** A command series, rebuilt as its pieces come (`CommandSeries`). */
  private series: CommandSeries | null = null;
  private readonly onDiscard?: PieceAssemblerOptions['onDiscard'];
  discarded = 0;

  constructor(options: PieceAssemblerOptions = {}) {
    this.onDiscard = options.onDiscard;
  }

  /** Pieces held, waiting for the rest of their event. */
  get pending(): number {
    return this.series ? this.series.count : this.parts.length;
  }

  push(event: ChangeEvent): ChangeEvent | null {
    const piece = pieceOf(event);
    if (!piece) {
      this.abandon('series interrupted by another event');
      return event;
    }
    const held = this.pending;
    if (piece.index === 0) {
      this.abandon('series restarted from its first piece');
      if (event.kind === 'command') this.series = new CommandSeries(event);
      else this.parts = [event];
    } else if (held === 0) {
      this.discard('piece without its beginning', 1, event.pos);
      return null;
    } else if (piece.index !== held || !sameSeries(this.series ? this.series.first : this.parts[0], event, piece.index)) {
      this.abandon('series interrupted by another series');
      this.discard('piece without its beginning', 1, event.pos);
      return null;
    } else if (this.series) {
      this.series.add(event as CommandEvent);
    } else {
      this.parts.push(event);
    }
    if (!piece.last) return null;
    if (this.series) {
      const whole = this.series.whole();
      this.series = null;
      return whole;
    }
    const whole = assemblePieces(this.parts);
    this.parts = [];
    return whole;
  }

  /** Forget pending pieces (after a rebalance or a seek). */
  reset(): void {
    this.parts = [];
    this.series = null;
  }

  private abandon(reason: string): void {
    const n = this.pending;
    if (n === 0) return;
    this.discard(reason, n, this.series ? this.series.first.pos : this.parts[0].pos);
    this.parts = [];
    this.series = null;
  }

  private discard(reason: string, n: number, pos: ChangeEvent['pos']): void {
    this.discarded += n;
    this.onDiscard?.(reason, n, pos);
  }
}
