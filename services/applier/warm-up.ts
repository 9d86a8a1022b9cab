/**
 * The applier's warm-up: a rehearsal of the command path at start. Made-up command events
 * (events/rehearsal.ts) are encoded as a record's body and then go through what every real record
 * goes through — decoding (with the writer's read options), the stream queue, the planner and the
 * writer's translation, transaction building and RESP encoding — and the transactions are thrown
 * away (`DestinationWriter.rehearse`): nothing is sent to the destination, no position moves.
 *
 * Why: a full sync runs the snapshot path only, so when the first commands arrive V8 has compiled
 * none of the command path (and throws away code compiled for snapshot events when command events
 * reach it): measured before this existed, at 100,000 SET/s right after a full sync, the applier
 * ran event-loop turns of ~85 ms for over a second, and the end-to-end lag of those writes reached
 * 0.3–0.5 s (p99) where it stays under 0.1 s once warm. The rehearsal moves that compiling to the
 * start, while the consumer group is being joined (mostly waiting on the network). The service
 * runs it again once a snapshot is written: the snapshot's events (markers, keys) reach the
 * functions the rehearsal compiled for commands alone, and V8 throws that code away
 * (`--trace-deopt`: 20 of them at the snapshot's first records), to compile it again under the
 * first real commands; rehearsed once more, it is compiled for both before they come.
 *
 * It runs in slices (one record of events per event-loop turn, common/idle-slices.ts) and waits
 * while a snapshot is being applied (the service's `busy`); the `warm-up-units` setting says how
 * many units (0: none).
 */
import type { ChangeEvent, CommandEvent } from '../events/model.js';
import { NO_PARTICIPANTS } from '../events/model.js';
import { decodeBatch, encodeBatch } from '../events/codec.js';
import type { ReadOptions } from '../events/fast-reader.js';
import { REHEARSAL_REPLID, rehearsalUnits } from '../events/rehearsal.js';
import { planApply, type PlanSegment } from './barrier.js';
import { StreamQueue } from './stream-queue.js';
import { runInSlices, type SliceOptions, type SliceResult } from '../common/idle-slices.js';

/** Events per made-up record (capture packs at most 1,000 per record). */
const EVENTS_PER_RECORD = 500;
const STREAM = 'replistream-rehearsal:0';

/** What the rehearsal needs of the destination writer. */
export interface RehearsalWriter {
  /** Runs a plan's segments through translation and transaction building, sending nothing. */
  rehearse(segments: PlanSegment[]): void;
}

/**
 * Rehearses the command path with `units` units (rounded up to whole records) of source db `db` (a
 * db the writer maps, or they are dropped before the interesting part).
 */
export async function rehearseApplyPath(
  writer: RehearsalWriter,
  readOptions: () => ReadOptions,
  db: number,
  options: { units: number } & SliceOptions,
): Promise<SliceResult> {
  const queue = new StreamQueue('replistream-rehearsal', 0, () => undefined);
  const decode = async (r: { value?: Buffer | null }): Promise<ChangeEvent[]> => decodeBatch(r.value!, undefined, readOptions());
  let offset = 0;
  // one record's value, made once and read again for every record: encoding it is capture's work
  let sourceOffset = 0;
  // positions as capture writes them (an epoch, a 40-digit replication id), and the record's last
  // event a heartbeat, as every partition gets one a second
  const pos = () => ({ epoch: 1, offset: (sourceOffset += 40), seq: 0, replid: REHEARSAL_REPLID });
  const events: ChangeEvent[] = [...rehearsalUnits(EVENTS_PER_RECORD - 1)].map(
    (commands): CommandEvent => ({ kind: 'command', pos: pos(), db, commands, participants: NO_PARTICIPANTS, piece: null }),
  );
  events.push({ kind: 'heartbeat', pos: pos(), db, timeMs: Date.now() });
  const value = encodeBatch(events);
  const slice = async (): Promise<void> => {
    queue.push([{ offset: String(offset++), bytes: value.length, events: [], value }]);
    await queue.fill(EVENTS_PER_RECORD, decode);
    const plan = planApply({
      local: new Map([[STREAM, { items: queue.items, applied: null }]]),
      streamOf: () => STREAM,
      remote: new Map(),
      maxEvents: EVENTS_PER_RECORD,
      ownerMarker: false,
    });
    writer.rehearse(plan.segments);
    queue.consume(plan.consumed.get(STREAM) ?? 0);
  };
  return runInSlices(options.units, EVENTS_PER_RECORD, slice, options);
}
