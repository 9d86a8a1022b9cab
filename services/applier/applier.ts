/**
 * The applier pipeline: Kafka records of one partition → whole events (pieces reassembled) →
 * destination writes, exactly once, then the Kafka offset commit.
 *
 * - Each topic-partition is a *stream* for the destination writer (`topic:partition`): its
 *   progress is stored in the destination with the writes (see services/destination/writer.ts),
 *   so the Kafka offset commit is only a hint for where to resume reading; it is made after the
 *   write it covers.
 * - A cross-partition unit (its `participants` list several partitions) is a barrier
 *   (barrier.ts). When it cannot pass yet, the partition is rewound to the barrier's record and
 *   paused, and resumed once the barrier can pass: the consumer never blocks, so partitions
 *   handled by this same process keep flowing and can reach the barrier too.
 */
import type { Logger } from '../common/log.js';
import type { ChangeEvent, CommandEvent } from '../events/model.js';
import { PieceAssembler } from '../events/split.js';
import type { DecodedBatch, EventConsumer, BatchContext } from '../transport/consumer.js';
import { tryPass, type BarrierStore } from './barrier.js';

/** What the applier needs from the destination writer. */
export interface Writer {
  applyBatch(stream: string, events: ChangeEvent[]): Promise<{ applied: number; skipped: number }>;
}

export interface ApplierOptions {
  writer: Writer;
  barriers: BarrierStore;
  consumer: Pick<EventConsumer, 'commit' | 'pause' | 'resume' | 'seek'>;
  /** Topic of each source db (to name the streams of barrier participants). */
  topicOfDb: (db: number) => string;
  logger: Logger;
  /** How long a barrier may wait inside the batch handler before the partition is paused instead. */
  barrierInlineWaitMs?: number;
}

export interface ApplierStats {
  events: number;
  records: number;
  barriersApplied: number;
  barriersPassed: number;
  barrierWaits: number;
  discardedPieces: number;
}

interface Pending {
  event: ChangeEvent;
  /** Offset of the record where the event's first piece is. */
  offset: string;
}

export class Applier {
  readonly stats: ApplierStats = { events: 0, records: 0, barriersApplied: 0, barriersPassed: 0, barrierWaits: 0, discardedPieces: 0 };
  private readonly opts: ApplierOptions;
  private readonly assemblers = new Map<string, { assembler: PieceAssembler; firstPieceOffset: string | null }>();
  private readonly waiting = new Set<string>();
  private stopped = false;

  constructor(opts: ApplierOptions) {
    this.opts = opts;
  }

  stop(): void {
    this.stopped = true;
  }

  private assemblerFor(stream: string) {
    let a = this.assemblers.get(stream);
    if (!a) {
      a = {
        assembler: new PieceAssembler({
          onDiscard: (reason, n, pos) => {
            this.stats.discardedPieces += n;
            this.opts.logger.warn({ stream, reason, pieces: n, pos }, 'discarded pieces of an event');
          },
        }),
        firstPieceOffset: null,
      };
      this.assemblers.set(stream, a);
    }
    return a;
  }

  /** The consumer's batch handler. */
  async handle(batch: DecodedBatch, ctx: BatchContext): Promise<void> {
    const { topic, partition } = batch;
    const stream = `${topic}:${partition}`;
    const a = this.assemblerFor(stream);
    // Records are re-read from the committed offset after a rebalance or a rewind: start clean.
    if (batch.records.length && a.firstPieceOffset !== null && BigInt(batch.records[0].offset) <= BigInt(a.firstPieceOffset)) {
      a.assembler.reset();
      a.firstPieceOffset = null;
    }
    const pending: Pending[] = [];
    for (const record of batch.records) {
      this.stats.records++;
      for (const ev of record.events) {
        const piece = 'piece' in ev ? ev.piece : null;
        if (piece && piece.index === 0) a.firstPieceOffset = record.offset;
        const whole = a.assembler.push(ev);
        if (whole) {
          pending.push({ event: whole, offset: whole === ev ? record.offset : (a.firstPieceOffset ?? record.offset) });
          if (whole !== ev) a.firstPieceOffset = null;
        }
      }
    }

    let run: ChangeEvent[] = [];
    const flushRun = async () => {
      if (run.length === 0) return;
      await this.opts.writer.applyBatch(stream, run);
      this.stats.events += run.length;
      run = [];
    };
    for (const p of pending) {
      if (this.stopped || !ctx.isRunning() || ctx.isStale()) return;
      const e = p.event;
      if (e.kind === 'command' && e.participants.length > 1) {
        await flushRun();
        const passed = await this.passBarrier(stream, e);
        if (!passed) {
          // Everything before the barrier's record is applied: commit it, rewind to the barrier
          // and wait without blocking the consumer.
          await this.opts.consumer.commit([{ topic, partition, offset: p.offset }]);
          this.opts.consumer.seek(topic, partition, p.offset);
          this.waitForBarrier(topic, partition, stream, e);
          return;
        }
        continue;
      }
      run.push(e);
      if (run.length >= 5000) {
        await flushRun();
        await ctx.heartbeat();
      }
    }
    await flushRun();
    // Commit up to the first record still holding pieces of an incomplete event. The commit is
    // only where reading resumes (the destination's positions decide what is applied), so it
    // goes out in the background, coalesced, instead of delaying the next fetch.
    const next = a.firstPieceOffset ?? (BigInt(batch.lastOffset) + 1n).toString();
    this.commitSoon({ topic, partition, offset: next });
  }

  private readonly toCommit = new Map<string, { topic: string; partition: number; offset: string }>();
  private committing: Promise<void> | null = null;

  private commitSoon(o: { topic: string; partition: number; offset: string }): void {
    this.toCommit.set(`${o.topic}:${o.partition}`, o);
    if (!this.committing) this.committing = this.drainCommits();
  }

  private async drainCommits(): Promise<void> {
    while (this.toCommit.size > 0) {
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

  /** Waits for the offsets handed to the background committer. */
  async flushCommits(): Promise<void> {
    while (this.committing) await this.committing;
  }

  private barrierRequest(stream: string, e: CommandEvent) {
    const participants = e.participants.map((p) => `${this.opts.topicOfDb(p.db)}:${p.partition}`);
    return { id: `${e.pos.epoch}:${e.pos.offset}:${e.pos.seq}`, participants, me: stream };
  }

  /**
   * True when the barrier was applied or passed; false when it must wait. The other participants'
   * records usually arrive in the same fetch (capture writes them together) and are handled
   * concurrently by this process, so a short wait here usually lets the barrier pass at once,
   * before falling back to the slower pause-and-rewind.
   */
  private async passBarrier(stream: string, e: CommandEvent): Promise<boolean> {
    const req = this.barrierRequest(stream, e);
    const deadline = Date.now() + (this.opts.barrierInlineWaitMs ?? 300);
    let outcome = await tryPass(this.opts.barriers, req);
    for (let delay = 1; outcome === 'blocked' && Date.now() < deadline && !this.stopped; delay = Math.min(delay * 2, 10)) {
      await new Promise((r) => setTimeout(r, delay));
      outcome = await tryPass(this.opts.barriers, req);
    }
    if (outcome === 'apply') {
      await this.opts.writer.applyBatch(stream, [e]);
      await this.opts.barriers.markDone(req.id);
      this.stats.barriersApplied++;
      this.stats.events++;
      return true;
    }
    if (outcome === 'skip') {
      // Move this stream's position past the barrier without writing: a heartbeat event carries
      // only a position (time 0 does not move the lag measurement).
      await this.opts.writer.applyBatch(stream, [{ kind: 'heartbeat', pos: e.pos, db: e.db, timeMs: 0 }]);
      this.stats.barriersPassed++;
      return true;
    }
    return false;
  }

  private waitForBarrier(topic: string, partition: number, stream: string, e: CommandEvent): void {
    if (this.waiting.has(stream)) return;
    this.waiting.add(stream);
    this.stats.barrierWaits++;
    this.opts.consumer.pause(topic, [partition]);
    const req = this.barrierRequest(stream, e);
    const owner = req.participants[0] === stream;
    const total = new Set(req.participants).size;
    let delay = 2;
    const poll = async () => {
      if (this.stopped) return;
      try {
        const ready = owner ? (await this.opts.barriers.arrivals(req.id)) >= total : await this.opts.barriers.isDone(req.id);
        if (ready) {
          this.waiting.delete(stream);
          this.opts.consumer.resume(topic, [partition]);
          return;
        }
      } catch (err) {
        this.opts.logger.warn({ err: (err as Error).message, stream }, 'barrier check failed; retrying');
      }
      delay = Math.min(delay * 2, 50);
      setTimeout(poll, delay).unref();
    };
    setTimeout(poll, delay).unref();
  }
}
