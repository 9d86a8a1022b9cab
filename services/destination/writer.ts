/**
 * The destination writer: where a change event becomes a destination write.
 *
 * It knows nothing of Kafka. An applier hands it batches of events of one *stream* (e.g.
 * `topic:partition`), in order, or one sequence mixing several streams (`applyStreams`); the
 * writer applies them exactly once and keeps each stream's progress in the destination itself, in
 * the same MULTI/EXEC as the writes it covers (a transaction then sets every position it covers).
 *
 * ## Exactly once
 * - Standalone destination: every batch becomes one or more transactions (chunks of at most
 *   `maxOpsPerTransaction` commands, cut at event boundaries so a source unit is never split):
 *     SELECT <positionDb>; WATCH <position keys> <epoch markers>; MGET <position keys>; MGET <markers>
 *     — then, if they hold what this writer believes —
 *     MULTI; [SELECT <db>; writes …]…; SELECT <positionDb>; SET <prefix>:<stream> <position>…; EXEC
 *   a compare-and-set: the stored position is read once per stream and then kept in memory (events
 *   at or below it are skipped), and every transaction checks it under WATCH, so a second writer
 *   of the same stream (a zombie after a consumer-group rebalance) or another stream's epoch change
 *   makes it abort (a retriable error, or a rebuild) instead of applying twice. Two round trips
 *   per transaction of up to thousands of commands.
 * - Cluster destination: writes are grouped by slot; each slot gets its own transaction on the
 *   master that serves it, with a per-(stream, slot) position key carrying a hash tag of that slot
 *   (`<prefix>:<stream>:{tag}`), and events are skipped per slot. Slot transactions run
 *   concurrently (at most `maxInFlight`). Keyless events (heartbeats, PUBLISH, snapshot markers) use
 *   the stream's home slot (the slot of the stream name).
 * - Transactions are sent once: connections never re-send commands in flight (see connection.ts).
 *   When a transaction's outcome is unknown (connection lost), the writer forgets what it knew of
 *   the stream and throws a retriable CONNECTION error; the next batch re-reads the positions, so a
 *   re-delivery applies exactly what did not land.
 * - Standalone transactions are not pipelined behind one another: if one aborted while the next
 *   committed, the committed position would hide the aborted events forever. Throughput comes from
 *   the size of each transaction (thousands of commands in one round trip), and from building and
 *   encoding the next transaction while the destination runs the current one (`buildAhead`): it
 *   is sent only once the current one committed, and thrown away otherwise. Across calls too: a
 *   caller may make the next call before the current one returns (`unlessFailedSince` has it
 *   refused if the current one fails), and that call's first transaction is built while the
 *   destination runs the current call's last one (`buildNextCallAhead`).
 *
 * ## Where the position keys live
 * In `positionDb` (default 0) of a standalone destination, in db 0 of a cluster, under
 * `positionKeyPrefix`. FLUSHDB/FLUSHALL/SWAPDB coming from the source, and the flush at a new
 * snapshot epoch, keep every key under `preservedPrefixes` (default: `replistream:` and the
 * position prefix): they are applied as small Lua scripts that set these keys aside (DUMP) and put
 * them back (RESTORE) around FLUSHDB/SWAPDB, or, on a cluster, that delete a slot's keys one by one
 * except those. Precheck and verify ignore the same prefixes.
 *
 * ## Errors inside EXEC
 * - A command refused while queued (unknown command, wrong arity, ACL) aborts the whole transaction
 *   (EXECABORT): nothing is applied, the position does not move. With on-command-error `skip` the
 *   command is dropped, counted in `stats.skipped[NAME]` and the transaction re-sent; with `fail` a
 *   DESTINATION error names the event's position and the command.
 * - A command failing at run time (e.g. WRONGTYPE against a key the destination already had) does
 *   not roll back the others: the transaction, its position included, is committed. The position is
 *   therefore consistent with what was applied ("everything up to here was applied, except the
 *   commands reported"). With `skip` it is counted; with `fail` the writer records the failure in
 *   `<prefix>:@error:<stream>` and throws; a restarted writer refuses that stream until the key is
 *   deleted (or on-command-error is `skip`), so the divergence is never forgotten silently.
 * - Transient refusals (OOM, LOADING, BUSY, READONLY, TRYAGAIN, CLUSTERDOWN, MASTERDOWN …) throw a
 *   retriable DESTINATION error; MOVED/ASK refresh the slot map and retry.
 *
 * ## Snapshot epochs (G6)
 * Every destination db (standalone) or slot (cluster) has an epoch marker. The first event of an
 * epoch E greater than the marker — a snapshot-begin or anything else, whichever stream sees it
 * first — empties that db (or slot) in the same transaction that sets the marker to E, when the
 * marker showed data of an earlier epoch; a destination never written before is not emptied (the
 * conflict mode decides about pre-existing keys). Events of an epoch lower than the marker are
 * skipped: a lagging stream cannot write stale keys after the flush (its transactions WATCH the
 * marker). On a cluster, a snapshot-begin also sweeps all 16384 slots (slots the new snapshot never
 * writes must be emptied too). User keys of dbs outside the db map are never touched.
 *
 * ## Big keys
 * - The writer takes whole events only. Record pieces (`piece` set: one event split to fit Kafka
 *   records, services/events/split.ts) are rebuilt in one place, the applier's stream queue
 *   (services/applier/stream-queue.ts), which also owns the rule for a series read without its
 *   beginning and keeps offset commits behind an incomplete series. A second assembler here could
 *   only disagree with that one, so a piece reaching the writer is refused as a programming error.
 * - Keys bigger than the capture's parser bound arrive as several events, the first one whole-key
 *   (DEL, then typed writes), the next ones with `append: true` (typed writes adding elements, no
 *   payload). Each has its own position, so exactly-once holds per part. The TTL is set with every
 *   part (PEXPIREAT is absolute); stream metadata and groups come with the part that carries them.
 *
 * ## Source commands
 * Applied as sent (binary arguments), a unit in one transaction. SELECT/SWAPDB/MOVE/COPY … DB are
 * mapped through the db map (an empty map is the identity); commands for an unmapped db are dropped
 * and counted (`stats.unmappedDb`), MOVE to an unmapped db becomes DEL. FLUSHALL empties every
 * mapped db (every db with the identity map), not the others. `refuseFlush` turns FLUSHDB/FLUSHALL
 * into an error naming the position (nothing of that batch is applied). On a cluster: keyless
 * commands go to the home slot, FLUSHDB/FLUSHALL clear every slot (exactly once per slot, in a
 * script that compares positions), FUNCTION/SCRIPT run on every master, made idempotent (LOAD
 * REPLACE …, at least once), and a command whose keys span slots is split per slot (DEL, MSET …)
 * or emulated slot by slot, each slot exactly once (cross-slot.ts, cross-slot-runner.ts). A unit
 * spanning slots is applied slot by slot (each part atomic and exactly once, the whole not atomic).
 *
 * ## Not in this module
 * Kafka, decoding, cross-partition barriers (the applier hands a unit listed in several partitions
 * over once, inside a sequence of several streams' events that keeps each stream's order:
 * `applyStreams`).
 */
import type { Redis } from 'ioredis';
import type { ChangeEvent, SnapshotKey, SourcePosition } from '../events/model.js';
import { ReplistreamError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import {
  type Topology,
  closeTopology,
  ensureReady,
  info,
  keySlot,
  openTopology,
  parseVersion,
  slotTag,
  topologyMasters,
  versionAtLeast,
} from './connection.js';
import { RespConnection } from './resp-connection.js';
import { commandArgs, RestoreCommand, type RespCommand, type RespSendable } from './resp-codec.js';
import { composeBody, type TransactionBody } from './transaction-body.js';
import { EncodedCommandEvent } from '../events/encoded-command.js';
import { runCrossSlot } from './cross-slot-runner.js';
import type { CrossSlotPlan } from './cross-slot.js';
import { requirePayloadRdbVersion } from '../replication/dump-payload.js';
import { dumpPayloadValue } from '../replication/dump-value.js';
import { PositionKeys, type WriterPosition, compareWriterPositions, decodePosition, encodePosition, formatPosition, withPart } from './position.js';
import {
  type Arg,
  type CommandContext,
  ENTER_EPOCH_SLOT_LUA,
  FLUSH_SLOT_LUA,
  EventOrigin,
  encodedPlainOp,
  KeyTable,
  type Op,
  type OpOrigin,
  type TranslatedItem,
  type TypedWriteFeatures,
  argsBytes,
  commandName,
  flushOps,
  plainOp,
  isAlreadyDoneError,
  printableKey,
  rdbVersionName,
  translateCommands,
  typedWriteCommands,
} from './translate.js';

export type WriterLogger = Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>;

export interface DestinationWriterOptions {
  url: string;
  /** Source db → destination db. Empty map: identity. A source db missing from a non-empty map is not synchronized. */
  dbMap: Map<number, number>;
  writeMode: 'restore' | 'commands';
  allowRestoreFallback: boolean;
  refuseFlush: boolean;
  onUnknownCommand: 'fail' | 'skip';
  /** e.g. `replistream:pos:<group>` */
  positionKeyPrefix: string;
  logger: WriterLogger;
  /** Standalone: the db holding position keys and epoch markers (default 0). */
  positionDb?: number;
  /** Keys that flushes keep and verify/precheck ignore (default `replistream:` and the position prefix). */
  preservedPrefixes?: string[];
  /** Commands per transaction before a new one is started (default 2000). */
  maxOpsPerTransaction?: number;
  /** Bytes of arguments per transaction before a new one is started (default 32 MiB). */
  maxBytesPerTransaction?: number;
  /** Cluster: slot transactions in flight at once (default 32). */
  maxInFlight?: number;
  /** Clock, for expired snapshot keys (tests). */
  now?: () => number;
}

/** Events of one stream, in its order. */
export interface StreamEvents {
  stream: string;
  events: ChangeEvent[];
}

export interface ApplyOptions {
  /** Refuse the call if an earlier one failed after `writeFailures()` returned this. */
  unlessFailedSince?: number;
}

export interface BatchResult {
  /** Events whose effects were written by this call. */
  applied: number;
  /** Events skipped: already applied (duplicates), of an older epoch, or for unsynchronized dbs. */
  skipped: number;
}

export interface WriterStats {
  applied: number;
  duplicates: number;
  stale: number;
  /** Events or commands for source dbs outside the db map. */
  unmappedDb: number;
  /** Commands the destination refused and that were skipped (on-command-error skip), by name. */
  skipped: Record<string, number>;
  transactions: number;
  watchRetries: number;
  /** Round trips spent only on WATCHing and reading positions before a transaction (standalone: only when they were not re-armed by the previous one). */
  positionChecks: number;
  restoreFallbacks: number;
  /** Flushes done when a new snapshot epoch started (G6). */
  epochFlushes: number;
  /**
   * Since when (ms since the epoch) every write or position read has failed (destination
   * unreachable, not answering, refusing for a while); null while writes succeed. The applier
   * retries meanwhile: this is what /status shows of it.
   */
  failingSince: number | null;
  /** The latest failure of a write or position read (null once a write succeeds again). */
  lastError: string | null;
}

export interface DestinationInfo {
  topology: 'standalone' | 'cluster';
  /** redis_version of the (first) master. */
  version: string;
  /** Highest RDB version every master can RESTORE. */
  rdbVersion: number;
  features: TypedWriteFeatures & { absTtl: boolean };
}

// ---------------------------------------------------------------------------------------------

interface DomainState {
  /** Last position applied (memory; ≥ the stored one). */
  pos: WriterPosition | null;
  /** What the position key holds, as far as this writer knows (null: absent). */
  stored: WriterPosition | null;
}

interface StreamState {
  /** Standalone: domain 0. Cluster: one per slot, loaded on first use. */
  domains: Map<number, DomainState>;
  errorChecked: boolean;
}

/** One event made ready to build transactions from. */
interface Prepared {
  index: number;
  event: ChangeEvent;
  /** Mapped destination db; undefined when the event's db is not synchronized. */
  db: number | undefined;
  items: readonly TranslatedItem[];
  dropped: readonly string[];
  /** A plain command's op (`plainOp`, `encodedPlainOp`), standalone only; `items` is then empty. */
  op: Op | null;
}

/** What `prepare` gives for each event (the parts of a `Prepared`, no object made for them). */
type PreparedSink = (index: number, event: ChangeEvent, db: number | undefined, items: readonly TranslatedItem[], dropped: readonly string[], op: Op | null) => void;

/** Shared empty lists of events without commands (a snapshot key is neither translated nor dropped). */
const NO_ITEMS: readonly TranslatedItem[] = Object.freeze([]);
const NO_NAMES: readonly string[] = Object.freeze([]);
const NO_OPS: readonly Op[] = Object.freeze([]);

/**
 * What one event contributes to one domain (the standalone server, or one slot). A standalone
 * destination's part is its own `prep` (one object per event: at tens of thousands of events per
 * second, each object that lives until its transaction is answered is copied by the
 * young-generation collector).
 */
interface Part {
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

/** A call of applyStreams, from when it is made until it has run. */
interface QueuedCall {
  segments: StreamEvents[];
  /** Its parts, once translated (standalone). */
  prepared: PreparedCall | null;
}

interface PreparedCall {
  parts: Part[];
  /** Events of dbs the db map leaves out. */
  unmappedEvents: number;
  markerKeys: Set<string>;
  streamNames: string[];
}

/** A transaction built and encoded before its turn. */
interface BuiltTransaction {
  chunk: Chunk;
  body: TransactionBody;
}

/** The first transaction of a queued call, built before the call's turn. */
type CarriedTransaction = BuiltTransaction & { call: QueuedCall };

/** One stream's share of a chunk: its position before (`state.stored`) and after the chunk. */
interface ChunkStream {
  state: DomainState;
  posToStore: WriterPosition | null;
  positionChanged: boolean;
}

interface Chunk {
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

interface RejectedCommand {
  origin: OpOrigin | null;
  args: Arg[];
  error: Error;
}

type TxOutcome =
  | { kind: 'committed'; runtimeErrors: RejectedCommand[] }
  | { kind: 'watch-aborted' }
  | { kind: 'rejected'; errors: RejectedCommand[] }
  | { kind: 'unknown'; error: Error };

/**
 * A step of a cluster batch that spans every slot (a flush, an epoch sweep, a command run on every
 * master): the slot transactions before it finish first, those after it start after it. Not the
 * applier's cross-partition barrier.
 */
type ClusterWideStep =
  | { t: 'flush'; pos: WriterPosition; prep: Prepared; name: string }
  | { t: 'all-masters'; pos: WriterPosition; prep: Prepared; args: Arg[]; origin: OpOrigin }
  | { t: 'sweep'; pos: WriterPosition; prep: Prepared; epoch: number }
  | { t: 'cross-slot'; pos: WriterPosition; prep: Prepared; plan: CrossSlotPlan; args: Arg[]; origin: OpOrigin };

interface Segment {
  parts: Map<number, Part[]>;
  step: ClusterWideStep | null;
}

const TRANSIENT = /^(LOADING|BUSY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN|OOM|NOREPLICAS|READONLY|MISCONF|NOTREADY|UNBLOCKED)\b/;
const REDIRECT = /^(MOVED|ASK)\b/;
const MAX_RETRIES = 20;
/** Keys kept WATCHed between standalone transactions (positions and markers of recent ones). */
const MAX_ARMED_KEYS = 64;

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

function isReplyError(e: unknown): boolean {
  return e instanceof Error && e.name === 'ReplyError';
}

function cloneDomain(d: DomainState): DomainState {
  return { pos: d.pos, stored: d.stored };
}

function emptyDomain(pos: WriterPosition | null): DomainState {
  return { pos, stored: pos };
}

function samePosition(a: WriterPosition | null, b: WriterPosition | null): boolean {
  return a === null || b === null ? a === b : compareWriterPositions(a, b) === 0;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Sends `commands` on one connection, in one write, and returns one reply per command, an Error
 * for an error reply (`replyError`); EXEC's reply is the array of its commands' replies, errors as
 * Error values, or null when a WATCHed key changed. Standalone transactions go through the writer's own RESP connection
 * (resp-connection.ts); cluster slots through their ioredis client.
 */
function sendBatch(target: Redis | RespConnection, commands: RespSendable[], onConnection?: number): Promise<unknown[]> {
  // no [error, value] pair made per reply: a transaction of 2,000 writes has 4,000 replies
  if (target instanceof RespConnection) return target.send(commands, onConnection);
  return sendPipeline(target, commands as RespCommand[]);
}

/** `sendBatch` on an ioredis client (a cluster slot's master): commands only, no encoded batches. */
async function sendPipeline(target: Redis, commands: RespCommand[]): Promise<unknown[]> {
  const p = target.pipeline();
  const inPipeline = p as unknown as { multi(): unknown; exec(): unknown };
  for (const cmd of commands) {
    const args = commandArgs(cmd);
    const name = String(args[0]);
    // inside a pipeline, multi() and exec() queue MULTI and EXEC; the last exec() sends it all
    if (name === 'MULTI') inPipeline.multi();
    else if (name === 'EXEC') inPipeline.exec();
    else p.call(name, ...args.slice(1));
  }
  return (((await p.exec()) ?? []) as Array<[Error | null, unknown]>).map(([e, v]) => e ?? v);
}

/** The error of a reply of `sendBatch`, null when it is a value. */
function replyError(r: unknown): Error | null {
  return r instanceof Error ? r : null;
}

// The two walks over a transaction's replies (thousands of them) live outside `execTransaction`.
// Why: their loops made that long async function hot, and V8 compiled it with everything it
// inlines two or three times in the first seconds of a load (the largest compile of the applier:
// ~0.25 s of a background thread each time, on two cores the writes compete with); run 70 times a
// second, it needs no optimizing, these small loops do.

/** The first reply that is a connection-level failure (not an error reply of Redis), or null. */
function connectionFailure(replies: readonly unknown[]): Error | null {
  for (let i = 0; i < replies.length; i++) {
    const r = replies[i];
    if (r instanceof Error && !isReplyError(r)) return r;
  }
  return null;
}

/** Indexes of the replies that are errors (none, nearly always). */
function errorIndexes(replies: readonly unknown[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < replies.length; i++) if (replies[i] instanceof Error) out.push(i);
  return out;
}

export class DestinationWriter {
  readonly stats: WriterStats = {
    applied: 0,
    duplicates: 0,
    stale: 0,
    unmappedDb: 0,
    skipped: {},
    transactions: 0,
    watchRetries: 0,
    positionChecks: 0,
    restoreFallbacks: 0,
    epochFlushes: 0,
    failingSince: null,
    lastError: null,
  };

  private readonly opts: Required<Omit<DestinationWriterOptions, 'now'>> & { now: () => number };
  private topo: Topology | null = null;
  /** Standalone: the connection transactions go through (see sendBatch). */
  private txConnection: RespConnection | null = null;
  /**
   * Standalone: the keys WATCHed again (and read) right after the last committed transaction, in
   * the same write, and the values read: the next transaction on that connection whose keys are
   * all among them needs no round trip of its own to WATCH and check them.
   */
  private armed: { connectionId: number; keys: Set<string>; values: Map<string, string | null> } | null = null;
  private dinfo: DestinationInfo | null = null;
  private readonly dbMarkerKeys = new Map<number, string>();
  private keys: PositionKeys | null = null;
  private keyTable: KeyTable | null = null;
  private readonly streams = new Map<string, StreamState>();
  /** Epoch marker values (null: absent), by marker key; shared by all streams. */
  private markers = new Map<string, number | null>();
  private lock: Promise<unknown> = Promise.resolve();
  /** Calls of applyStreams that failed (see writeFailures). */
  private failedApplies = 0;
  /** Calls of applyStreams waiting for the lock, in order. */
  private readonly queuedCalls: QueuedCall[] = [];
  /**
   * The first transaction of the next queued call, built while the destination ran the last one
   * of the call before (see applyStandalone); used only by that call, when it comes next.
   */
  private carried: CarriedTransaction | null = null;
  private starting: Promise<void> | null = null;
  private heartbeatMs: number | null = null;
  private sweptEpoch = -1;
  private databases = 16;
  private closed = false;

  constructor(options: DestinationWriterOptions) {
    const preserved = options.preservedPrefixes ?? ['replistream:'];
    const prefixes = [...preserved];
    if (!prefixes.some((p) => options.positionKeyPrefix.startsWith(p))) prefixes.push(options.positionKeyPrefix);
    this.opts = {
      ...options,
      positionDb: options.positionDb ?? 0,
      preservedPrefixes: prefixes,
      maxOpsPerTransaction: options.maxOpsPerTransaction ?? 2000,
      maxBytesPerTransaction: options.maxBytesPerTransaction ?? 32 * 1024 * 1024,
      maxInFlight: options.maxInFlight ?? 32,
      now: options.now ?? Date.now,
    };
    if (!options.positionKeyPrefix) throw new ReplistreamError('CONFIG', 'positionKeyPrefix must not be empty', { setting: 'group' });
  }

  // -------------------------------------------------------------------------------------------
  // public API

  /** Connects, detects standalone/cluster, learns the destination's version and RDB version. Idempotent. */
  start(): Promise<void> {
    if (!this.starting) {
      this.starting = this.doStart().catch((err) => {
        this.starting = null;
        if (this.topo) closeTopology(this.topo);
        this.topo = null;
        throw err;
      });
    }
    return this.starting;
  }

  /**
   * Whether events of one command are best read already in RESP (events/encoded-command.ts): a
   * standalone destination takes most of them as they are; a cluster one routes each by its keys.
   */
  takesEncodedCommands(): boolean {
    return this.topo?.kind === 'standalone';
  }

  /**
   * The RDB version up to which this writer restores snapshot payloads as they are (restore write
   * mode, once started): the typed values of such keys are never looked at, so a reader may leave
   * them out. null in commands mode or before `start`.
   */
  restoredPayloadsUpTo(): number | null {
    return this.opts.writeMode === 'restore' && this.dinfo ? this.dinfo.rdbVersion : null;
  }

  /**
   * Applies `events` (in stream order) exactly once. Calls are serialized. When it throws, nothing
   * after the last committed transaction is assumed; re-deliver from the applier's last committed
   * offset: duplicates are skipped by position.
   */
  applyBatch(stream: string, events: ChangeEvent[]): Promise<BatchResult> {
    return this.applyStreams([{ stream, events }]);
  }

  /**
   * Applies the events of several streams exactly once, in the order given: `segments` is one
   * sequence (each event keeps its own stream's position), so an applier that holds several
   * streams can hand over a unit listed in several of them together with what precedes and
   * follows it in each. On a standalone destination the whole sequence goes into as few
   * transactions as its size allows, every stream's position set in the transaction that covers
   * its events; a cluster destination applies the segments one after another.
   */
  applyStreams(segments: StreamEvents[], options: ApplyOptions = {}): Promise<BatchResult> {
    const call: QueuedCall = { segments, prepared: null };
    this.queuedCalls.push(call);
    const run = this.lock.then(() => {
      this.queuedCalls.shift();
      const carried = this.carried?.call === call ? this.carried : null;
      this.carried = null;
      if (options.unlessFailedSince !== undefined && options.unlessFailedSince !== this.failedApplies) {
        throw new ReplistreamError('DESTINATION', 'not applied: a batch handed over before it failed (its events are applied again from the destination\'s positions)', { retriable: true });
      }
      return this.applyStreamsNow(call, carried).then(
        (r) => {
          this.stats.failingSince = null;
          this.stats.lastError = null;
          return r;
        },
        (err: unknown) => {
          this.failedApplies++;
          return this.noteFailure(err);
        },
      );
    });
    this.lock = run.catch(() => undefined);
    return run;
  }

  /**
   * Calls of `applyStreams` that failed so far. A caller that hands over a batch before the one
   * before it is written passes the count it read before that one (`unlessFailedSince`): if any
   * failed meanwhile, the later batch is refused, since applying it would leave a gap.
   */
  writeFailures(): number {
    return this.failedApplies;
  }

  /** Keeps a failure in `stats` for the operator (failingSince, lastError), and rethrows it. */
  private noteFailure(err: unknown): never {
    this.stats.failingSince ??= Date.now();
    this.stats.lastError = (err as Error)?.message ?? String(err);
    throw err;
  }

  /**
   * The highest position this writer has applied for `stream` (its stored position when it has
   * not written the stream yet). On a cluster, the position of the stream's home slot.
   */
  appliedPosition(stream: string): Promise<SourcePosition | null> {
    const run = this.lock.then(async () => {
      this.carried = null; // (built for the call that would have come next)
      await this.start();
      const st = this.stream(stream);
      const topo = this.topo!;
      const domain = topo.kind === 'standalone' ? 0 : this.keys!.homeSlot(stream);
      if (!st.domains.has(domain)) {
        if (topo.kind === 'standalone') await this.loadStandalone(stream, st, new Set(), topo.client);
        else await this.loadSlots(stream, st, [domain]);
      }
      return st.domains.get(domain)?.pos ?? null;
    }).catch((err: unknown) => this.noteFailure(err));
    this.lock = run.catch(() => undefined);
    return run;
  }

  /**
   * The positions stored in the destination for `streams` (written by any process), read now in
   * one round trip. Not serialized behind the batch in flight: on a standalone destination
   * transactions use their own connection, and these are plain reads.
   */
  async storedPositions(streams: string[]): Promise<Map<string, SourcePosition | null>> {
    await this.start();
    const keys = this.keys!;
    const out = new Map<string, SourcePosition | null>();
    if (streams.length === 0) return out;
    const topo = this.topo!;
    if (topo.kind === 'standalone') {
      const names = streams.map((s) => keys.position(s));
      const res = (await topo.client.pipeline().select(this.opts.positionDb).mget(...names).exec()) ?? [];
      if (res[1]?.[0]) throw this.connectionOrReplyError(res[1][0], 'reading positions');
      const vals = res[1][1] as Array<string | null>;
      streams.forEach((s, i) => out.set(s, decodePosition(vals[i], names[i])));
      return out;
    }
    await Promise.all(
      streams.map(async (s) => {
        const slot = keys.homeSlot(s);
        out.set(s, decodePosition(await topo.router.forSlot(slot).get(keys.position(s, slot)), keys.position(s, slot)));
      }),
    );
    return out;
  }

  /**
   * Wall-clock time (ms) carried by the latest heartbeat applied, for lag; null before the first.
   * A heartbeat with `timeMs` 0 only moves the stream's position (writes nothing else either).
   */
  latestHeartbeatMs(): number | null {
    return this.heartbeatMs;
  }

  /** Lag in ms from the latest heartbeat (null before the first). */
  lagMs(now = Date.now()): number | null {
    return this.heartbeatMs === null ? null : Math.max(0, now - this.heartbeatMs);
  }

  /** The position stored in the destination for `stream` (standalone; home slot on a cluster). */
  storedPosition(stream: string): Promise<SourcePosition | null> {
    const run = this.lock.then(() => {
      this.carried = null;
      return this.readStoredPosition(stream);
    });
    this.lock = run.catch(() => undefined);
    return run;
  }

  private async readStoredPosition(stream: string): Promise<SourcePosition | null> {
    await this.start();
    const keys = this.keys!;
    if (this.topo!.kind === 'standalone') {
      const c = this.topo!.client;
      const [, r] = (await c.pipeline().select(this.opts.positionDb).get(keys.position(stream)).exec()) ?? [];
      if (r?.[0]) throw r[0];
      return decodePosition(r?.[1] as string | null, keys.position(stream));
    }
    const slot = keys.homeSlot(stream);
    const v = await this.topo!.router.forSlot(slot).get(keys.position(stream, slot));
    return decodePosition(v, keys.position(stream, slot));
  }

  get destination(): DestinationInfo | null {
    return this.dinfo;
  }

  /** Closes the connections after the current batch. */
  async close(): Promise<void> {
    this.closed = true;
    await this.lock.catch(() => undefined);
    if (this.topo) {
      for (const c of topologyMasters(this.topo)) await c.quit().catch(() => undefined);
      closeTopology(this.topo);
    }
    this.txConnection?.close();
    this.armed = null;
    this.topo = null;
  }

  /** Drops the connections at once (in-flight transactions end with an unknown outcome). */
  disconnect(): void {
    this.closed = true;
    if (this.topo) closeTopology(this.topo);
    this.txConnection?.close();
    this.armed = null;
  }

  // -------------------------------------------------------------------------------------------
  // start

  private async doStart(): Promise<void> {
    const topo = await openTopology(this.opts.url, 'replistream-writer');
    this.topo = topo;
    this.armed = null;
    if (topo.kind === 'standalone') this.txConnection = new RespConnection(topo.endpoint, 'replistream-writer-tx');
    const cluster = topo.kind === 'cluster';
    this.dbMarkerKeys.clear();
    this.keys = new PositionKeys(this.opts.positionKeyPrefix, cluster);
    if (cluster) {
      for (const [src, dst] of this.opts.dbMap) {
        if (dst !== 0) throw new ReplistreamError('CONFIG', `db-map ${src}:${dst}: a cluster destination has only db 0`, { setting: 'db-map' });
      }
    }
    const masters = topologyMasters(topo);
    let version = '';
    let rdb = Infinity;
    for (const c of masters) {
      const i = await info(c, 'server');
      const v = i.get('redis_version') ?? '0.0.0';
      if (!version) version = v;
      rdb = Math.min(rdb, await this.probeRdbVersion(c, topo));
    }
    const v = parseVersion(version);
    const hpexpire = await this.commandExists(masters[0], 'hpexpireat');
    this.dinfo = {
      topology: topo.kind,
      version,
      rdbVersion: rdb,
      features: {
        streamMeta: versionAtLeast(v, 7, 0),
        createConsumer: versionAtLeast(v, 6, 2),
        hashFieldTtl: hpexpire,
        absTtl: versionAtLeast(v, 5, 0),
      },
    };
    if (cluster) this.keyTable = await KeyTable.load(masters[0]);
    else this.databases = await this.databaseCount(masters[0]);
    this.opts.logger.info(
      { destination: topo.endpoint.display, topology: topo.kind, version, rdbVersion: rdb, positionDb: cluster ? 0 : this.opts.positionDb },
      'destination writer connected',
    );
  }

  /** The RDB version of the server's DUMP payloads: DUMP of a scratch key, in one transaction. */
  private async probeRdbVersion(c: Redis, topo: Topology): Promise<number> {
    let key = `${this.opts.positionKeyPrefix}:@probe:${process.pid}:${Math.random().toString(36).slice(2)}`;
    const p = c.pipeline();
    if (topo.kind === 'cluster') {
      // a key in a slot this master serves
      const master = topo.router.masters().find((m) => m.client === c)!;
      const slot = topo.router.slotsByMaster().get(master.key)?.[0] ?? 0;
      key += `{${slotTag(slot)}}`;
    } else {
      p.select(this.opts.positionDb);
    }
    (p as unknown as { multi(): unknown }).multi();
    p.set(key, 'x');
    p.dumpBuffer(key);
    p.del(key);
    p.exec();
    const res = (await p.exec()) ?? [];
    const last = res[res.length - 1];
    if (!last || last[0]) throw new ReplistreamError('DESTINATION', `cannot learn the destination's RDB version (DUMP failed): ${last?.[0]?.message ?? 'no reply'}`, { cause: last?.[0] });
    const dump = (last[1] as unknown[])[1] as Buffer;
    return requirePayloadRdbVersion(Buffer.isBuffer(dump) ? dump : Buffer.from(String(dump), 'latin1'));
  }

  private async databaseCount(c: Redis): Promise<number> {
    try {
      const r = (await c.call('CONFIG', 'GET', 'databases')) as string[];
      const n = Number(r?.[1]);
      return Number.isInteger(n) && n > 0 ? n : 16;
    } catch {
      return 16; // CONFIG may be renamed or forbidden (managed services)
    }
  }

  private async commandExists(c: Redis, name: string): Promise<boolean> {
    try {
      const r = (await c.call('COMMAND', 'INFO', name)) as unknown[];
      return Array.isArray(r) && r[0] !== null && r[0] !== undefined;
    } catch {
      return false;
    }
  }

  // -------------------------------------------------------------------------------------------
  // batches

  private async applyStreamsNow(call: QueuedCall, ahead: BuiltTransaction | null): Promise<BatchResult> {
    if (this.closed) throw new ReplistreamError('INTERNAL', 'destination writer is closed');
    await this.start();
    for (const seg of call.segments) this.keys!.checkStream(seg.stream);
    const segments = call.segments.filter((seg) => seg.events.length > 0);
    if (segments.length === 0) return { applied: 0, skipped: 0 };
    const topo = this.topo!;
    try {
      if (topo.kind === 'standalone') {
        await ensureReady(topo.client, topo.endpoint);
        return await this.applyStandalone(call, topo.client, ahead);
      }
      const total: BatchResult = { applied: 0, skipped: 0 };
      for (const seg of segments) {
        const r = await this.applyCluster(seg.stream, seg.events);
        total.applied += r.applied;
        total.skipped += r.skipped;
      }
      return total;
    } catch (err) {
      // forget what we knew of the streams: the next batch re-reads them from the destination
      for (const seg of segments) this.streams.delete(seg.stream);
      this.markers.clear();
      throw err;
    }
  }

  private stream(stream: string): StreamState {
    let st = this.streams.get(stream);
    if (!st) {
      st = { domains: new Map(), errorChecked: false };
      this.streams.set(stream, st);
    }
    return st;
  }

  private mapDb(db: number): number | undefined {
    return this.opts.dbMap.size === 0 ? db : this.opts.dbMap.get(db);
  }

  /** Destination dbs that receive data: the db map's targets, or every db with an identity map. */
  private mappedTargets(): number[] {
    if (this.opts.dbMap.size === 0) return Array.from({ length: this.databases }, (_, i) => i);
    return [...new Set(this.opts.dbMap.values())];
  }

  private commandContext(stream: string): CommandContext {
    return {
      cluster: this.topo!.kind === 'cluster',
      mapDb: (db) => this.mapDb(db),
      mappedTargets: () => this.mappedTargets(),
      refuseFlush: this.opts.refuseFlush,
      preservedPrefixes: this.opts.preservedPrefixes,
      positionDb: this.opts.positionDb,
      keys: this.keyTable,
      homeSlot: this.keys!.homeSlot(stream),
      // source RESTOREs with a payload too new for the destination: typed writes when allowed (translate.ts)
      restore: this.dinfo ? { rdbVersion: this.dinfo.rdbVersion, fallback: this.opts.allowRestoreFallback || this.opts.writeMode === 'commands', features: this.dinfo.features } : undefined,
    };
  }

  /** Translates whole events (stateless part): dbs mapped, slots computed. */
  private prepare(stream: string, events: ChangeEvent[], indexBase: number, each: PreparedSink): void {
    refusePieces(stream, events);
    const ctx = this.commandContext(stream);
    events.forEach((event, i) => {
      // unique across the segments of one call: origins and skipped commands are named by it
      const index = indexBase + i;
      const db = this.mapDb(event.db);
      let items: readonly TranslatedItem[] = NO_ITEMS;
      let dropped: readonly string[] = NO_NAMES;
      if (event.kind === 'command') {
        const op = event instanceof EncodedCommandEvent ? encodedPlainOp(event, index, ctx) : plainOp(event.commands, event.db, index, ctx);
        if (op !== null) return each(index, event, db, items, dropped, op);
        try {
          ({ items, dropped } = translateCommands(event.commands, event.db, index, ctx));
        } catch (err) {
          if (err instanceof ReplistreamError && err.setting === 'refuse-flush') {
            throw new ReplistreamError('DESTINATION', `the source sent ${err.message.replace(/ refused$/, '')} at ${formatPosition(event.pos)} (stream ${stream}) and refuse-flush is set: stopped before applying it`, {
              setting: 'refuse-flush',
              details: { stream, position: event.pos },
            });
          }
          if (err instanceof ReplistreamError) {
            throw new ReplistreamError(err.code, `${err.message} (event at ${formatPosition(event.pos)}, stream ${stream})`, { setting: err.setting, cause: err });
          }
          throw err;
        }
      }
      each(index, event, db, items, dropped, null);
    });
  }

  // -------------------------------------------------------------------------------------------
  // standalone

  /** Translates a call's events into the parts of its transactions (once per call). */
  private prepareStandalone(call: QueuedCall): PreparedCall {
    if (call.prepared) return call.prepared;
    const segments = call.segments.filter((seg) => seg.events.length > 0);
    const parts: Part[] = [];
    let unmappedEvents = 0;
    let indexBase = 0;
    for (const seg of segments) {
      const stream = seg.stream;
      this.prepare(stream, seg.events, indexBase, (index, event, db, items, dropped, op) => {
        if (db === undefined) {
          unmappedEvents++;
          return;
        }
        const ops = op !== null || items.length === 0 ? NO_OPS : items.length === 1 ? [(items[0] as { t: 'op'; op: Op }).op] : items.map((it) => (it as { t: 'op'; op: Op }).op);
        const part: Part & Prepared = {
          index,
          event,
          db,
          items,
          dropped,
          op,
          stream,
          prep: null as unknown as Prepared, // itself, below
          pos: withPart(event.pos),
          ops,
          snapshotKey: event.kind === 'snapshot-key' ? event : null,
          markerKey: this.dbMarkerKey(db),
          markerScope: db,
        };
        part.prep = part;
        parts.push(part);
      });
      indexBase += seg.events.length;
    }
    const markerKeys = new Set<string>();
    for (const p of parts) if (p.markerKey) markerKeys.add(p.markerKey);
    const streamNames = [...new Set(segments.map((seg) => seg.stream))];
    return (call.prepared = { parts, unmappedEvents, markerKeys, streamNames });
  }

  private async applyStandalone(call: QueuedCall, client: Redis, carried: BuiltTransaction | null): Promise<BatchResult> {
    const { parts, unmappedEvents, markerKeys, streamNames } = this.prepareStandalone(call);
    this.stats.unmappedDb += unmappedEvents;
    const result: BatchResult = { applied: 0, skipped: unmappedEvents };
    const skipIds = new Set<string>();
    let from = 0;
    let attempts = 0;
    /** The next transaction, built and encoded while the destination ran the last one. */
    let ahead: BuiltTransaction | null = carried;
    /** The next call's first transaction, built while the destination ran this call's last one. */
    let carry: CarriedTransaction | null = null;
    while (from < parts.length) {
      for (const name of streamNames) await this.loadStandalone(name, this.stream(name), markerKeys, client);
      const chunk = ahead?.chunk.start === from ? ahead.chunk : this.buildChunk(parts, from, (name) => this.stream(name).domains.get(0)!, skipIds);
      const body = ahead?.chunk === chunk ? ahead.body : null;
      ahead = null;
      if (!chunk.positionChanged && chunk.ops.length === 0 && chunk.markerSets.size === 0) {
        this.commitChunk(0, chunk, result, false);
        from = chunk.end;
        continue;
      }
      const target = this.txConnection ?? client;
      const running = this.execTransaction(target, this.opts.positionDb, chunk, (name) => this.keys!.position(name), body);
      // (on an open connection its bytes have left: RespConnection.send writes before returning)
      if (target instanceof RespConnection) {
        if (chunk.end < parts.length) ahead = this.buildAhead(parts, chunk.end, chunk, skipIds);
        else if (this.queuedCalls.length > 0) carry = this.buildNextCallAhead(this.queuedCalls[0], chunk);
      }
      const outcome = await running;
      const next = await this.handleOutcome(0, chunk, parts, outcome, skipIds, result, ++attempts);
      if (next === 'retry') {
        ahead = carry = null;
        continue;
      }
      attempts = 0;
      from = chunk.end;
    }
    if (carry && this.queuedCalls[0] === carry.call) this.carried = carry;
    return result;
  }

  /**
   * The first transaction of the next queued call, built as if this call's last transaction
   * (`chunk`) commits: the same as `buildAhead`, across calls. An applier hands its next plan over
   * while the writer works on the one before, so the destination need not wait while that plan is
   * translated and its first transaction built. Null when that call's streams or epoch markers are
   * not all known yet (loading them is a round trip, made in its place), or when building fails
   * (the failure is met again in its place).
   */
  private buildNextCallAhead(call: QueuedCall, chunk: Chunk): CarriedTransaction | null {
    try {
      const { parts, markerKeys, streamNames } = this.prepareStandalone(call);
      if (parts.length === 0) return null;
      for (const name of streamNames) {
        const st = this.streams.get(name);
        if (!st || !st.domains.has(0) || !st.errorChecked) return null;
      }
      for (const k of markerKeys) if (!this.markers.has(k) && !chunk.markers.has(k)) return null;
      const built = this.buildAhead(parts, 0, chunk, new Set());
      return built && { ...built, call };
    } catch {
      return null;
    }
  }

  /**
   * The transaction of `parts` from `from` on (the parts after `chunk`'s, or the next call's from
   * its first), built and encoded as if `chunk` commits (by far the common
   * outcome), while the destination runs it. The caller uses it only when `chunk` did commit with
   * nothing to retry: it then is exactly what building it afterwards would give, since a chunk is
   * built from the committed positions and markers alone, which committing `chunk` sets to what
   * `chunk` holds. Null when building fails: the failure is met again, in its place, by building
   * after the commit.
   */
  private buildAhead(parts: Part[], from: number, chunk: Chunk, skipIds: Set<string>): BuiltTransaction | null {
    const after = (name: string): DomainState => {
      const share = chunk.streams.get(name);
      if (!share) return this.stream(name).domains.get(0)!;
      // what commitChunk makes of it
      return { pos: share.state.pos, stored: share.positionChanged && share.posToStore ? share.posToStore : share.state.stored };
    };
    try {
      const next = this.buildChunk(parts, from, after, skipIds, chunk.markers);
      return { chunk: next, body: composeBody(next.ops, this.opts.positionDb, true) };
    } catch {
      return null;
    }
  }

  /** Epoch marker key of a destination db (standalone), built once per db rather than per event. */
  private dbMarkerKey(db: number): string {
    let k = this.dbMarkerKeys.get(db);
    if (k === undefined) this.dbMarkerKeys.set(db, (k = this.keys!.marker(db)));
    return k;
  }

  private async loadStandalone(stream: string, st: StreamState, markerKeys: Set<string>, client: Redis): Promise<void> {
    const keys = this.keys!;
    const wantMarkers = [...markerKeys].filter((k) => !this.markers.has(k));
    const needPos = !st.domains.has(0);
    const needErr = !st.errorChecked;
    if (!needPos && !needErr && wantMarkers.length === 0) return;
    const p = client.pipeline().select(this.opts.positionDb);
    if (needPos) p.get(keys.position(stream));
    if (needErr) p.get(keys.error(stream));
    const markerList = wantMarkers;
    if (markerList.length) p.mget(...markerList);
    const res = (await p.exec()) ?? [];
    for (const r of res) if (r[0]) throw this.connectionOrReplyError(r[0], 'reading positions');
    let i = 1;
    if (needPos) st.domains.set(0, emptyDomain(decodePosition(res[i++][1] as string | null, keys.position(stream))));
    if (needErr) {
      this.checkErrorMarker(stream, res[i++][1] as string | null);
      st.errorChecked = true;
    }
    if (markerList.length) {
      const vals = res[i++][1] as Array<string | null>;
      markerList.forEach((k, j) => this.markers.set(k, vals[j] === null ? null : Number(vals[j])));
    }
  }

  private checkErrorMarker(stream: string, value: string | null): void {
    if (value === null) return;
    const key = this.keys!.error(stream);
    if (this.opts.onUnknownCommand === 'skip') {
      this.opts.logger.warn({ stream, marker: value }, `an earlier run stopped on a command the destination refused; on-command-error is skip: continuing (delete ${key} to clear)`);
      return;
    }
    throw new ReplistreamError(
      'DESTINATION',
      `an earlier run of stream ${stream} stopped because the destination refused a command: ${value}. Fix the destination (or resynchronize), then delete the key ${key} to continue, or set on-command-error to skip`,
      { setting: 'on-command-error', details: { stream, marker: value } },
    );
  }

  // -------------------------------------------------------------------------------------------
  // chunk building (standalone and per slot)

  /**
   * The transaction of `parts` from `from` on, up to the size bounds. `committedOf` gives each
   * stream's committed state, `markersBefore` epoch markers set by a transaction not yet committed
   * (they take precedence over the writer's known ones).
   */
  private buildChunk(
    parts: Part[],
    from: number,
    committedOf: (stream: string) => DomainState,
    skipIds: Set<string>,
    markersBefore: Map<string, number | null> | null = null,
  ): Chunk {
    const cluster = this.topo!.kind === 'cluster';
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
      chunk.markers.has(k) ? chunk.markers.get(k)! : markersBefore?.has(k) ? markersBefore.get(k)! : (this.markers.get(k) ?? null);
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
              args: ['EVAL', ENTER_EPOCH_SLOT_LUA, '1', part.markerKey, String(ev.pos.epoch), String(part.markerScope), ...this.opts.preservedPrefixes],
              db: null,
              slot: part.markerScope,
              origin: null,
            });
            if (m !== null) chunk.epochFlushes++;
          } else {
            const flush = m !== null || (state.pos !== null && state.pos.epoch < ev.pos.epoch);
            if (flush) {
              for (const op of flushOps(part.markerScope, { preservedPrefixes: this.opts.preservedPrefixes }, null)) add(op);
              chunk.epochFlushes++;
              this.opts.logger.info({ stream, db: part.markerScope, epoch: ev.pos.epoch, previous: m }, 'new snapshot epoch: emptying the destination db');
            }
            chunk.markerSets.set(part.markerKey, ev.pos.epoch);
          }
          chunk.markers.set(part.markerKey, ev.pos.epoch);
        }
      }
      switch (ev.kind) {
        case 'snapshot-begin':
          this.checkSnapshotVersion(stream, ev.rdbVersion, ev.sourceVersion, ev.pos);
          break;
        case 'snapshot-end':
          this.opts.logger.debug({ stream, db: ev.db, keys: ev.keyCount }, 'snapshot end');
          break;
        case 'slot-handoff':
          break; // only its position (the applier turns it into a position-only heartbeat)
        case 'heartbeat':
          // timeMs 0: a position-only event (the applier moving a stream past a barrier)
          if (ev.timeMs > 0) chunk.heartbeatMs = Math.max(chunk.heartbeatMs ?? 0, ev.timeMs);
          break;
        case 'snapshot-key': {
          const r = this.snapshotKeyOps(stream, part);
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
      if (chunk.ops.length >= this.opts.maxOpsPerTransaction || bytes >= this.opts.maxBytesPerTransaction) {
        i++;
        break;
      }
    }
    chunk.end = i;
    for (const share of chunk.streams.values()) share.posToStore = share.state.pos;
    return chunk;
  }

  private checkSnapshotVersion(stream: string, rdbVersion: number, sourceVersion: string | null, pos: SourcePosition): void {
    const dest = this.dinfo!;
    if (this.opts.writeMode !== 'restore' || rdbVersion <= dest.rdbVersion) return;
    if (this.opts.allowRestoreFallback) {
      this.opts.logger.warn(
        { stream, sourceRdb: rdbVersion, destinationRdb: dest.rdbVersion },
        `snapshot RDB version ${rdbVersion} is newer than the destination's ${dest.rdbVersion}: keys will be written with typed commands`,
      );
      return;
    }
    throw this.versionError(stream, rdbVersion, sourceVersion, pos, null);
  }

  private versionError(stream: string, payloadVersion: number, sourceVersion: string | null, pos: SourcePosition, key: Buffer | null): ReplistreamError {
    const dest = this.dinfo!;
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
  private snapshotKeyOps(stream: string, part: Part): { ops: Op[]; fallback: boolean } {
    const ev = part.snapshotKey!;
    const db = part.db!;
    const slot = this.topo!.kind === 'cluster' ? keySlot(ev.key) : null;
    const index = part.prep.index;
    const mk = (cmds: Arg[][]): Op[] => cmds.map((args, j) => ({ args, db, slot, origin: new EventOrigin(index, `k${j}`, commandName(args)) }));
    const dest = this.dinfo!;
    const append = ev.append === true;
    if (ev.piece) throw new ReplistreamError('INTERNAL', `snapshot key ${printableKey(ev.key)} at ${formatPosition(ev.pos)} reached the writer as a piece`);
    if (ev.expireAtMs !== null && ev.expireAtMs <= this.opts.now()) return { ops: mk([['DEL', ev.key]]), fallback: false };
    let fallback = false;
    if (ev.payload && !append && (this.opts.writeMode === 'restore' || !ev.value)) {
      const v = requirePayloadRdbVersion(ev.payload);
      if (v <= dest.rdbVersion) {
        // the common case of a full sync, once per key: built directly, without the helpers above
        const ttl = dest.features.absTtl ? (ev.expireAtMs === null ? '0' : String(ev.expireAtMs)) : String(ev.expireAtMs === null ? 0 : Math.max(1, ev.expireAtMs - this.opts.now()));
        return { ops: [new RestoreOp(ev.key, ttl, ev.payload, dest.features.absTtl, db, slot, index)], fallback: false };
      }
      // write-mode commands asked for typed writes anyway: a payload-only key is one of them
      if (!this.opts.allowRestoreFallback && this.opts.writeMode === 'restore') throw this.versionError(stream, v, null, ev.pos, ev.key);
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

  // -------------------------------------------------------------------------------------------
  // transactions

  /**
   * Sends one transaction: [SELECT positionDb] WATCH … MULTI ops … SET position EXEC, in one write.
   * `selectDb` null for a cluster node (db 0 only).
   */
  private async execTransaction(
    target: Redis | RespConnection,
    selectDb: number | null,
    chunk: Chunk,
    positionKeyOf: (stream: string) => string,
    encodedBody: TransactionBody | null = null,
  ): Promise<TxOutcome> {
    // 1. WATCH the positions and epoch markers, then check they still hold what this writer
    //    believes: a compare-and-set, so a second writer of a stream (or a marker moved by
    //    another stream) makes this transaction abort instead of applying twice.
    const moved = [...chunk.streams.entries()].filter(([, cs]) => cs.positionChanged && cs.posToStore);
    const positionKeys = moved.map(([name]) => positionKeyOf(name));
    const markerKeys = [...chunk.watch];
    const watched = positionKeys.length + markerKeys.length > 0;
    // Standalone: were these keys WATCHed and read right after the last transaction, on the
    // socket still open? Then what was read is what the check needs, and the WATCH still holds.
    const armed = target instanceof RespConnection ? this.armed : null;
    this.armed = null;
    const rearm = target instanceof RespConnection && selectDb !== null;
    let watchedOn = target instanceof RespConnection ? target.connectionId : undefined;
    let positionVals: Array<string | null> = [];
    let markerVals: Array<string | null> = [];
    if (armed && armed.connectionId === watchedOn && positionKeys.every((k) => armed.keys.has(k)) && markerKeys.every((k) => armed.keys.has(k))) {
      positionVals = positionKeys.map((k) => armed.values.get(k) ?? null);
      markerVals = markerKeys.map((k) => armed.values.get(k) ?? null);
    } else {
      const check: Arg[][] = [];
      if (selectDb !== null) check.push(['SELECT', String(selectDb)]);
      if (watched) check.push(['WATCH', ...positionKeys, ...markerKeys]);
      if (positionKeys.length) check.push(['MGET', ...positionKeys]);
      if (markerKeys.length) check.push(['MGET', ...markerKeys]);
      let preRes: unknown[];
      this.stats.positionChecks++;
      try {
        watchedOn = target instanceof RespConnection ? target.connectionId : undefined;
        preRes = await sendBatch(target, check);
        // (a reconnection inside send: the WATCH went on the new socket)
        if (target instanceof RespConnection) watchedOn = target.connectionId;
      } catch (err) {
        return { kind: 'unknown', error: err as Error };
      }
      for (const r of preRes) {
        const e = replyError(r);
        if (!e) continue;
        if (!isReplyError(e)) return { kind: 'unknown', error: e };
        return { kind: 'rejected', errors: [{ origin: null, args: ['WATCH'], error: e }] };
      }
      let at = (selectDb !== null ? 1 : 0) + (watched ? 1 : 0);
      if (positionKeys.length) positionVals = preRes[at++] as Array<string | null>;
      if (markerKeys.length) markerVals = preRes[at] as Array<string | null>;
    }
    let same = moved.every(([, cs], i) => samePosition(decodePosition(positionVals[i], positionKeys[i]), cs.state.stored));
    if (same) same = markerKeys.every((k, i) => (markerVals[i] === null ? null : Number(markerVals[i])) === (this.markers.get(k) ?? null));
    if (!same) {
      if (watched || armed) await sendBatch(target, [['UNWATCH']]).catch(() => undefined);
      return { kind: 'watch-aborted' };
    }
    // 2. the transaction itself, in one write, on the connection that holds the WATCH: its body
    //    (encoded already when the writer prepared it while the last transaction ran), then the
    //    writer's own SETs
    const encoded = target instanceof RespConnection;
    const body = encodedBody ?? composeBody(chunk.ops, selectDb, encoded);
    const tail: RespCommand[] = [];
    if (selectDb !== null && body.endDb !== selectDb) tail.push(['SELECT', String(selectDb)]);
    moved.forEach(([, cs], i) => tail.push(['SET', positionKeys[i], encodePosition(cs.posToStore!)]));
    for (const [k, e] of chunk.markerSets) tail.push(['SET', k, String(e)]);
    const tx: RespSendable[] = [['MULTI']];
    if (encoded) tx.push(body.wire);
    else for (const c of body.commands) tx.push(c);
    for (const c of tail) tx.push(c);
    tx.push(['EXEC']);
    const bodyLength = body.commands.length;
    /** The command answered by reply `i` after MULTI, and the op it comes from. */
    const commandAt = (i: number): RespCommand => (i < bodyLength ? body.commands[i] : tail[i - bodyLength]);
    const originAt = (i: number): OpOrigin | null => (i < bodyLength ? body.origins[i] : null);
    const queued = bodyLength + tail.length;
    // 3. standalone: in the same write, WATCH and read again the keys of this transaction and of
    //    the last ones (a few dozen at most: positions and epoch markers), for the next one
    let armKeys: string[] = [];
    if (rearm) {
      const keys = new Set([...positionKeys, ...markerKeys, ...(armed && armed.connectionId === watchedOn ? armed.keys : [])]);
      armKeys = keys.size <= MAX_ARMED_KEYS ? [...keys] : [...positionKeys, ...markerKeys];
      if (armKeys.length) tx.push(['SELECT', String(selectDb)], ['WATCH', ...armKeys], ['MGET', ...armKeys]);
    }
    let res: unknown[];
    try {
      res = await sendBatch(target, tx, watchedOn);
    } catch (err) {
      return { kind: 'unknown', error: err as Error };
    }
    if (rearm && armKeys.length) {
      const after = res.splice(res.length - 3, 3);
      const vals = after[2];
      if (!after.some((r) => replyError(r)) && Array.isArray(vals) && watchedOn !== undefined) {
        this.armed = { connectionId: watchedOn, keys: new Set(armKeys), values: new Map(armKeys.map((k, i) => [k, (vals[i] as string | null) ?? null])) };
      }
    }
    this.stats.transactions++;
    const pre = 1; // MULTI
    if (res.length === 0) return { kind: 'unknown', error: new Error('no reply to EXEC') };
    const execRes = res[res.length - 1];
    // a connection-level failure anywhere: the outcome of EXEC is unknown
    const lost = connectionFailure(res);
    if (lost) return { kind: 'unknown', error: lost };
    for (let i = 0; i < pre; i++) {
      const e = replyError(res[i]);
      if (e && !REDIRECT.test(e.message) && !TRANSIENT.test(e.message)) {
        return { kind: 'rejected', errors: [{ origin: null, args: ['MULTI'], error: e }] };
      }
    }
    const execError = replyError(execRes);
    if (execError) {
      const errors: RejectedCommand[] = [];
      for (let i = 0; i < queued; i++) {
        const e = replyError(res[pre + i]);
        if (e) errors.push({ origin: originAt(i), args: commandArgs(commandAt(i)) as Arg[], error: e });
      }
      for (let i = 0; i < pre; i++) {
        const e = replyError(res[i]);
        if (e) errors.push({ origin: null, args: ['MULTI'], error: e });
      }
      if (errors.length === 0) errors.push({ origin: null, args: ['EXEC'], error: execError });
      return { kind: 'rejected', errors };
    }
    const replies = execRes as unknown[] | null;
    if (replies === null) {
      this.armed = null; // read before an EXEC that did not run: not what the writer believes
      return { kind: 'watch-aborted' };
    }
    const runtimeErrors: RejectedCommand[] = [];
    for (const i of errorIndexes(replies)) runtimeErrors.push({ origin: originAt(i), args: commandArgs(commandAt(i)) as Arg[], error: replies[i] as Error });
    return { kind: 'committed', runtimeErrors };
  }

  /** Decides what to do after a transaction. Returns 'retry' to rebuild the same chunk, 'next' to go on. */
  private async handleOutcome(
    domain: number,
    chunk: Chunk,
    parts: Part[],
    outcome: TxOutcome,
    skipIds: Set<string>,
    result: BatchResult,
    attempt: number,
  ): Promise<'retry' | 'next'> {
    const partOf = (o: OpOrigin | null): Part | undefined => (o ? parts.find((p) => p.prep.index === o.eventIndex) : undefined);
    const posOf = (o: OpOrigin | null): SourcePosition | null => partOf(o)?.prep.event.pos ?? null;
    const names = [...chunk.streams.keys()];
    const stream = names.join(', ');
    const streamOf = (o: OpOrigin | null): string => partOf(o)?.stream ?? stream;
    switch (outcome.kind) {
      case 'committed': {
        this.commitChunk(domain, chunk, result);
        if (outcome.runtimeErrors.length) await this.handleRuntimeErrors(outcome.runtimeErrors, posOf, streamOf);
        return 'next';
      }
      case 'watch-aborted': {
        this.stats.watchRetries++;
        if (attempt > MAX_RETRIES) {
          throw new ReplistreamError('DESTINATION', `stream ${stream}: transaction aborted ${attempt} times by concurrent changes of its position or epoch keys`, { retriable: true });
        }
        for (const name of names) {
          const before = this.stream(name).domains.get(domain)?.stored ?? null;
          const stored = await this.readDomainPosition(name, domain);
          if (!samePosition(stored, before)) {
            // someone else applied this stream: step back and let the applier re-deliver
            throw new ReplistreamError(
              'DESTINATION',
              `stream ${name}${this.topo!.kind === 'cluster' ? ` slot ${domain}` : ''}: another writer advanced the position to ${formatPosition(stored)} (was ${formatPosition(before)}); is a second applier consuming the same partition?`,
              { retriable: true, details: { stream: name, stored, known: before } },
            );
          }
        }
        for (const k of chunk.watch) this.markers.delete(k);
        await this.reloadMarkers(domain, [...chunk.watch]);
        return 'retry';
      }
      case 'rejected': {
        const redirect = outcome.errors.find((e) => REDIRECT.test(e.error.message));
        const transient = outcome.errors.find((e) => TRANSIENT.test(e.error.message));
        if (redirect || transient) {
          if (attempt > MAX_RETRIES) {
            const e = (redirect ?? transient)!;
            throw new ReplistreamError('DESTINATION', `stream ${stream}: the destination keeps refusing the transaction: ${e.error.message}`, { retriable: true, cause: e.error });
          }
          if (redirect && this.topo!.kind === 'cluster') await this.topo!.router.refresh();
          else await sleep(Math.min(50 * 2 ** attempt, 2000));
          return 'retry';
        }
        const infra = outcome.errors.find((e) => !e.origin);
        const own = outcome.errors.filter((e) => e.origin);
        if (infra && own.length === 0) {
          throw new ReplistreamError('DESTINATION', `stream ${stream}: the destination refused replistream's own ${commandName(infra.args)}: ${infra.error.message}`, { cause: infra.error });
        }
        const first = own[0];
        if (this.opts.onUnknownCommand === 'skip') {
          if (own.every((e) => skipIds.has(e.origin!.id))) {
            throw new ReplistreamError('INTERNAL', `stream ${stream}: ${first.origin!.name} was skipped but the destination still reports it: ${first.error.message}`, { cause: first.error });
          }
          for (const e of own) {
            skipIds.add(e.origin!.id);
            this.countSkipped(e.origin!.name, streamOf(e.origin), posOf(e.origin), e.error.message);
          }
          return 'retry';
        }
        throw this.refusedError(streamOf(first.origin), first, posOf(first.origin), false);
      }
      case 'unknown': {
        if (this.topo!.kind === 'cluster') await this.topo!.router.refresh().catch(() => undefined);
        throw new ReplistreamError(
          'CONNECTION',
          `stream ${stream}: lost the destination while a transaction was in flight (${outcome.error.message}); its outcome is unknown: positions will be re-read`,
          { retriable: true, cause: outcome.error },
        );
      }
    }
  }

  private refusedError(stream: string, e: RejectedCommand, pos: SourcePosition | null, committed: boolean): ReplistreamError {
    const name = e.origin?.name ?? commandName(e.args);
    return new ReplistreamError(
      'DESTINATION',
      `the destination refused ${name} of the event at ${formatPosition(pos)} (stream ${stream}): ${e.error.message}` +
        (committed ? '; the other commands of its transaction were applied (a run-time error does not roll back MULTI/EXEC)' : '; nothing of its transaction was applied') +
        ' (set on-command-error to skip to count and skip such commands)',
      { setting: 'on-command-error', cause: e.error, details: { stream, position: pos, command: name } },
    );
  }

  private countSkipped(name: string, stream: string, pos: SourcePosition | null, why: string): void {
    this.stats.skipped[name] = (this.stats.skipped[name] ?? 0) + 1;
    this.opts.logger.warn({ stream, position: pos, command: name, reason: why }, `skipped ${name} refused by the destination (on-command-error skip)`);
  }

  private async handleRuntimeErrors(
    errors: RejectedCommand[],
    posOf: (o: OpOrigin | null) => SourcePosition | null,
    streamOf: (o: OpOrigin | null) => string,
  ): Promise<void> {
    const infra = errors.find((e) => !e.origin);
    if (infra) {
      throw new ReplistreamError('DESTINATION', `stream ${streamOf(null)}: replistream's own ${commandName(infra.args)} failed in the destination: ${infra.error.message}`, { cause: infra.error });
    }
    if (this.opts.onUnknownCommand === 'skip') {
      for (const e of errors) this.countSkipped(e.origin!.name, streamOf(e.origin), posOf(e.origin), e.error.message);
      return;
    }
    const first = errors[0];
    const stream = streamOf(first.origin);
    const pos = posOf(first.origin);
    const err = this.refusedError(stream, first, pos, true);
    const marker = JSON.stringify({ position: pos, command: first.origin!.name, error: first.error.message, at: new Date().toISOString() });
    try {
      const keys = this.keys!;
      if (this.topo!.kind === 'standalone') {
        await this.topo!.client.pipeline().select(this.opts.positionDb).set(keys.error(stream), marker).exec();
      } else {
        await this.topo!.router.forSlot(keys.homeSlot(stream)).set(keys.error(stream), marker);
      }
    } catch (e) {
      this.opts.logger.error({ err: e }, 'could not record the refused command in the destination');
    }
    throw err;
  }

  private commitChunk(domain: number, chunk: Chunk, result: BatchResult, written = true): void {
    for (const [name, share] of chunk.streams) {
      if (written && share.positionChanged && share.posToStore) share.state.stored = share.posToStore;
      this.stream(name).domains.set(domain, share.state);
    }
    for (const [k, v] of chunk.markers) this.markers.set(k, v);
    this.stats.applied += chunk.applied.length;
    this.stats.duplicates += chunk.duplicates.length;
    this.stats.stale += chunk.stale.length;
    this.stats.unmappedDb += chunk.unmapped;
    this.stats.restoreFallbacks += chunk.fallbacks;
    this.stats.epochFlushes += chunk.epochFlushes;
    result.applied += chunk.applied.length;
    result.skipped += chunk.duplicates.length + chunk.stale.length;
    if (chunk.heartbeatMs !== null) this.heartbeatMs = Math.max(this.heartbeatMs ?? 0, chunk.heartbeatMs);
  }

  private async readDomainPosition(stream: string, domain: number): Promise<WriterPosition | null> {
    const keys = this.keys!;
    if (this.topo!.kind === 'standalone') {
      const res = (await this.topo!.client.pipeline().select(this.opts.positionDb).get(keys.position(stream)).exec()) ?? [];
      if (res[1]?.[0]) throw this.connectionOrReplyError(res[1][0], 'reading positions');
      return decodePosition(res[1]?.[1] as string | null, keys.position(stream));
    }
    const v = await this.topo!.router.forSlot(domain).get(keys.position(stream, domain));
    return decodePosition(v, keys.position(stream, domain));
  }

  private async reloadMarkers(domain: number, markerKeys: string[]): Promise<void> {
    if (markerKeys.length === 0) return;
    let vals: Array<string | null>;
    if (this.topo!.kind === 'standalone') {
      const res = (await this.topo!.client.pipeline().select(this.opts.positionDb).mget(...markerKeys).exec()) ?? [];
      if (res[1]?.[0]) throw this.connectionOrReplyError(res[1][0], 'reading epoch markers');
      vals = res[1][1] as Array<string | null>;
    } else {
      vals = await this.topo!.router.forSlot(domain).mget(...markerKeys);
    }
    markerKeys.forEach((k, i) => this.markers.set(k, vals[i] === null ? null : Number(vals[i])));
  }

  private connectionOrReplyError(e: Error, what: string): ReplistreamError {
    if (isReplyError(e)) return new ReplistreamError('DESTINATION', `${what}: ${e.message}`, { cause: e, retriable: TRANSIENT.test(e.message) || REDIRECT.test(e.message) });
    // ioredis's words for "the connection is down, reconnecting": say so
    const why = /Stream isn't writeable|Connection is closed/i.test(e.message) ? 'the destination connection is down (reconnecting)' : e.message;
    return new ReplistreamError('CONNECTION', `${what}: ${why}`, { cause: e, retriable: true });
  }

  // -------------------------------------------------------------------------------------------
  // cluster

  private async applyCluster(stream: string, events: ChangeEvent[]): Promise<BatchResult> {
    const topo = this.topo as Extract<Topology, { kind: 'cluster' }>;
    const keys = this.keys!;
    const st = this.stream(stream);
    const home = keys.homeSlot(stream);
    const prepared: Prepared[] = [];
    this.prepare(stream, events, 0, (index, event, db, items, dropped, op) => prepared.push({ index, event, db, items, dropped, op }));
    const result: BatchResult = { applied: 0, skipped: 0 };
    const segments: Segment[] = [{ parts: new Map(), step: null }];
    const addPart = (slot: number, part: Part) => {
      const seg = segments[segments.length - 1];
      let a = seg.parts.get(slot);
      if (!a) seg.parts.set(slot, (a = []));
      a.push(part);
    };
    const addStep = (b: ClusterWideStep) => {
      segments[segments.length - 1].step = b;
      segments.push({ parts: new Map(), step: null });
    };
    let unmapped = 0;
    for (const prep of prepared) {
      const ev = prep.event;
      if (prep.db === undefined) {
        unmapped++;
        continue;
      }
      const base = (slot: number, part: number, ops: Op[], sk: SnapshotKey | null = null): Part => ({
        stream,
        prep,
        op: null,
        pos: withPart(ev.pos, part),
        ops,
        snapshotKey: sk,
        markerKey: keys.marker(slot),
        markerScope: slot,
        db: prep.db,
      });
      switch (ev.kind) {
        case 'snapshot-begin':
          if (ev.pos.epoch > this.sweptEpoch) addStep({ t: 'sweep', pos: withPart(ev.pos), prep, epoch: ev.pos.epoch });
          addPart(home, base(home, 0, []));
          break;
        case 'snapshot-end':
        case 'heartbeat':
        case 'slot-handoff':
          addPart(home, base(home, 0, []));
          break;
        case 'snapshot-key':
          addPart(keySlot(ev.key), base(keySlot(ev.key), 0, [], ev));
          break;
        case 'command': {
          let partNo = 0;
          let bySlot = new Map<number, Op[]>();
          const flushOpsOf = () => {
            for (const [slot, ops] of bySlot) addPart(slot, base(slot, partNo, ops));
            bySlot = new Map();
          };
          for (const it of prep.items) {
            if (it.t === 'op') {
              const slot = it.op.slot ?? home;
              let a = bySlot.get(slot);
              if (!a) bySlot.set(slot, (a = []));
              a.push(it.op);
              continue;
            }
            flushOpsOf();
            partNo++;
            if (it.t === 'flush') addStep({ t: 'flush', pos: withPart(ev.pos, partNo), prep, name: it.origin.name });
            else if (it.t === 'cross-slot') addStep({ t: 'cross-slot', pos: withPart(ev.pos, partNo), prep, plan: it.plan, args: it.args, origin: it.origin });
            else addStep({ t: 'all-masters', pos: withPart(ev.pos, partNo), prep, args: it.args, origin: it.origin });
            partNo++;
          }
          if (bySlot.size === 0 && partNo === 0) bySlot.set(home, []); // a unit with nothing to write still moves the position
          flushOpsOf();
          unmapped += prep.dropped.length;
          break;
        }
      }
    }
    this.stats.unmappedDb += unmapped;
    result.skipped += prepared.filter((p) => p.db === undefined).length;
    const statusOf = new Map<number, 'applied' | 'skipped'>();
    const mark = (idxs: number[], s: 'applied' | 'skipped') => {
      for (const i of idxs) if (statusOf.get(i) !== 'applied') statusOf.set(i, s);
    };

    for (const seg of segments) {
      if (seg.parts.size) await this.runSlots(stream, st, seg.parts, mark);
      if (seg.step) await this.runClusterWideStep(stream, st, seg.step, mark, topo);
    }
    for (const s of statusOf.values()) {
      if (s === 'applied') result.applied++;
      else result.skipped++;
    }
    return result;
  }

  /** Loads the positions and epoch markers of `slots` not known yet. */
  private async loadSlots(stream: string, st: StreamState, slots: number[]): Promise<void> {
    const topo = this.topo as Extract<Topology, { kind: 'cluster' }>;
    const keys = this.keys!;
    if (!st.errorChecked) {
      const v = await topo.router.forSlot(keys.homeSlot(stream)).get(keys.error(stream));
      this.checkErrorMarker(stream, v);
      st.errorChecked = true;
    }
    const want = slots.filter((s) => !st.domains.has(s) || !this.markers.has(keys.marker(s)));
    if (!want.length) return;
    for (let attempt = 0; ; attempt++) {
      const byNode = new Map<string, number[]>();
      for (const s of want) {
        const k = topo.router.nodeKeyForSlot(s) ?? '';
        let a = byNode.get(k);
        if (!a) byNode.set(k, (a = []));
        a.push(s);
      }
      let redirected = false;
      await Promise.all(
        [...byNode.entries()].map(async ([, ss]) => {
          const c = topo.router.forSlot(ss[0]);
          const p = c.pipeline();
          for (const s of ss) p.get(keys.position(stream, s)).get(keys.marker(s));
          const res = (await p.exec()) ?? [];
          ss.forEach((s, i) => {
            const [pe, pv] = res[2 * i];
            const [me, mv] = res[2 * i + 1];
            const e = pe ?? me;
            if (e) {
              if (REDIRECT.test(e.message)) {
                redirected = true;
                return;
              }
              throw this.connectionOrReplyError(e, 'reading slot positions');
            }
            if (!st.domains.has(s)) st.domains.set(s, emptyDomain(decodePosition(pv as string | null, keys.position(stream, s))));
            this.markers.set(keys.marker(s), mv === null ? null : Number(mv));
          });
        }),
      );
      if (!redirected) return;
      if (attempt >= MAX_RETRIES) throw new ReplistreamError('DESTINATION', 'slot map keeps changing while reading positions', { retriable: true });
      await topo.router.refresh();
    }
  }

  private async runSlots(stream: string, st: StreamState, bySlot: Map<number, Part[]>, mark: (idxs: number[], s: 'applied' | 'skipped') => void): Promise<void> {
    const topo = this.topo as Extract<Topology, { kind: 'cluster' }>;
    const keys = this.keys!;
    await this.loadSlots(stream, st, [...bySlot.keys()]);
    const queue = [...bySlot.entries()];
    const errors: unknown[] = [];
    const worker = async () => {
      for (;;) {
        const next = queue.shift();
        if (!next) return;
        const [slot, parts] = next;
        try {
          const skipIds = new Set<string>();
          let from = 0;
          let attempts = 0;
          const result: BatchResult = { applied: 0, skipped: 0 };
          while (from < parts.length) {
            if (!st.domains.has(slot) || !this.markers.has(keys.marker(slot))) await this.loadSlots(stream, st, [slot]);
            const chunk = this.buildChunk(parts, from, () => st.domains.get(slot)!, skipIds);
            if (!chunk.positionChanged && chunk.ops.length === 0) {
              this.commitChunk(slot, chunk, result, false);
              mark(chunk.applied, 'applied');
              mark([...chunk.duplicates, ...chunk.stale], 'skipped');
              from = chunk.end;
              continue;
            }
            const client = topo.router.forSlot(slot);
            const outcome = await this.execTransaction(client, null, chunk, (name) => keys.position(name, slot));
            const r = await this.handleOutcome(slot, chunk, parts, outcome, skipIds, result, ++attempts);
            if (r === 'retry') continue;
            mark(chunk.applied, 'applied');
            mark([...chunk.duplicates, ...chunk.stale], 'skipped');
            attempts = 0;
            from = chunk.end;
          }
        } catch (err) {
          st.domains.delete(slot);
          errors.push(err);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.opts.maxInFlight, queue.length) }, worker));
    if (errors.length) throw errors[0];
  }

  private async runClusterWideStep(
    stream: string,
    st: StreamState,
    b: ClusterWideStep,
    mark: (idxs: number[], s: 'applied' | 'skipped') => void,
    topo: Extract<Topology, { kind: 'cluster' }>,
  ): Promise<void> {
    const keys = this.keys!;
    const home = keys.homeSlot(stream);
    const perSlotScript = async (script: string, keyOf: (slot: number) => string, argv: (slot: number) => string[]): Promise<number> => {
      let total = 0;
      for (let attempt = 0; ; attempt++) {
        let redirected = false;
        await Promise.all(
          [...topo.router.slotsByMaster().entries()].map(async ([nodeKey, slots]) => {
            const c = topo.router.client(nodeKey)!;
            for (let i = 0; i < slots.length; i += 1024) {
              const p = c.pipeline();
              const part = slots.slice(i, i + 1024);
              for (const s of part) p.call('EVAL', script, '1', keyOf(s), ...argv(s));
              const res = (await p.exec()) ?? [];
              for (const [e, v] of res) {
                if (e) {
                  if (REDIRECT.test(e.message)) redirected = true;
                  else throw this.connectionOrReplyError(e, `${b.t} on ${nodeKey}`);
                } else if (typeof v === 'number' && v > 0) total += v;
              }
            }
          }),
        );
        if (!redirected) return total;
        if (attempt >= MAX_RETRIES) throw new ReplistreamError('DESTINATION', 'slot map keeps changing', { retriable: true });
        await topo.router.refresh();
      }
    };
    switch (b.t) {
      case 'sweep': {
        const n = await perSlotScript(ENTER_EPOCH_SLOT_LUA, (s) => keys.marker(s), (s) => [String(b.epoch), String(s), ...this.opts.preservedPrefixes]);
        this.sweptEpoch = Math.max(this.sweptEpoch, b.epoch);
        this.markers.clear();
        if (n > 0) this.stats.epochFlushes++;
        this.opts.logger.info({ stream, epoch: b.epoch, removed: n }, 'new snapshot epoch: swept every slot of the cluster destination');
        return;
      }
      case 'flush': {
        await perSlotScript(FLUSH_SLOT_LUA, (s) => keys.position(stream, s), (s) => [encodePosition(b.pos), String(s), ...this.opts.preservedPrefixes]);
        st.domains.clear();
        mark([b.prep.index], 'applied');
        return;
      }
      case 'cross-slot': {
        // keys in several slots (cross-slot.ts): each slot written in its own transaction with its position
        const partIn = (slot: number, commands: Arg[][]): Part => ({
          stream,
          prep: b.prep,
          op: null,
          pos: b.pos,
          ops: commands.map((args, j) => ({ args, db: 0, slot, origin: { ...b.origin, id: `${b.origin.id}/${slot}/${j}` } })),
          snapshotKey: null,
          markerKey: keys.marker(slot),
          markerScope: slot,
          db: b.prep.db,
        });
        const outcome = await runCrossSlot(b.plan, {
          router: topo.router,
          epoch: b.pos.epoch,
          load: (slots) => this.loadSlots(stream, st, slots),
          committed: (slot) => {
            const d = st.domains.get(slot);
            return !!d?.pos && compareWriterPositions(b.pos, d.pos) <= 0;
          },
          marker: (slot) => this.markers.get(keys.marker(slot)) ?? null,
          write: (slot, commands) => this.runSlots(stream, st, new Map([[slot, [partIn(slot, commands)]]]), mark),
          refuse: (reason) => {
            if (this.opts.onUnknownCommand === 'skip') this.countSkipped(b.origin.name, stream, b.prep.event.pos, reason);
            else throw this.refusedError(stream, { origin: b.origin, args: b.args, error: new Error(reason) }, b.prep.event.pos, false);
          },
        });
        mark([b.prep.index], outcome);
        return;
      }
      case 'all-masters': {
        await this.loadSlots(stream, st, [home]);
        const d = st.domains.get(home)!;
        if (d.pos && compareWriterPositions(b.pos, d.pos) <= 0) {
          mark([b.prep.index], 'skipped');
          return;
        }
        const refusals: RejectedCommand[] = [];
        for (const m of topo.router.masters()) {
          try {
            await m.client.callBuffer(String(b.args[0]), ...b.args.slice(1));
          } catch (e) {
            const err = e as Error;
            if (!isReplyError(err)) throw this.connectionOrReplyError(err, `${b.origin.name} on ${m.key}`);
            if (isAlreadyDoneError(b.args, err.message)) continue;
            refusals.push({ origin: b.origin, args: b.args, error: err });
          }
        }
        const refused = refusals[0];
        if (refused) {
          if (this.opts.onUnknownCommand === 'skip') this.countSkipped(b.origin.name, stream, b.prep.event.pos, refused.error.message);
          else throw this.refusedError(stream, refused, b.prep.event.pos, false);
        }
        // record the position in the home slot
        const part: Part = { stream, prep: b.prep, op: null, pos: b.pos, ops: [], snapshotKey: null, markerKey: null, markerScope: home, db: b.prep.db };
        await this.runSlots(stream, st, new Map([[home, [part]]]), mark);
        return;
      }
    }
  }
}

/**
 * The writer takes whole events: record pieces are rebuilt by the applier's stream queue, the one
 * place that knows where a series starts in Kafka. A piece here is a caller's bug, refused before
 * anything of the batch is written.
 */
function refusePieces(stream: string, events: readonly ChangeEvent[]): void {
  for (const e of events) {
    const piece = e.kind === 'snapshot-key' || e.kind === 'command' ? e.piece : null;
    if (!piece) continue;
    throw new ReplistreamError(
      'INTERNAL',
      `stream ${stream}: piece ${piece.index} of the event at ${formatPosition(e.pos)} reached the writer; the writer takes whole events; record pieces are rebuilt by the applier's stream queue`,
      { details: { stream, position: e.pos, piece: piece.index } },
    );
  }
}
