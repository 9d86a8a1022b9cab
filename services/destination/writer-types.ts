/**
 * The destination writer's public types (options, stats, results, what it learned of the
 * destination), re-exported by writer.ts, which is where callers import them from.
 *
 * Why apart from writer.ts: the writer's pieces (chunk-builder.ts, transaction-runner.ts,
 * cluster-writer.ts) need these types too, and they never import writer.ts (it imports them).
 */
import type { Logger } from '../common/log.js';
import type { TypedWriteFeatures } from './translate.js';

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

/** The options with their defaults filled in (the writer's constructor). */
export type ResolvedWriterOptions = Required<Omit<DestinationWriterOptions, 'now'>> & { now: () => number };

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
