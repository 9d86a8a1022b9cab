/**
 * The replica link's public types: its options, the positions it reports, its events and state.
 * Re-exported by replica-link.ts (and index.ts), where importers take them from.
 */
import type { ReplistreamError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { CommandUnit } from '../resp/grouper.js';

export interface ReplicaPosition {
  replid: string;
  /** Replication offset (bytes of stream processed), as `master_repl_offset`. */
  offset: number;
  /** Database selected at `offset`. */
  db: number;
}

export interface ReplicaLinkTlsOptions {
  /** CA certificate(s) (PEM) to trust instead of the system store. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Client certificate and key (PEM), for servers that require them. */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** Skip certificate verification (testing only). */
  insecure?: boolean;
  /** SNI / name to verify; defaults to the URL's host when it is a name. */
  servername?: string;
}

export interface ReplicaLinkOptions {
  /** `redis://[user:pass@]host:port` or `rediss://…` (TLS). A path (db number) is ignored. */
  url: string;
  /** Override the URL's user name / password. */
  username?: string;
  password?: string;
  tls?: ReplicaLinkTlsOptions;
  /** Resume from a durable position (PSYNC replid offset+1); a new full sync when null. */
  start?: ReplicaPosition | null;
  /** Port announced with `REPLCONF listening-port` (shown in the source's INFO; default 0). */
  listeningPort?: number;
  /** Optional `REPLCONF ip-address`. */
  announceIp?: string;
  manualConfirm?: boolean;
  ackIntervalMs?: number;
  connectTimeoutMs?: number;
  /**
   * Silence after which the link is considered dead (default: the source-timeout-ms setting, 60 s,
   * like the source's own repl-timeout). The source sends a PING every repl-ping-replica-period
   * (10 s by default) while streaming and a newline every second while it prepares a snapshot,
   * so a shorter bound than that period drops a healthy idle link.
   */
  readTimeoutMs?: number;
  reconnect?: { initialDelayMs?: number; maxDelayMs?: number };
  /**
   * How long the link may stay down (lost, and no new attempt accepted by the source since) before
   * it gives up: it then stops with a CONNECTION error naming the source and `downTimeoutSetting`.
   * 0 or unset: it retries forever.
   */
  downTimeoutMs?: number;
  /** The setting that sets `downTimeoutMs`, named in that error (default `source-down-timeout-ms`). */
  downTimeoutSetting?: string;
  /**
   * Where the source is now, asked before every attempt (a Sentinel-managed source: the current
   * master). The URL's host and port are the first guess and the fallback when it fails. After a
   * failover the link thus asks the promoted replica for `PSYNC <old replid> <offset>`, which it
   * grants (`+CONTINUE <new id>`) when its history holds that offset, else a full sync follows.
   */
  resolveEndpoint?: () => Promise<{ host: string; port: number }>;
  maxBufferedBytes?: number;
  maxUnconfirmedBytes?: number;
  /**
   * Milliseconds of delivery in one turn of the event loop after which the link lets it turn
   * (default 10; 0 never yields). See "Delivery and flow control" in delivery-queue.ts.
   */
  sliceMs?: number;
  onRdbChunk?: (chunk: Buffer) => void | Promise<void>;
  onRdbEnd?: () => void | Promise<void>;
  onRdbAbort?: (err: ReplistreamError) => void | Promise<void>;
  /**
   * Called after each `unit` event; a promise holds back the delivery of the next units (and of
   * the bytes after them) until it settles, as the `onRdb*` promises do. Capture returns one while
   * the records of a huge command are still being made, so that no later unit overtakes them.
   */
  afterUnit?: () => void | Promise<void>;
  logger?: Logger;
}

export interface FullResyncInfo {
  replid: string;
  offset: number;
  /** True after a legacy `SYNC` (no replid, offsets counted from 0, no resume). */
  legacySync: boolean;
}

export interface ContinueInfo {
  replid: string;
  /** Offset the stream continues from. */
  offset: number;
  /** The replid before a `+CONTINUE <newid>` (after a failover), else equal to `replid`. */
  previousReplid: string;
}

export interface RdbEndInfo {
  bytes: number;
  diskless: boolean;
}

/** Whether the link is up, and since when it is down. */
export interface LinkHealth {
  /** False from a loss until the source accepts a new attempt (PSYNC answered). */
  up: boolean;
  /** When the current outage started (epoch ms); null while up. */
  downSince: number | null;
  /** Attempts made in the current outage (0 while up). */
  retries: number;
  /** Times the link came back after an outage, since the link started. */
  reconnects: number;
  /** The error that ended the last attempt of the current outage; null while up. */
  lastError: string | null;
}

export interface DisconnectedInfo {
  error: ReplistreamError;
  /** Delay before the next attempt. */
  retryInMs: number;
}

export type ReplicaLinkEvents = {
  connected: [info: { host: string; port: number; tls: boolean }];
  fullresync: [info: FullResyncInfo];
  continue: [info: ContinueInfo];
  /** The snapshot's length as the source announced it; null for a diskless transfer (no length). */
  'rdb-size': [info: { bytes: number | null }];
  'rdb-chunk': [chunk: Buffer];
  'rdb-end': [info: RdbEndInfo];
  'rdb-abort': [error: ReplistreamError];
  unit: [unit: CommandUnit];
  disconnected: [info: DisconnectedInfo];
  /** The source accepted an attempt after an outage of `downMs`. */
  reconnected: [info: { downMs: number; retries: number }];
  error: [error: ReplistreamError];
  close: [info: { error: ReplistreamError | null }];
};

export type ReplicaLinkState = 'idle' | 'connecting' | 'handshake' | 'transfer' | 'streaming' | 'waiting' | 'closed';
