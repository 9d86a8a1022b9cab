/**
 * Chunk building: the next transaction of a run of prepared events (parts), as the writer would
 * send it — which events are duplicates or of an older snapshot epoch, the epoch flushes and marker
 * sets they call for, each event's ops (a snapshot key's RESTORE or typed writes), where the size
 * bounds cut it, and each stream's position before and after it.
 *
 * Why apart from the sending (transaction-runner.ts): building does no I/O and depends only on
 * what the writer knows (committed positions, epoch markers), so a standalone writer builds the
 * next transaction while the destination runs the current one, and a cluster writer builds each
 * slot's the same way. What it reads of the writer comes through `ChunkContext`.
 */
import type { SnapshotKey, SourcePosition, ChangeEvent } from '../events/model.js';
import { ReplistreamError } from '../common/errors.js';
import { keySlot } from './connection.js';
import { RestoreCommand } from './resp-codec.js';
import { requirePayloadRdbVersion } from '../replication/dump-payload.js';
import { dumpPayloadValue } from '../replication/dump-value.js';
import { type WriterPosition, compareWriterPositions, formatPosition } from './position.js';
import {
  type Arg,
  ENTER_EPOCH_SLOT_LUA,
  EventOrigin,
  type Op,
  type OpOrigin,
  type TranslatedItem,
  argsBytes,
  commandName,
  flushOps,
  printableKey,
  rdbVersionName,
  typedWriteCommands,
} from './translate.js';
import type { DomainState } from './writer-state.js';
import type { DestinationInfo, ResolvedWriterOptions } from './writer-types.js';

/** What building a chunk reads of the writer; one object made at start, not one per chunk. */
export interface ChunkContext {
  /** A cluster destination: epochs are entered per slot, by script; snapshot keys go to their slot. */
  readonly cluster: boolean;
  readonly opts: Pick<
    ResolvedWriterOptions,
    'preservedPrefixes' | 'maxOpsPerTransaction' | 'maxBytesPerTransaction' | 'writeMode' | 'allowRestoreFallback' | 'now' | 'logger'
  >;
  readonly destination: DestinationInfo;
  /** Epoch marker values the writer knows (null: absent), by marker key. */
  readonly markers: ReadonlyMap<string, number | null>;
}

/** One event made ready to build transactions from. */
export interface Prepared {
  index: number;
  event: ChangeEvent;
  /** Mapped destination db; undefined when the event's db is not synchronized. */
  db: number | undefined;
  items: readonly TranslatedItem[];
  dropped: readonly string[];
  /** A plain command's op (`plainOp`, `encodedPlainOp`), standalone only; `items` is then empty. */
  op: Op | null;
}

/**
 * What one event contributes to one domain (the standalone server, or one slot). A standalone
 * destination's part is its own `prep` (one object per event: at tens of thousands of events per
 * second, each object that lives until its transaction is answered is copied by the
 * young-generation collector).
 */
export interface Part {
  /** The stream the event belongs to (a transaction may carry several streams' events). */
  stream: string;
  prep: Prepared;
  pos: WriterPosition;
  /** The ops of a translated event, or of the slot of a cluster part. */
  ops: readonly Op[];
  /** A plain event's only op (standalone), else null. */
  op: Op | null;
  snapshotKey: SnapshotKey | null;
  /** Epoch marker governing the part; null: the event is not subject to epochs here. */
  markerKey: string | null;
  markerScope: number;
  /** Destination db of the part (standalone), for epoch flushes. */
  db: number | undefined;
}

/** One stream's share of a chunk: its position before (`state.stored`) and after the chunk. */
export interface ChunkStream {
  state: DomainState;
  posToStore: WriterPosition | null;
  positionChanged: boolean;
}

/** One transaction: its ops, the keys it checks and sets, and what it does to each of its events. */
export interface Chunk {
  /** Index of its first part. */
  start: number;
  end: number;
  ops: Op[];
  /** Every stream with events in the chunk, in order of first appearance. */
  streams: Map<string, ChunkStream>;
  markers: Map<string, number | null>;
  markerSets: Map<string, number>;
  watch: Set<string>;
  applied: number[];
  duplicates: number[];
  stale: number[];
  unmapped: number;
  heartbeatMs: number | null;
  fallbacks: number;
  epochFlushes: number;
  /** Some stream's position moves (the transaction is worth sending even without ops). */
  positionChanged: boolean;
}

/**
 * A snapshot key's RESTORE as an op, encoded from its template (resp-codec.ts), and its own origin:
 * one object per key of a full sync, its argument list made only when asked for (errors).
 */
class RestoreOp extends RestoreCommand implements Op, OpOrigin {
  readonly name = 'RESTORE';

  constructor(
    key: Buffer,
    ttl: string,
    payload: Buffer,
    absTtl: boolean,
    readonly db: number,
    readonly slot: number | null,
    readonly eventIndex: number,
  ) {
    super(key, ttl, payload, absTtl);
  }

  get restore(): RestoreCommand {
    return this;
  }

  get origin(): OpOrigin {
    return this;
  }

  get id(): string {
    return `${this.eventIndex}/k0`;
  }

  get args(): Arg[] {
    return this.argList();
  }
}

function cloneDomain(d: DomainState): DomainState {
  return { pos: d.pos, stored: d.stored };
}

/**
 * The transaction of `parts` from `from` on, up to the size bounds. `committedOf` gives each
 * stream's committed state, `markersBefore` epoch markers set by a transaction not yet committed
 * (they take precedence over the writer's known ones).
 */
export function buildChunk(
  ctx: ChunkContext,
  parts: Part[],
  from: number,
  committedOf: (stream: string) => DomainState,
  skipIds: Set<string>,
  markersBefore: Map<string, number | null> | null = null,
): Chunk {
  const cluster = ctx.cluster;
  const chunk: Chunk = {
    start: from,
    end: from,
    ops: [],
    streams: new Map(),
    markers: new Map(),
    markerSets: new Map(),
    watch: new Set(),
    applied: [],
    duplicates: [],
    stale: [],
    unmapped: 0,
    heartbeatMs: null,
    fallbacks: 0,
    epochFlushes: 0,
    positionChanged: false,
  };
  const shareOf = (stream: string): ChunkStream => {
    let cs = chunk.streams.get(stream);
    if (!cs) chunk.streams.set(stream, (cs = { state: cloneDomain(committedOf(stream)), posToStore: null, positionChanged: false }));
    return cs;
  };
  const marker = (k: string): number | null =>
    chunk.markers.has(k) ? chunk.markers.get(k)! : markersBefore?.has(k) ? markersBefore.get(k)! : (ctx.markers.get(k) ?? null);
  let bytes = 0;
  let i = from;
  // an event's ops, gathered before they join the chunk: one array for all events, its first
  // `n` entries in use (emptied with `length = 0`, its storage was dropped and made again for
  // every event)
  const scratch: Op[] = [];
  let n = 0;
  const add = (op: Op): void => {
    scratch[n++] = op;
  };
  const skipping = skipIds.size > 0;
  for (; i < parts.length; i++) {
    const part = parts[i];
    const ev = part.prep.event;
    const stream = part.stream;
    const share = shareOf(stream);
    const state = share.state;
    if (state.pos && compareWriterPositions(part.pos, state.pos) <= 0) {
      chunk.duplicates.push(part.prep.index);
      continue;
    }
    n = 0;
    if (part.markerKey) {
      chunk.watch.add(part.markerKey);
      const m = marker(part.markerKey);
      if (m !== null && ev.pos.epoch < m) {
        chunk.stale.push(part.prep.index);
        state.pos = part.pos;
        share.positionChanged = chunk.positionChanged = true;
        continue;
      }
      if (m === null || ev.pos.epoch > m) {
        if (cluster) {
          add({
            args: ['EVAL', ENTER_EPOCH_SLOT_LUA, '1', part.markerKey, String(ev.pos.epoch), String(part.markerScope), ...ctx.opts.preservedPrefixes],
            db: null,
            slot: part.markerScope,
            origin: null,
          });
          if (m !== null) chunk.epochFlushes++;
        } else {
          const flush = m !== null || (state.pos !== null && state.pos.epoch < ev.pos.epoch);
          if (flush) {
            for (const op of flushOps(part.markerScope, { preservedPrefixes: ctx.opts.preservedPrefixes }, null)) add(op);
            chunk.epochFlushes++;
            ctx.opts.logger.info({ stream, db: part.markerScope, epoch: ev.pos.epoch, previous: m }, 'new snapshot epoch: emptying the destination db');
          }
          chunk.markerSets.set(part.markerKey, ev.pos.epoch);
        }
        chunk.markers.set(part.markerKey, ev.pos.epoch);
      }
    }
    switch (ev.kind) {
      case 'snapshot-begin':
        checkSnapshotVersion(ctx, stream, ev.rdbVersion, ev.sourceVersion, ev.pos);
        break;
      case 'snapshot-end':
        ctx.opts.logger.debug({ stream, db: ev.db, keys: ev.keyCount }, 'snapshot end');
        break;
      case 'slot-handoff':
        break; // only its position (the applier turns it into a position-only heartbeat)
      case 'heartbeat':
        // timeMs 0: a position-only event (the applier moving a stream past a barrier)
        if (ev.timeMs > 0) chunk.heartbeatMs = Math.max(chunk.heartbeatMs ?? 0, ev.timeMs);
        break;
      case 'snapshot-key': {
        const r = snapshotKeyOps(ctx, stream, part);
        for (const op of r.ops) add(op);
        chunk.fallbacks += r.fallback ? 1 : 0;
        break;
      }
      case 'command': {
        if (part.op !== null) add(part.op);
        for (const op of part.ops) add(op);
        chunk.unmapped += part.prep.dropped.length;
        break;
      }
    }
    state.pos = part.pos;
    share.positionChanged = chunk.positionChanged = true;
    chunk.applied.push(part.prep.index);
    for (let k = 0; k < n; k++) {
      const op = scratch[k];
      if (skipping && op.origin && skipIds.has(op.origin.id)) continue; // refused earlier and skipped (on-command-error skip)
      chunk.ops.push(op);
      bytes += op.encoded ? op.encoded.respEnd - op.encoded.respStart : op.restore ? op.restore.encodedLength() : argsBytes(op.args);
    }
    if (chunk.ops.length >= ctx.opts.maxOpsPerTransaction || bytes >= ctx.opts.maxBytesPerTransaction) {
      i++;
      break;
    }
  }
  chunk.end = i;
  for (const share of chunk.streams.values()) share.posToStore = share.state.pos;
  return chunk;
}

function checkSnapshotVersion(ctx: ChunkContext, stream: string, rdbVersion: number, sourceVersion: string | null, pos: SourcePosition): void {
  const dest = ctx.destination;
  if (ctx.opts.writeMode !== 'restore' || rdbVersion <= dest.rdbVersion) return;
  if (ctx.opts.allowRestoreFallback) {
    ctx.opts.logger.warn(
      { stream, sourceRdb: rdbVersion, destinationRdb: dest.rdbVersion },
      `snapshot RDB version ${rdbVersion} is newer than the destination's ${dest.rdbVersion}: keys will be written with typed commands`,
    );
    return;
  }
  throw versionError(ctx, stream, rdbVersion, sourceVersion, pos, null);
}

function versionError(ctx: ChunkContext, stream: string, payloadVersion: number, sourceVersion: string | null, pos: SourcePosition, key: Buffer | null): ReplistreamError {
  const dest = ctx.destination;
  const what = key ? `the RESTORE payload of key ${printableKey(key)}` : 'the snapshot';
  return new ReplistreamError(
    'DESTINATION',
    `${what} at ${formatPosition(pos)} (stream ${stream}) has RDB version ${rdbVersionName(payloadVersion)}${sourceVersion ? ` from source Redis ${sourceVersion}` : ''}, ` +
      `but the destination (Redis ${dest.version}) reads RDB versions up to ${rdbVersionName(dest.rdbVersion)}: ` +
      'set write-mode to commands (typed writes work with any version), or enable restore-fallback',
    { setting: 'write-mode', details: { stream, position: pos, payloadRdbVersion: payloadVersion, destinationRdbVersion: dest.rdbVersion, destinationVersion: dest.version } },
  );
}

/**
 * Ops for one snapshot key: RESTORE of its payload, or typed writes of its value (the first part
 * of a big key replaces it, `append` parts add to it). A key already expired is deleted.
 */
function snapshotKeyOps(ctx: ChunkContext, stream: string, part: Part): { ops: Op[]; fallback: boolean } {
  const ev = part.snapshotKey!;
  const db = part.db!;
  const slot = ctx.cluster ? keySlot(ev.key) : null;
  const index = part.prep.index;
  const mk = (cmds: Arg[][]): Op[] => cmds.map((args, j) => ({ args, db, slot, origin: new EventOrigin(index, `k${j}`, commandName(args)) }));
  const dest = ctx.destination;
  const append = ev.append === true;
  if (ev.piece) throw new ReplistreamError('INTERNAL', `snapshot key ${printableKey(ev.key)} at ${formatPosition(ev.pos)} reached the writer as a piece`);
  if (ev.expireAtMs !== null && ev.expireAtMs <= ctx.opts.now()) return { ops: mk([['DEL', ev.key]]), fallback: false };
  let fallback = false;
  if (ev.payload && !append && (ctx.opts.writeMode === 'restore' || !ev.value)) {
    const v = requirePayloadRdbVersion(ev.payload);
    if (v <= dest.rdbVersion) {
      // the common case of a full sync, once per key: built directly, without the helpers above
      const ttl = dest.features.absTtl ? (ev.expireAtMs === null ? '0' : String(ev.expireAtMs)) : String(ev.expireAtMs === null ? 0 : Math.max(1, ev.expireAtMs - ctx.opts.now()));
      return { ops: [new RestoreOp(ev.key, ttl, ev.payload, dest.features.absTtl, db, slot, index)], fallback: false };
    }
    // write-mode commands asked for typed writes anyway: a payload-only key is one of them
    if (!ctx.opts.allowRestoreFallback && ctx.opts.writeMode === 'restore') throw versionError(ctx, stream, v, null, ev.pos, ev.key);
    fallback = true;
  }
  // A key sent with its payload only (snapshot-format restore, the default) and written with
  // typed commands (a payload too new for the destination): its value is read from the payload.
  const value = ev.value ?? (ev.payload && !append ? dumpPayloadValue(ev.payload) : null);
  if (!value) {
    throw new ReplistreamError('PROTOCOL', `snapshot key ${printableKey(ev.key)} at ${formatPosition(ev.pos)} has neither a usable payload nor a typed value`);
  }
  if (value.type === 'module') {
    throw new ReplistreamError(
      'DESTINATION',
      `key ${printableKey(ev.key)} at ${formatPosition(ev.pos)} holds a module value (${value.moduleId}), which only RESTORE can write, and the capture sent no payload for it (too big for one payload, or a payload-less capture)`,
      { setting: 'write-mode' },
    );
  }
  return { ops: mk(typedWriteCommands(ev.key, value, ev.expireAtMs, !append, dest.features)), fallback };
}
