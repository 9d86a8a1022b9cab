/**
 * The applier pipeline: Kafka records of the partitions this process holds → per-partition queues
 * of whole events (stream-queue.ts) → one ordered plan across them (barrier.ts) → the destination
 * writer, exactly once → the Kafka offset commit, after the write it covers.
 *
 * - Each topic-partition is a *stream* for the destination writer (`topic:partition`): its
 *   progress is stored in the destination with the writes, so the Kafka offset commit is only a
 *   hint for where to resume reading.
 * - The consumer's batch handler only queues what was fetched and returns, so fetching never
 *   waits for a barrier; a partition whose queue holds more than `maxQueuedBytes` is paused until
 *   it drains (memory stays bounded by bytes, per partition).
 * - One loop applies: it builds a plan from every queue, hands it to the writer as one sequence
 *   (a few large transactions), drops what was applied and commits the offsets in the background.
 *   It makes the next plan while the writer works on the one before and hands it over at once;
 *   the writer refuses it if the one before fails, and then both are planned again.
 *   When a barrier waits for another process, the loop reads that process's stored positions
 *   with a short backoff.
 * - A partition newly assigned to this process (a start, a rebalance) resumes where the
 *   destination says, not only where the group's commit says: the position stored with the last
 *   write carries the Kafka offset after its record (`resumeFrom`). A commit lags the writes by
 *   a plan and fails while the group rebalances; without this the new owner reads that plan again.
 */
import type { Logger } from '../common/log.js';
import { ReplistreamError } from '../common/errors.js';
import { compareWriterPositions, formatPosition, type WriterPosition } from '../destination/position.js';
import { comparePositions, type ChangeEvent, type SourcePosition } from '../events/model.js';
import type { DecodedBatch, DecodedRecord, EventConsumer, BatchContext } from '../transport/consumer.js';
import { HeapBudget } from '../common/heap-budget.js';
import { planApply, type Plan, type PlanStream } from './barrier.js';
import { StreamQueue, seriesStartOffset, type OrphanPiece } from './stream-queue.js';

/** What the applier needs from the destination writer. */
export interface Writer {
  /** `unlessFailedSince`: refuse the call if a call of the writer failed after `writeFailures()` returned it. */
  applyStreams(segments: Array<{ stream: string; events: ChangeEvent[] }>, options?: { unlessFailedSince?: number }): Promise<{ applied: number; skipped: number }>;
  /**
   * Failed calls of applyStreams so far. With it, the next plan is handed over while the writer
   * works on the one before (the writer refuses it if that one fails); without it, plans alternate.
   */
  writeFailures?(): number;
  appliedPosition(stream: string): Promise<SourcePosition | null>;
  storedPositions(streams: string[]): Promise<Map<string, SourcePosition | null>>;
}

export interface ApplierOptions {
  writer: Writer;
  consumer: Pick<EventConsumer, 'commit' | 'pause' | 'resume' | 'seek' | 'stop'>;
  /** Topic of a source db consumed by this group; null when the group does not consume it. */
  topicOfDb: (db: number) => string | null;
  logger: Logger;
  /** The destination is a cluster (barrier owners also mark their home slot). */
  cluster?: boolean;
  /** Record bytes queued per partition before it is paused (default 4 MiB). */
  maxQueuedBytes?: number;
  /**
   * Events per plan (default 2000, the writer's transaction size). A plan's events stay alive
   * until it is written: larger plans made the young generation copy and promote them.
   */
  maxEventsPerPlan?: number;
  /**
   * Plans never pass `maxEventsPerPlan` (a rate limit pays for each plan before it is written, so
   * its size is the limit's granularity). By default a plan takes every event decoded, which is a
   * little more than `maxEventsPerPlan` when records end past it.
   */
  strictPlanSize?: boolean;
  /** Resident size above which a full garbage collection is asked for between plans (default 256 MiB). */
  memoryBudgetBytes?: number;
  /**
   * Least time between two offset commits (default 200 ms): what the plans applied meanwhile is
   * committed together. Why not one commit per plan: at 15,000 mixed commands/s a plan took a
   * few milliseconds, and a commit request per plan cost the applier and the broker (on the same
   * cores) more than the reads it saves after a restart; the destination's positions, not the
   * commit, decide what is applied, and a new owner resumes at them (`resumeFrom`).
   */
  commitIntervalMs?: number;
  /**
   * Least time between two reads of other appliers' positions while this one makes progress
   * elsewhere (default 5 ms; a process with nothing else to do reads with a backoff of 0.5 to 10 ms).
   */
  remotePollIntervalMs?: number;
  /**
   * Partitions the operator told where to start (`--from`, at the group's first assignment):
   * read from there as asked, not moved on to the destination's position.
   */
  explicitStarts?: () => ReadonlyArray<{ topic: string; partition: number }>;
  /** Decodes a record handed over undecoded (the consumer's `deferDecoding`). */
  decode?: (topic: string, partition: number, record: DecodedRecord) => Promise<ChangeEvent[]>;
  /** Sees each record's events when they are decoded (progress tracking). */
  onDecoded?: (batch: DecodedBatch) => void;
}

export interface ApplierStats {
  /** Records received once. */
  records: number;
  /** Records delivered again by Kafka (already queued or applied) and dropped. */
  rereadRecords: number;
  /** Events handed to the writer (applied, or skipped there as duplicates). */
  events: number;
  plans: number;
  barriersApplied: number;
  barriersPassed: number;
  /** Slot hand-offs of a resharded cluster source passed (barrier.ts). */
  handOffsPassed: number;
  /** Times a plan stopped at a barrier that could not be settled yet. */
  barrierWaits: number;
  /** Reads of other processes' positions while a barrier waited for them. */
  remotePolls: number;
  discardedPieces: number;
  /** Pieces read again without their beginning, of events the destination already holds. */
  replayedPieces: number;
  /** Partitions read again from a series' first record (a piece arrived without its beginning). */
  seriesRewinds: number;
  /** Record bytes queued now. */
  queuedBytes: number;
  /** Failed plans retried (retriable destination errors). */
  retries: number;
  /** Full collections asked for because the process was over its memory budget. */
  heapCollections: number;
  /**
   * Records fetched on a newly assigned partition before the offset the destination's position
   * names, dropped without being decoded (their events are applied; see `resumeFrom`).
   */
  resumeSkippedRecords: number;
  /** Newly assigned partitions moved forward to the destination's resume offset. */
  resumes: number;
}

/** A newly assigned partition, until its first records are checked against the destination. */
interface ResumeCheck {
  /** The destination's position of the stream (undefined: not read yet). */
  stored?: WriterPosition | null;
  /** The offset the group's commit started reading at (where to go back if the token fails). */
  from?: string;
}

const streamId = (topic: string, partition: number) => `${topic}:${partition}`;

/** A plan handed to the writer, until the loop takes its outcome (`settle`). */
interface PlanInFlight {
  plan: Plan;
  /** The queues it was made from (a rebalance or a rewind may replace them meanwhile). */
  queues: Map<string, StreamQueue>;
  /** The write's error, or null. */
  writing: Promise<unknown>;
}

/** Items at the head of queue `q` (stream `id`) that the plan in flight takes. */
function takenBy(inflight: PlanInFlight | null, id: string, q: StreamQueue): number {
  return inflight !== null && inflight.queues.get(id) === q ? (inflight.plan.consumed.get(id) ?? 0) : 0;
}

export class Applier {
  readonly stats: ApplierStats = {
    records: 0,
    rereadRecords: 0,
    events: 0,
    plans: 0,
    barriersApplied: 0,
    barriersPassed: 0,
    handOffsPassed: 0,
    barrierWaits: 0,
    remotePolls: 0,
    discardedPieces: 0,
    replayedPieces: 0,
    seriesRewinds: 0,
    queuedBytes: 0,
    retries: 0,
    heapCollections: 0,
    resumeSkippedRecords: 0,
    resumes: 0,
  };
  private readonly heap: HeapBudget;
  private readonly opts: Required<Omit<ApplierOptions, 'cluster' | 'decode' | 'onDecoded' | 'explicitStarts'>> & Pick<ApplierOptions, 'decode' | 'onDecoded' | 'explicitStarts'> & { cluster: boolean };
  private readonly queues = new Map<string, StreamQueue>();
  /** Per stream: the high watermark of the last batch received (for onDecoded). */
  private readonly highWatermarks = new Map<string, string>();
  /** Per stream: the event whose series was last read again from its start (see settleOrphans). */
  private readonly rewound = new Map<string, string>();
  /** Streams assigned to this process (null until the first assignment: accept whatever comes). */
  private assigned: Set<string> | null = null;
  /** Streams newly assigned whose first records wait for the resume check (see `resumeFrom`). */
  private readonly resumeChecks = new Map<string, ResumeCheck>();
  /** Highest applied position per local stream (loaded from the writer before planning). */
  private readonly applied = new Map<string, SourcePosition | null>();
  private remote = new Map<string, SourcePosition | null>();
  private lastRemotePollAt = -Infinity;
  private stopped = false;
  private wake: (() => void) | null = null;
  /** Something happened since the loop last looked (records, an assignment, stop). */
  private dirty = false;
  private loop: Promise<void> | null = null;

  constructor(opts: ApplierOptions) {
    // (an option given as undefined keeps its default)
    const given = Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) as ApplierOptions;
    this.opts = { maxQueuedBytes: 4 * 1024 * 1024, maxEventsPerPlan: 2000, strictPlanSize: false, memoryBudgetBytes: 256 * 1024 * 1024, commitIntervalMs: 200, remotePollIntervalMs: 5, cluster: false, ...given };
    this.heap = new HeapBudget(this.opts.memoryBudgetBytes);
  }

  /** Stream ids of barrier participants, by db and partition (asked for every barrier a plan meets). */
  private readonly participantStreams = new Map<number, string | null>();

  /** One function for every plan: barrier.ts keeps what it worked out with it. */
  private readonly streamOfParticipant = (p: { db: number; partition: number }): string | null => this.participantStream(p.db, p.partition);

  private participantStream(db: number, partition: number): string | null {
    const k = db * 1_048_576 + partition;
    let id = this.participantStreams.get(k);
    if (id === undefined) {
      const topic = this.opts.topicOfDb(db);
      this.participantStreams.set(k, (id = topic === null ? null : streamId(topic, partition)));
    }
    return id;
  }

  /** Starts the apply loop (resolves when stopped). */
  start(): void {
    if (!this.loop) this.loop = this.run();
  }

  /** Stops after the plan in flight; resolves when the loop has ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.poke();
    await this.loop?.catch(() => undefined);
    await this.flushCommits();
  }

  private paused = false;

  /** Stops writing after the plan in flight (the position stays where it is) until `resume`. */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.poke();
  }

  /** Streams (topic:partition) assigned to this process at the last (re)join. */
  get assignment(): string[] {
    return [...(this.assigned ?? [])];
  }

  /** The partitions this process holds, after every (re)join of the group. */
  setAssignment(assignment: Array<{ topic: string; partitions: number[] }>): void {
    const mine = new Set(assignment.flatMap((a) => a.partitions.map((p) => streamId(a.topic, p))));
    for (const id of [...this.resumeChecks.keys()]) if (!mine.has(id)) this.resumeChecks.delete(id);
    // A cluster destination's stream positions are per slot (no one of them says the whole
    // record is applied): its partitions resume at the group's commit.
    if (!this.opts.cluster) {
      const explicit = new Set((this.opts.explicitStarts?.() ?? []).map((t) => streamId(t.topic, t.partition)));
      for (const id of mine) if (!this.assigned?.has(id) && !this.queues.has(id) && !explicit.has(id)) this.resumeChecks.set(id, {});
    }
    for (const id of [...this.queues.keys()]) {
      if (!mine.has(id)) {
        // another member applies it now; what we held is read again there
        this.queues.delete(id);
        this.applied.delete(id);
      }
    }
    this.assigned = mine;
    // what this process applied of the partitions it gives up is committed now, not after the
    // interval (the new owner resumes at the destination's positions anyway on a standalone one)
    this.commitNow();
    // A partition kept across the rebalance would be fetched again from its committed offset:
    // what is queued here already is not worth reading twice.
    for (const q of this.queues.values()) {
      const next = q.nextOffset;
      if (next !== null) this.opts.consumer.seek(q.topic, q.partition, next);
    }
    // positions may have moved while the group rebalanced: read them again
    this.applied.clear();
    this.poke();
  }

  /** The consumer's batch handler: queue and return (fetching never waits for a barrier). */
  async handle(batch: DecodedBatch, ctx: BatchContext): Promise<void> {
    if (this.stopped || !ctx.isRunning() || ctx.isStale()) return;
    const { topic, partition } = batch;
    const id = streamId(topic, partition);
    if (this.assigned && !this.assigned.has(id)) return;
    let records: readonly DecodedRecord[] = batch.records;
    let resumedAt: string | null = null;
    if (this.resumeChecks.has(id)) {
      const r = await this.resumeFrom(id, batch);
      if (r === null || ctx.isStale() || (this.assigned && !this.assigned.has(id))) return;
      ({ records, resumedAt } = r);
    }
    let q = this.queues.get(id);
    if (!q) {
      q = new StreamQueue(topic, partition, (reason, n) => this.onDiscard(id, reason, n));
      this.queues.set(id, q);
    }
    if (resumedAt !== null) {
      // the group's commit moves up to where reading resumed, even before a record follows
      q.startAt(resumedAt);
      this.commitSoon({ topic, partition, offset: resumedAt });
    }
    this.highWatermarks.set(id, batch.highWatermark);
    const { accepted, reread } = q.push(records);
    this.stats.records += accepted;
    this.stats.rereadRecords += reread;
    this.countQueued();
    if (!q.paused && q.wholeBytes > this.opts.maxQueuedBytes) {
      q.paused = true;
      this.opts.consumer.pause(topic, [partition]);
    }
    if (accepted > 0) this.poke();
  }

  /**
   * The first records of a newly assigned partition, checked against the destination: its stored
   * position carries (as `resume`) the offset after the record whose last event it is. Records
   * before that offset are applied: they are dropped unread, and reading goes on from there.
   * The token is trusted only when the record before it ends with exactly the stored position (a
   * topic deleted and created again, a position written by another group's topics, fail that
   * check): otherwise the partition is read from the group's commit as before. Returns the
   * records to queue, or null when the batch is dropped (a seek: the records that verify the
   * token, or back to the commit).
   */
  private async resumeFrom(id: string, batch: DecodedBatch): Promise<{ records: readonly DecodedRecord[]; resumedAt: string | null } | null> {
    const check = this.resumeChecks.get(id)!;
    const { topic, partition } = batch;
    const records: readonly DecodedRecord[] = batch.records;
    const first = BigInt(records[0].offset);
    const asFetched = { records, resumedAt: null };
    const done = () => {
      if (this.resumeChecks.get(id) === check) this.resumeChecks.delete(id);
      // a seek to verify the token went past the commit: go back there
      if (check.from !== undefined && first > BigInt(check.from)) {
        this.opts.consumer.seek(topic, partition, check.from);
        return null;
      }
      return asFetched;
    };
    if (check.stored === undefined) {
      check.from = records[0].offset;
      try {
        check.stored = ((await this.opts.writer.storedPositions([id])).get(id) ?? null) as WriterPosition | null;
      } catch (err) {
        this.opts.logger.warn({ stream: id, err: (err as Error).message }, 'could not read the stream\'s position to resume at it; reading from the group\'s commit');
        check.stored = null;
      }
      if (this.resumeChecks.get(id) !== check) return asFetched; // reassigned meanwhile
    }
    const stored = check.stored;
    const token = stored?.resume;
    if (!stored || token === undefined || !/^\d+$/.test(token)) return done();
    const resume = BigInt(token);
    if (resume <= first || resume > BigInt(batch.highWatermark)) return done();
    const verifyAt = resume - 1n;
    if (verifyAt > BigInt(batch.lastOffset)) {
      // the record that proves the token is further on: read from it
      this.opts.consumer.seek(topic, partition, verifyAt.toString());
      return null;
    }
    const rec = records.find((r) => BigInt(r.offset) === verifyAt);
    const events = rec ? (this.opts.decode ? await this.opts.decode(topic, partition, rec) : rec.events) : [];
    const last = events.length > 0 ? events[events.length - 1] : null;
    if (this.resumeChecks.get(id) !== check) return asFetched;
    if (!last || compareWriterPositions(last.pos as WriterPosition, stored) !== 0 || last.pos.replid !== stored.replid) {
      this.opts.logger.warn(
        { stream: id, resume: token, position: formatPosition(stored) },
        'the destination\'s resume offset does not match the record before it (topic recreated?): reading from the group\'s commit',
      );
      return done();
    }
    this.resumeChecks.delete(id);
    const kept = records.filter((r) => BigInt(r.offset) >= resume);
    this.stats.resumes++;
    this.stats.resumeSkippedRecords += Number(resume - BigInt(check.from ?? records[0].offset));
    this.opts.logger.info({ stream: id, committed: check.from, resume: token }, 'resuming the partition at the destination\'s position');
    return { records: kept, resumedAt: token };
  }

  private poke(): void {
    this.dirty = true;
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** Waits for a poke (new records, an assignment, stop) or `ms`; returns at once if poked meanwhile. */
  private idle(ms: number | null): Promise<void> {
    if (this.dirty) {
      this.dirty = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = ms === null ? null : setTimeout(() => this.poke(), ms);
      this.wake = () => {
        if (timer) clearTimeout(timer);
        this.dirty = false;
        resolve();
      };
    });
  }

  private async run(): Promise<void> {
    /** ms between reads of other processes' positions while nothing else can move */
    let backoff = 0.5;
    let failures = 0;
    /**
     * The plan the writer works on while the next one is made (see `pipelined`), and the plan just
     * made. Plans are settled (their items dropped, their offsets committed) in the order made.
     */
    let inflight: PlanInFlight | null = null;
    let made: PlanInFlight | null = null;
    /** The writer's failure count read before the oldest plan not settled was handed over. */
    let ticket = 0;
    while (!this.stopped) {
      let progressed = false;
      let awaiting = new Set<string>();
      this.dirty = false;
      made = null;
      try {
        if (this.paused) {
          // paused by the operator: nothing more is written; what was fetched waits in the queues
          if (inflight) {
            const f = inflight;
            inflight = null;
            await this.settle(f);
          }
          await this.idle(null);
          continue;
        }
        await this.decodeHeads(false, inflight);
        // decoding may have turned queued bytes into pieces of a series, which must be read to its end
        for (const q of this.queues.values()) this.relieve(q);
        await this.loadPositions();
        this.settleOrphans();
        const local = new Map<string, PlanStream>();
        const queues = new Map(this.queues); // a rebalance may replace them while the plan is written
        let decoded = 0;
        for (const [id, q] of queues) {
          // with a plan in flight, this one starts where that one ends
          const taken = takenBy(inflight, id, q);
          const items = taken > 0 ? q.items.slice(taken) : q.items;
          local.set(id, { items, applied: inflight?.plan.positions.get(id) ?? this.applied.get(id) ?? null });
          decoded += items.length;
        }
        const plan = planApply({
          local,
          streamOf: this.streamOfParticipant,
          remote: this.remote,
          // Everything decoded goes into this plan (records decode whole, so a little more than a
          // plan's worth may be): events left for the next plan lived long enough to be copied
          // by the young-generation collector, then promoted to the old generation to die there.
          maxEvents: this.opts.strictPlanSize ? this.opts.maxEventsPerPlan : Math.max(this.opts.maxEventsPerPlan, decoded),
          ownerMarker: this.opts.cluster,
        });
        awaiting = plan.awaiting;
        if (plan.barriersWaiting > 0) this.stats.barrierWaits++;
        if (plan.events > 0 || plan.consumed.size > 0) {
          // (a plan may only pass items, e.g. a barrier applied before a restart)
          if (!inflight) ticket = this.opts.writer.writeFailures?.() ?? 0;
          const writing: Promise<unknown> =
            plan.events > 0
              ? this.opts.writer.applyStreams(plan.segments, inflight ? { unlessFailedSince: ticket } : undefined).then(
                  () => null,
                  (err: unknown) => err,
                )
              : Promise.resolve(null);
          made = { plan, queues, writing };
          // While the destination works on this plan, the next one's records are decoded: the
          // wait for the destination's replies and the decoding overlap instead of alternating.
          if (plan.events > 0 && !this.opts.strictPlanSize) await this.decodeHeads(true);
        }
        if (inflight) {
          const f = inflight;
          inflight = null;
          await this.settle(f);
          progressed = true;
        }
        if (made) {
          const m: PlanInFlight = made;
          made = null;
          if (this.pipelined(m.plan)) {
            inflight = m;
            failures = 0;
            continue;
          }
          await this.settle(m);
          progressed ||= m.plan.consumed.size > 0 || m.plan.events > 0;
        }
        this.countQueued();
        failures = 0;
      } catch (err) {
        // A plan handed over after the one that failed is refused by the writer (its ticket);
        // neither is settled: their items stay queued and are planned again.
        for (const f of [inflight, made]) if (f) await f.writing;
        inflight = made = null;
        if (this.stopped) break;
        const e = err as Error;
        if (e instanceof ReplistreamError && !e.retriable) {
          this.opts.logger.error({ err: e.message }, 'applier stopped');
          this.stopped = true;
          await this.opts.consumer.stop(e).catch(() => undefined);
          break;
        }
        failures++;
        this.stats.retries++;
        this.applied.clear(); // the writer forgot the streams: read their positions again
        const delay = Math.min(100 * 2 ** Math.min(failures, 6), 5000);
        this.opts.logger.warn({ err: e.message, retryInMs: delay }, 'applying failed; retrying from the destination\'s positions');
        for (const until = Date.now() + delay; !this.stopped && Date.now() < until; ) await this.idle(until - Date.now());
        continue;
      }
      if (this.stopped) break;
      if (awaiting.size > 0) {
        // a barrier waits for appliers in other processes: read their positions
        if (!progressed) await this.idle(backoff);
        backoff = progressed ? 0.5 : Math.min(backoff * 2, 10);
        // While other streams make progress the loop comes back here after every plan; a read per
        // plan doubled the round trips of a process draining a backlog next to a waiting barrier
        // (its profile: reading positions cost as much CPU as writing the plans)
        if (progressed && performance.now() - this.lastRemotePollAt < this.opts.remotePollIntervalMs) continue;
        this.lastRemotePollAt = performance.now();
        try {
          this.remote = new Map([...this.remote, ...(await this.opts.writer.storedPositions([...awaiting]))]);
          this.stats.remotePolls++;
        } catch (err) {
          this.opts.logger.warn({ err: (err as Error).message }, 'reading other appliers\' positions failed; retrying');
        }
        continue;
      }
      backoff = 0.5;
      if (!progressed) await this.idle(null);
    }
    // stopping: the plan in flight is written (or fails) before the loop ends, and its offsets
    // are committed
    if (inflight) await this.settle(inflight).catch(() => undefined);
  }

  /**
   * Whether the loop goes on to make the next plan while the writer works on `plan` (instead of
   * waiting for it first). Why: a plan of a few thousand events took the destination ~11 ms,
   * and making the next one (decoding, planning, translating, building its first transaction)
   * ~9 ms, during which the destination waited. Only for plain progress: not when the writer
   * cannot refuse a plan whose predecessor failed, under a rate limit (a plan is paid for before
   * it is written), or when the plan waits for other processes (the loop then reads their
   * positions).
   */
  private pipelined(plan: Plan): boolean {
    return plan.events > 0 && plan.awaiting.size === 0 && plan.barriersWaiting === 0 && !this.opts.strictPlanSize && this.opts.writer.writeFailures !== undefined;
  }

  /**
   * Takes the outcome of a plan handed to the writer: throws its error, or drops what it applied
   * from the queues, adopts its positions and commits the offsets after it.
   */
  private async settle(f: PlanInFlight): Promise<void> {
    const err = await f.writing;
    if (err !== null) throw err;
    const plan = f.plan;
    this.stats.plans++;
    this.stats.events += plan.events;
    this.stats.barriersApplied += plan.barriersApplied;
    this.stats.barriersPassed += plan.barriersPassed;
    this.stats.handOffsPassed += plan.handOffsPassed;
    for (const [id, p] of plan.positions) if (this.applied.has(id)) this.applied.set(id, p);
    for (const [id, n] of plan.consumed) {
      const q = f.queues.get(id)!;
      if (this.queues.get(id) !== q) continue;
      q.consume(n);
      const offset = q.commitOffset();
      if (offset !== null) this.commitSoon({ topic: q.topic, partition: q.partition, offset });
      this.relieve(q);
    }
    if (this.heap.check()) this.stats.heapCollections++;
    this.countQueued();
  }

  /**
   * Pieces read without the pieces before them (reading started inside a series: a group started
   * with `--from offset:…`, or an offset committed by an older version). Never a silent gap: a
   * piece of an event the destination's position already covers is a replay and is dropped;
   * otherwise the partition is read again from the record of the series' first piece. If the same
   * series comes back without its beginning again (the records before it were deleted by
   * retention), the applier stops with an error naming the position.
   */
  private settleOrphans(): void {
    for (const [id, q] of this.queues) {
      if (q.orphans.length === 0) continue;
      const applied = this.applied.get(id) ?? null;
      let rewindTo: OrphanPiece | null = null;
      for (const o of q.orphans) {
        if (applied && comparePositions(o.eventPos, applied) <= 0) {
          this.stats.replayedPieces++;
          continue;
        }
        rewindTo = o;
        break;
      }
      q.orphans.length = 0;
      if (!rewindTo) continue;
      const start = seriesStartOffset(rewindTo);
      const seen = this.rewound.get(id);
      if (seen !== undefined && seen === formatPosition(rewindTo.eventPos)) {
        throw new ReplistreamError(
          'PROTOCOL',
          `${q.topic}[${q.partition}] offset ${rewindTo.offset}: piece ${rewindTo.index} of the event at ${formatPosition(rewindTo.eventPos)} was read again without the pieces before it ` +
            `(read from offset ${start}), and the destination's position (${formatPosition(applied)}) shows the event was not applied: its first records are gone from the topic ` +
            `(retention?); re-synchronize (a new group, or --from earliest on an emptied destination)`,
          { retriable: false, details: { topic: q.topic, partition: q.partition, offset: rewindTo.offset } },
        );
      }
      this.rewound.set(id, formatPosition(rewindTo.eventPos));
      this.stats.seriesRewinds++;
      this.opts.logger.warn(
        { stream: id, offset: rewindTo.offset, piece: rewindTo.index, from: start, position: rewindTo.eventPos },
        'read a piece of an event without the pieces before it: reading the partition again from the event\'s first record',
      );
      // a fresh queue (its own reread and piece state) fed from the first piece's record; the
      // batches fetched before the seek are stale and skipped by the consumer
      const fresh = new StreamQueue(q.topic, q.partition, (reason, n) => this.onDiscard(id, reason, n));
      this.queues.set(id, fresh);
      this.opts.consumer.seek(q.topic, q.partition, start);
      if (q.paused) this.opts.consumer.resume(q.topic, [q.partition]);
    }
  }

  private onDiscard(id: string, reason: string, n: number): void {
    this.stats.discardedPieces += n;
    this.opts.logger.warn({ stream: id, reason, pieces: n }, 'discarded pieces of an event (a series cut short: capture re-sent the event whole)');
  }

  private countQueued(): void {
    let n = 0;
    for (const q of this.queues.values()) n += q.bytes;
    this.stats.queuedBytes = n;
  }

  /** Resumes a paused partition once its whole events are down to half the budget. */
  private relieve(q: StreamQueue): void {
    if (q.paused && q.wholeBytes <= this.opts.maxQueuedBytes / 2 && this.queues.get(streamId(q.topic, q.partition)) === q) {
      q.paused = false;
      this.opts.consumer.resume(q.topic, [q.partition]);
    }
  }

  /**
   * Decodes the records at the head of the queues: about as many events as one plan takes, shared
   * among the queues that have records. Why not a plan's worth in every queue: with four busy
   * partitions that kept three plans of decoded events alive across each plan, every young
   * generation collection copied them and then promoted them to the old generation, where they
   * died: in a burst of SETs a third of the applier's time went to the collector.
   */
  /**
   * Decodes a plan's worth of events at the head of the queues; `ahead`: about one more plan's
   * worth behind what each queue holds (while the destination works on the current plan).
   */
  private async decodeHeads(ahead = false, inflight: PlanInFlight | null = null): Promise<void> {
    const decode = this.opts.decode;
    const onDecoded = this.opts.onDecoded;
    const queues = [...this.queues.values()];
    let busy = 0;
    for (const q of queues) if (q.items.length > 0 || q.undecodedRecords > 0) busy++;
    const share = Math.ceil(this.opts.maxEventsPerPlan / Math.max(1, busy));
    for (const q of queues) {
      if (ahead && q.undecodedRecords === 0) continue;
      // the items of a plan in flight are not this plan's
      const taken = takenBy(inflight, streamId(q.topic, q.partition), q);
      await q.fill(
        ahead ? q.items.length + share : taken + share,
        async (r) => (decode ? decode(q.topic, q.partition, r as DecodedRecord) : r.events),
        onDecoded &&
          ((r, events) => {
            const rec = r as DecodedRecord;
            onDecoded({ topic: q.topic, partition: q.partition, highWatermark: this.highWatermarks.get(streamId(q.topic, q.partition)) ?? '0', records: [{ ...rec, events }], lastOffset: rec.offset });
          }),
      );
    }
  }

  /** Loads the applied position of every queued stream that has none yet. */
  private async loadPositions(): Promise<void> {
    for (const id of this.queues.keys()) {
      if (!this.applied.has(id)) this.applied.set(id, await this.opts.writer.appliedPosition(id));
    }
  }

  private readonly toCommit = new Map<string, { topic: string; partition: number; offset: string }>();
  private committing: Promise<void> | null = null;
  /** When the last commit request went out (ms, monotonic). */
  private lastCommitAt = -Infinity;
  /** Wakes the committer `commitIntervalMs` after the last commit (`flushCommits` cuts it short). */
  private commitWait: { timer: NodeJS.Timeout; resolve: () => void } | null = null;

  /**
   * The commit is only where reading resumes (the destination's positions decide what is
   * applied), so it goes out in the background, coalesced over `commitIntervalMs`, instead of
   * delaying the next plan.
   */
  private commitSoon(o: { topic: string; partition: number; offset: string }): void {
    this.toCommit.set(`${o.topic}:${o.partition}`, o);
    if (!this.committing) this.committing = this.drainCommits();
  }

  private async drainCommits(): Promise<void> {
    while (this.toCommit.size > 0) {
      const wait = this.lastCommitAt + this.opts.commitIntervalMs - performance.now();
      if (wait > 0 && !this.stopped) {
        await new Promise<void>((resolve) => {
          this.commitWait = { timer: setTimeout(resolve, wait), resolve };
        });
        this.commitWait = null;
      }
      this.lastCommitAt = performance.now();
      const batch = [...this.toCommit.values()];
      this.toCommit.clear();
      try {
        await this.opts.consumer.commit(batch);
      } catch (err) {
        this.opts.logger.warn({ err: (err as Error).message }, 'offset commit failed (reading resumes a little earlier; nothing is applied twice)');
      }
    }
    this.committing = null;
  }

  /** Sends the pending commit without waiting for the rest of `commitIntervalMs`. */
  private commitNow(): void {
    this.lastCommitAt = -Infinity;
    if (this.commitWait) {
      clearTimeout(this.commitWait.timer);
      this.commitWait.resolve();
    }
  }

  /** Waits for the offsets handed to the background committer. */
  async flushCommits(): Promise<void> {
    this.commitNow();
    while (this.committing) await this.committing;
  }
}
