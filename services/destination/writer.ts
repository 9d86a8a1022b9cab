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
 * ## Where
 * - writer.ts (this file): the public API, start, the queue of calls, translating a call's events
 *   (`prepare`), and the standalone loop with the transactions it builds ahead.
 * - chunk-builder.ts: what one transaction holds (duplicates and stale events left out, epoch
 *   flushes, a snapshot key's RESTORE or typed writes, where the size bounds cut it).
 * - transaction-runner.ts: sending it (WATCH check, MULTI/EXEC, the WATCH re-armed for the next
 *   one) and what its outcome means (retry, skip or fail: "Errors inside EXEC" above).
 * - cluster-writer.ts: slots, slot transactions, and the steps that span every slot.
 * - writer-state.ts: what the writer knows between transactions (positions, epoch markers);
 *   writer-types.ts: the public types; destination-probe.ts: what start learns of the destination.
 *
 * ## Not in this module
 * Kafka, decoding, cross-partition barriers (the applier hands a unit listed in several partitions
 * over once, inside a sequence of several streams' events that keeps each stream's order:
 * `applyStreams`).
 */
import type { Redis } from 'ioredis';
import type { ChangeEvent, SourcePosition } from '../events/model.js';
import { ReplistreamError } from '../common/errors.js';
import { type Topology, closeTopology, ensureReady, openTopology, topologyMasters } from './connection.js';
import { RespConnection } from './resp-connection.js';
import { composeBody, type TransactionBody } from './transaction-body.js';
import { EncodedCommandEvent } from '../events/encoded-command.js';
import { PositionKeys, decodePosition, formatPosition, withPart } from './position.js';
import { type CommandContext, encodedPlainOp, KeyTable, type Op, type TranslatedItem, plainOp, translateCommands } from './translate.js';
import { type Chunk, type ChunkContext, type Part, type Prepared, buildChunk } from './chunk-builder.js';
import { TransactionRunner, connectionOrReplyError } from './transaction-runner.js';
import { ClusterWriter } from './cluster-writer.js';
import { databaseCount, probeDestination } from './destination-probe.js';
import { type DomainState, type StreamState, WriterState, emptyDomain } from './writer-state.js';
import type { BatchResult, DestinationInfo, DestinationWriterOptions, ResolvedWriterOptions, WriterStats } from './writer-types.js';

export type { BatchResult, DestinationInfo, DestinationWriterOptions, WriterLogger, WriterStats } from './writer-types.js';

/** Events of one stream, in its order. */
export interface StreamEvents {
  stream: string;
  events: ChangeEvent[];
}

export interface ApplyOptions {
  /** Refuse the call if an earlier one failed after `writeFailures()` returned this. */
  unlessFailedSince?: number;
}

// ---------------------------------------------------------------------------------------------

/** What `prepare` gives for each event (the parts of a `Prepared`, no object made for them). */
type PreparedSink = (index: number, event: ChangeEvent, db: number | undefined, items: readonly TranslatedItem[], dropped: readonly string[], op: Op | null) => void;

/** Shared empty lists of events without commands (a snapshot key is neither translated nor dropped). */
const NO_ITEMS: readonly TranslatedItem[] = Object.freeze([]);
const NO_NAMES: readonly string[] = Object.freeze([]);
const NO_OPS: readonly Op[] = Object.freeze([]);

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

  private readonly opts: ResolvedWriterOptions;
  private topo: Topology | null = null;
  /** Standalone: the connection transactions go through (see sendBatch, transaction-runner.ts). */
  private txConnection: RespConnection | null = null;
  private dinfo: DestinationInfo | null = null;
  private readonly dbMarkerKeys = new Map<number, string>();
  private keys: PositionKeys | null = null;
  private keyTable: KeyTable | null = null;
  /** What this writer knows of the streams' positions and the epoch markers (shared with its pieces). */
  private readonly state = new WriterState();
  /** The pieces that work for it, made at start, once the destination is known. */
  private chunkContext: ChunkContext | null = null;
  private transactions: TransactionRunner | null = null;
  /** Cluster destination only. */
  private cluster: ClusterWriter | null = null;
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
   * A dry run of `applyStreams` for the applier's warm-up (applier/warm-up.ts): the events are
   * translated, built into transactions and encoded as RESP exactly as for real, and thrown away.
   * Nothing is sent, and nothing the writer knows changes (positions, epoch markers, stats): the
   * transactions are built on an empty position and with each db's epoch marker at the events'
   * epoch, so no epoch flush is built. A standalone destination only (a cluster writer routes
   * each command by slot; it is not rehearsed). Throws if the writer has not started.
   */
  rehearse(segments: StreamEvents[]): void {
    if (!this.topo || this.topo.kind !== 'standalone') return;
    const { parts } = this.prepareStandalone({ segments, prepared: null });
    const markers = new Map<string, number | null>();
    for (const p of parts) if (p.markerKey) markers.set(p.markerKey, p.prep.event.pos.epoch);
    const unwritten = emptyDomain(null);
    const noSkips = new Set<string>();
    for (let from = 0; from < parts.length; ) {
      const chunk = buildChunk(this.chunkContext!, parts, from, () => unwritten, noSkips, markers);
      composeBody(chunk.ops, this.opts.positionDb, true);
      from = chunk.end;
    }
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
      const st = this.state.stream(stream);
      const topo = this.topo!;
      const domain = topo.kind === 'standalone' ? 0 : this.keys!.homeSlot(stream);
      if (!st.domains.has(domain)) {
        if (topo.kind === 'standalone') await this.loadStandalone(stream, st, new Set(), topo.client);
        else await this.cluster!.loadSlots(stream, st, [domain]);
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
      if (res[1]?.[0]) throw connectionOrReplyError(res[1][0], 'reading positions');
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
    return this.state.heartbeatMs;
  }

  /** Lag in ms from the latest heartbeat (null before the first). */
  lagMs(now = Date.now()): number | null {
    return this.state.heartbeatMs === null ? null : Math.max(0, now - this.state.heartbeatMs);
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
    this.transactions?.disarm();
    this.topo = null;
  }

  /** Drops the connections at once (in-flight transactions end with an unknown outcome). */
  disconnect(): void {
    this.closed = true;
    if (this.topo) closeTopology(this.topo);
    this.txConnection?.close();
    this.transactions?.disarm();
  }

  // -------------------------------------------------------------------------------------------
  // start

  private async doStart(): Promise<void> {
    const topo = await openTopology(this.opts.url, 'replistream-writer');
    this.topo = topo;
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
    this.dinfo = await probeDestination(topo, masters, this.opts);
    if (cluster) this.keyTable = await KeyTable.load(masters[0]);
    else this.databases = await databaseCount(masters[0]);
    this.chunkContext = { cluster, opts: this.opts, destination: this.dinfo, markers: this.state.markers };
    this.transactions = new TransactionRunner(topo, this.keys, this.opts, this.stats, this.state);
    this.cluster = topo.kind === 'cluster' ? new ClusterWriter(topo, this.keys, this.opts, this.stats, this.state, this.chunkContext, this.transactions) : null;
    this.opts.logger.info(
      { destination: topo.endpoint.display, topology: topo.kind, version: this.dinfo.version, rdbVersion: this.dinfo.rdbVersion, positionDb: cluster ? 0 : this.opts.positionDb },
      'destination writer connected',
    );
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
        const prepared: Prepared[] = [];
        this.prepare(seg.stream, seg.events, 0, (index, event, db, items, dropped, op) => prepared.push({ index, event, db, items, dropped, op }));
        const r = await this.cluster!.apply(seg.stream, prepared);
        total.applied += r.applied;
        total.skipped += r.skipped;
      }
      return total;
    } catch (err) {
      // forget what we knew of the streams: the next batch re-reads them from the destination
      for (const seg of segments) this.state.streams.delete(seg.stream);
      this.state.markers.clear();
      throw err;
    }
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
    const transactions = this.transactions!;
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
      for (const name of streamNames) await this.loadStandalone(name, this.state.stream(name), markerKeys, client);
      const chunk = ahead?.chunk.start === from ? ahead.chunk : buildChunk(this.chunkContext!, parts, from, (name) => this.state.stream(name).domains.get(0)!, skipIds);
      const body = ahead?.chunk === chunk ? ahead.body : null;
      ahead = null;
      if (!chunk.positionChanged && chunk.ops.length === 0 && chunk.markerSets.size === 0) {
        transactions.commitChunk(0, chunk, result, false);
        from = chunk.end;
        continue;
      }
      const target = this.txConnection ?? client;
      const running = transactions.execTransaction(target, this.opts.positionDb, chunk, (name) => this.keys!.position(name), body);
      // (on an open connection its bytes have left: RespConnection.send writes before returning)
      if (target instanceof RespConnection) {
        if (chunk.end < parts.length) ahead = this.buildAhead(parts, chunk.end, chunk, skipIds);
        else if (this.queuedCalls.length > 0) carry = this.buildNextCallAhead(this.queuedCalls[0], chunk);
      }
      const outcome = await running;
      const next = await transactions.handleOutcome(0, chunk, parts, outcome, skipIds, result, ++attempts);
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
        const st = this.state.streams.get(name);
        if (!st || !st.domains.has(0) || !st.errorChecked) return null;
      }
      for (const k of markerKeys) if (!this.state.markers.has(k) && !chunk.markers.has(k)) return null;
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
      if (!share) return this.state.stream(name).domains.get(0)!;
      // what commitChunk makes of it
      return { pos: share.state.pos, stored: share.positionChanged && share.posToStore ? share.posToStore : share.state.stored };
    };
    try {
      const next = buildChunk(this.chunkContext!, parts, from, after, skipIds, chunk.markers);
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
    const wantMarkers = [...markerKeys].filter((k) => !this.state.markers.has(k));
    const needPos = !st.domains.has(0);
    const needErr = !st.errorChecked;
    if (!needPos && !needErr && wantMarkers.length === 0) return;
    const p = client.pipeline().select(this.opts.positionDb);
    if (needPos) p.get(keys.position(stream));
    if (needErr) p.get(keys.error(stream));
    const markerList = wantMarkers;
    if (markerList.length) p.mget(...markerList);
    const res = (await p.exec()) ?? [];
    for (const r of res) if (r[0]) throw connectionOrReplyError(r[0], 'reading positions');
    let i = 1;
    if (needPos) st.domains.set(0, emptyDomain(decodePosition(res[i++][1] as string | null, keys.position(stream))));
    if (needErr) {
      this.transactions!.checkErrorMarker(stream, res[i++][1] as string | null);
      st.errorChecked = true;
    }
    if (markerList.length) {
      const vals = res[i++][1] as Array<string | null>;
      markerList.forEach((k, j) => this.state.markers.set(k, vals[j] === null ? null : Number(vals[j])));
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
