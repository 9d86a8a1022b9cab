/**
 * Capture's warm-up: a rehearsal of the command path at start. Made-up replication-stream bytes
 * (events/rehearsal.ts) go through what every real command goes through — the RESP parser, the
 * unit grouper, the stream source (heartbeats, own keys, key filter, routing) and an event buffer
 * of its own (record packing, Avro encoding, flushes, the durable position) — and the records are
 * thrown away: nothing reaches Kafka or changes the capture's state.
 *
 * Why: a full sync runs the RDB path only, so when the first commands arrive V8 has compiled none
 * of the command path and runs it in its interpreter, several times slower. Measured before this
 * existed, at 100,000 SET/s right after a full sync: capture's event loop busy for ~0.9 s with
 * turns of up to 60 ms, and the end-to-end lag of the writes of that first second up to 0.3–0.5 s
 * (p99) where it stays under 0.1 s once warm. The rehearsal moves that compiling to the start.
 * It goes through the stream source and the event buffer themselves, not only the packer below
 * them: a rehearsal that stopped at the packer left those two to be compiled (and the packer's
 * code thrown away, `--trace-deopt`) by the first real commands.
 *
 * It runs in slices (a few hundred commands per event-loop turn, common/idle-slices.ts) and waits
 * while a snapshot is being captured (the service's `busy`), so it takes the idle moments before
 * and after it; the `warm-up-units` setting says how many units (0: none).
 */
import type { Logger } from '../common/log.js';
import { CommandGrouper, RespParser } from '../replication/resp/index.js';
import { PACK_ARGS_FROM } from '../events/packed-args.js';
import { REHEARSAL_REPLID, rehearsalStreamBytes, rehearsalUnits } from '../events/rehearsal.js';
import { RecordPacker, type SealedRecord } from '../events/split.js';
import { runInSlices, type SliceOptions, type SliceResult } from '../common/idle-slices.js';
import type { CaptureStats, EventSink, Work } from './capture-types.js';
import { EventBuffer } from './event-buffer.js';
import { KeyFilter } from './key-filter.js';
import { OwnKeys } from './own-keys.js';
import { StreamSource } from './stream-source.js';

const UNITS_PER_SLICE = 500;

/** What the rehearsal did: the slices' units and times, and what the packer made of them. */
export interface WarmUpResult extends SliceResult {
  /** Events encoded (a unit routed to several partitions is one per partition, as for real). */
  events: number;
  /** Bytes of the records sealed (and thrown away). */
  recordBytes: number;
}

/** The capture's settings the rehearsal follows. */
export interface RehearsalSetup {
  /** Synced dbs (the stream's units go to the first; heartbeats to all). */
  dbs: number[];
  partitions: number;
  maxRecordBytes: number;
  /** The heartbeat key capture writes on the source (null: none): one unit per slice is a heartbeat. */
  heartbeatKey: string | null;
  log: Logger;
}

/**
 * Rehearses the command path with `units` units (rounded up to whole slices). Resolves when done;
 * `stopped` ends it early, `busy` holds it. Every slice parses the same bytes, made once: making
 * them is no part of the path.
 */
export async function rehearseCommandPath(setup: RehearsalSetup, options: { units: number } & SliceOptions): Promise<WarmUpResult> {
  const db = setup.dbs[0] ?? 0;
  let events = 0;
  let recordBytes = 0;
  const sink: EventSink = {
    sendRecords: async (_db: number, _partition: number, records: SealedRecord[]) => {
      for (const r of records) {
        recordBytes += r.body.length;
        events += r.count;
      }
    },
    writePosition: async () => undefined,
    readPosition: async () => null,
  };
  const stats: Pick<CaptureStats, 'state' | 'sourceOffset' | 'commands' | 'lastHeartbeatMs' | 'epoch' | 'replid' | 'eventsProduced' | 'durableOffset'> = {
    state: 'synchronizing', sourceOffset: 0, commands: 0, lastHeartbeatMs: null, epoch: 1, replid: REHEARSAL_REPLID, eventsProduced: 0, durableOffset: 0,
  };
  const link = { replicationId: REHEARSAL_REPLID, confirm: (): void => undefined };
  // the rehearsal's own serial queue, as the capture's: one flush at a time
  let queue: Promise<void> = Promise.resolve();
  const enqueue = (work: Work): Promise<void> => (queue = queue.then(work));
  let stream: StreamSource | null = null;
  const buffer = new EventBuffer({
    opts: { sink }, stats, log: setup.log,
    snapshotCapturing: () => false,
    lastUnitEnd: () => stream?.lastUnitEnd ?? null,
    link: () => link,
    enqueue,
    failed: () => false,
    stopping: () => false,
    fail: () => undefined,
  });
  buffer.useEncoder(RecordPacker, setup.maxRecordBytes);
  stream = new StreamSource({
    opts: { dbs: setup.dbs, partitions: setup.partitions, filter: new KeyFilter({ dbs: setup.dbs }), heartbeatKey: setup.heartbeatKey },
    partitionBase: 0,
    ownKeys: new OwnKeys([setup.heartbeatKey]),
    stats, log: setup.log, events: buffer,
    failed: () => false,
    link: () => link,
    foreignWrite: () => undefined,
  });
  const source = stream;
  // the same parser options as the replica link's (views into the read buffers, big args packed)
  const parser = new RespParser({ views: true, packArgsFrom: PACK_ARGS_FROM });
  const grouper = new CommandGrouper({ db });
  const units = [...rehearsalUnits(UNITS_PER_SLICE)];
  if (setup.heartbeatKey) units[units.length - 1] = [[Buffer.from('SET'), Buffer.from(setup.heartbeatKey), Buffer.from(String(Date.now()))]];
  const bytes = rehearsalStreamBytes(units);
  const runSlice = async (): Promise<void> => {
    for (const cmd of parser.push(bytes)) {
      const unit = grouper.push(cmd);
      if (unit) source.onUnit(unit);
    }
    await enqueue(() => buffer.flush(true));
  };
  const r = await runInSlices(options.units, UNITS_PER_SLICE, runSlice, options);
  await queue;
  return { ...r, events, recordBytes };
}
