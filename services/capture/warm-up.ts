/**
 * Capture's warm-up: a rehearsal of the command path at start. Made-up replication-stream bytes
 * (events/rehearsal.ts) go through what every real command goes through — the RESP parser, the
 * unit grouper, the partition router and the record packer (Avro encoding) — and the records are
 * thrown away: nothing reaches Kafka or changes the capture's state.
 *
 * Why: a full sync runs the RDB path only, so when the first commands arrive V8 has compiled none
 * of the command path and runs it in its interpreter, several times slower. Measured before this
 * existed, at 100,000 SET/s right after a full sync: capture's event loop busy for ~0.9 s with
 * turns of up to 60 ms, and the end-to-end lag of the writes of that first second up to 0.3–0.5 s
 * (p99) where it stays under 0.1 s once warm. The rehearsal moves that compiling to the start.
 *
 * It runs in slices (a few hundred commands per event-loop turn, common/idle-slices.ts) and waits
 * while a snapshot is being captured (the service's `busy`), so it takes the idle moments before
 * and after it; the `warm-up-units` setting says how many units (0: none).
 */
import { CommandGrouper, RespParser } from '../replication/resp/index.js';
import { PACK_ARGS_FROM } from '../events/packed-args.js';
import { NO_PARTICIPANTS, type CommandEvent } from '../events/model.js';
import { rehearsalStreamBytes, rehearsalUnits } from '../events/rehearsal.js';
import { RecordPacker, type SealedRecord } from '../events/split.js';
import { routeUnit, type RoutingContext } from './routing.js';
import { runInSlices, type SliceOptions, type SliceResult } from '../common/idle-slices.js';
import { STREAM_EVENTS_PER_RECORD } from './event-buffer.js';

const UNITS_PER_SLICE = 500;

/** What the rehearsal did: the slices' units and times, and what the packer made of them. */
export interface WarmUpResult extends SliceResult {
  /** Events encoded (a unit routed to several partitions is one per partition, as for real). */
  events: number;
  /** Bytes of the records sealed (and thrown away). */
  recordBytes: number;
}

/**
 * Rehearses the command path with `units` units (rounded up to whole slices) routed as `routing`
 * says (its synced dbs and partitions), `maxRecordBytes` records. Resolves when done; `stopped`
 * ends it early, `busy` holds it. Every slice parses the same bytes, made once: making them is no
 * part of the path.
 */
export async function rehearseCommandPath(
  routing: RoutingContext,
  maxRecordBytes: number,
  options: { units: number } & SliceOptions,
): Promise<WarmUpResult> {
  const db = routing.syncedDbs[0] ?? 0;
  // the same parser options as the replica link's (views into the read buffers, big args packed)
  const parser = new RespParser({ views: true, packArgsFrom: PACK_ARGS_FROM });
  const grouper = new CommandGrouper({ db });
  const packer = new RecordPacker(maxRecordBytes, { maxEvents: STREAM_EVENTS_PER_RECORD });
  const sealed: SealedRecord[] = [];
  let events = 0;
  let recordBytes = 0;
  const bytes = rehearsalStreamBytes([...rehearsalUnits(UNITS_PER_SLICE)]);
  const runSlice = (): void => {
    for (const cmd of parser.push(bytes)) {
      const unit = grouper.push(cmd);
      if (!unit) continue;
      const participants = routeUnit(unit.db, unit.commands, routing);
      if (participants.length === 0) continue;
      const event: CommandEvent = {
        kind: 'command',
        pos: { epoch: 0, offset: unit.endOffset, seq: 0, replid: '' },
        db: unit.db,
        commands: unit.commands,
        piece: null,
        participants: participants.length > 1 ? (participants as CommandEvent['participants']) : NO_PARTICIPANTS,
      };
      // one event per participant partition, as capture encodes it into each partition's record
      for (let i = 0; i < participants.length; i++) packer.pushOrPieces(event, sealed);
      events += participants.length;
    }
    packer.seal(sealed);
    for (const r of sealed) recordBytes += r.body.length;
    sealed.length = 0;
  };
  const r = await runInSlices(options.units, UNITS_PER_SLICE, runSlice, options);
  return { ...r, events, recordBytes };
}
