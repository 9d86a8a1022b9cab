/**
 * The types of the capture pipeline that its parts and its users share: the sink it produces to,
 * the position it records, its options and its stats.
 *
 * Why a file of its own: capture.ts composes the snapshot source, the stream source and the event
 * buffer, and each of them reads some of these types; kept here, no part imports capture.ts (no
 * import cycle). capture.ts re-exports them, so importers keep importing from capture.js.
 */
import type { Throttle } from '../common/rate-limit.js';
import type { Logger } from '../common/log.js';
import type { ReplicaLinkOptions } from '../replication/link/index.js';
import type { SealedRecord } from '../events/split.js';
import type { KeyFilter } from './key-filter.js';
import type { SnapshotFormat } from './snapshot-events.js';

/** What capture needs from the transport. Implemented over Kafka in service.ts. */
export interface EventSink {
  /**
   * Produce records (packed events, `RecordPacker`) to one partition of one db's topic, in call
   * order per partition; resolves once durable. `bulk`: records of a snapshot (the transport
   * sends them as soon as it can instead of lingering for more).
   */
  sendRecords(db: number, partition: number, records: SealedRecord[], options?: { bulk?: boolean }): Promise<void>;
  writePosition(position: CapturePosition): Promise<void>;
  readPosition(): Promise<CapturePosition | null>;
}

export interface CapturePosition {
  epoch: number;
  replid: string;
  offset: number;
  db: number;
  /** `snapshot`: a full sync of this epoch started and has not completed. */
  state: 'snapshot' | 'streaming';
  updatedAt: number;
}

export interface CaptureOptions {
  link: Omit<ReplicaLinkOptions, 'start' | 'onRdbChunk' | 'onRdbEnd' | 'onRdbAbort' | 'afterUnit' | 'manualConfirm' | 'logger'>;
  sink: EventSink;
  partitions: number;
  /** First partition of this capture's range (cluster sources: one range per master). Default 0. */
  partitionBase?: number;
  dbs: number[];
  /**
   * Chooses the epoch of a full sync that starts (default: the previous one + 1). A cluster
   * capture shares one epoch between its masters (see cluster.ts).
   */
  nextEpoch?: (current: number) => number;
  /** Ignore the stored position and start with a full sync (a cluster capture's new epoch). */
  forceFull?: boolean;
  filter: KeyFilter;
  heartbeatKey: string | null;
  snapshotFormat?: SnapshotFormat;
  flushIntervalMs?: number;
  /** Upper bound of one Kafka record (default 900 000); the sink must accept records this big. */
  maxRecordBytes?: number;
  /** Bytes of records handed to the sink and not acknowledged yet before a snapshot pauses (default 8 MiB). */
  maxInflightBytes?: number;
  /**
   * The RDB parser's entry bound (default 1 MiB): a key whose serialized value is bigger comes in
   * pieces of about this many decoded bytes, as typed elements without a RESTORE payload.
   */
  maxEntryBytes?: number;
  /** Stream bytes received and not durable yet before the link pauses the socket (default 16 MiB). */
  maxUnconfirmedBytes?: number;
  /** Snapshot bytes queued in the link while the pipeline is busy before it pauses the socket (default 4 MiB). */
  maxBufferedBytes?: number;
  /** Full-sync read limit (snapshot-max-bytes-per-second): each RDB chunk is paid for before the next is read. */
  snapshotThrottle?: Throttle<'bytes'>;
  /**
   * A cluster shard's guard (topology.ts ShardKeyFilter): a unit writing a slot the shard did not
   * own so far makes the pipeline hold its stream until the slot's hand-off (cluster-follow.ts).
   */
  slotGuard?: { touchesForeign(commands: Buffer[][]): boolean };
  /**
   * How long the source link may be down before the capture stops counting as ready (/readyz);
   * it goes on retrying (default 30 s).
   */
  sourceDownGraceMs?: number;
  logger: Logger;
}

/** The replication link as an operator sees it. */
export interface SourceLinkStatus {
  state: 'connected' | 'disconnected';
  /** When the current outage started (epoch ms); null while connected. */
  since: number | null;
  /** Attempts made in the current outage. */
  retries: number;
  /** Times the link came back after an outage since the capture started. */
  reconnects: number;
  lastError: string | null;
}

export interface CaptureStats {
  state: 'starting' | 'full-sync' | 'synchronizing' | 'failed' | 'stopped';
  epoch: number;
  replid: string | null;
  sourceOffset: number;
  durableOffset: number;
  snapshotKeys: number;
  snapshotBytes: number;
  /** Length of the current snapshot transfer as the source announced it; null when unknown (diskless). */
  snapshotBytesTotal: number | null;
  commands: number;
  eventsProduced: number;
  fullSyncs: number;
  continues: number;
  lastHeartbeatMs: number | null;
  error: string | null;
  /** When the replication link was first started (epoch ms), null before. */
  linkStartedAt: number | null;
  sourceLink: SourceLinkStatus;
}

/** Work for the capture's serial queue (capture.ts `enqueue`): everything from the link runs there, in order. */
export type Work = () => Promise<void>;

/** Where the last unit produced ends: what a streaming flush records as the durable position. */
export interface UnitEnd {
  offset: number;
  db: number;
}
