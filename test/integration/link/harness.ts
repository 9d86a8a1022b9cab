/** Helpers for the replica-link tests: event recorder, waits, source clients, log capture. */
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import { pino, type Logger } from 'pino';
import type { ReplistreamError } from '../../../services/common/errors.js';
import {
  ReplicaLink,
  type ContinueInfo,
  type DisconnectedInfo,
  type FullResyncInfo,
  type RdbEndInfo,
  type ReplicaLinkOptions,
} from '../../../services/replication/link/index.js';
import type { CommandUnit } from '../../../services/replication/resp/index.js';
import type { RedisServer } from '../../helpers/redis-server.js';

export interface Recorded {
  link: ReplicaLink;
  units: CommandUnit[];
  rdb: Buffer[];
  rdbEnds: RdbEndInfo[];
  rdbAborts: ReplistreamError[];
  fullresyncs: FullResyncInfo[];
  continues: ContinueInfo[];
  disconnects: DisconnectedInfo[];
  errors: ReplistreamError[];
  closes: Array<{ error: ReplistreamError | null }>;
  /** Every event name in order, for ordering checks. */
  order: string[];
  logs: string[];
}

/** A pino logger writing into `lines` (JSON strings), at debug level so every line is checked. */
export function captureLogger(lines: string[]): Logger {
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  return pino({ level: 'debug' }, sink);
}

/** Creates a link with fast reconnects and records everything it reports. */
export function recordLink(opts: ReplicaLinkOptions): Recorded {
  const logs: string[] = [];
  const link = new ReplicaLink({
    reconnect: { initialDelayMs: 50, maxDelayMs: 1000 },
    logger: captureLogger(logs),
    ...opts,
  });
  const r: Recorded = {
    link,
    units: [],
    rdb: [],
    rdbEnds: [],
    rdbAborts: [],
    fullresyncs: [],
    continues: [],
    disconnects: [],
    errors: [],
    closes: [],
    order: [],
    logs,
  };
  link.on('unit', (u) => {
    r.units.push(u);
    r.order.push('unit');
  });
  link.on('rdb-chunk', (c) => {
    r.rdb.push(Buffer.from(c));
    if (r.order[r.order.length - 1] !== 'rdb-chunk') r.order.push('rdb-chunk');
  });
  link.on('rdb-end', (i) => {
    r.rdbEnds.push(i);
    r.order.push('rdb-end');
  });
  link.on('rdb-abort', (e) => {
    r.rdbAborts.push(e);
    r.order.push('rdb-abort');
  });
  link.on('fullresync', (i) => {
    r.fullresyncs.push(i);
    r.order.push('fullresync');
  });
  link.on('continue', (i) => {
    r.continues.push(i);
    r.order.push('continue');
  });
  link.on('disconnected', (i) => {
    r.disconnects.push(i);
    r.order.push('disconnected');
  });
  link.on('error', (e) => r.errors.push(e));
  link.on('close', (c) => r.closes.push(c));
  return r;
}

export async function waitFor<T>(what: string, fn: () => T | Promise<T>, timeoutMs = 20_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

export function client(server: RedisServer, opts: { password?: string; username?: string; db?: number } = {}): Redis {
  return new Redis(server.port, '127.0.0.1', {
    lazyConnect: false,
    protocol: 2,
    enableOfflineQueue: true,
    maxRetriesPerRequest: 3,
    ...opts,
  });
}

/** A field of `INFO replication` on the source. */
export async function replInfo(c: Redis, field: string): Promise<string | undefined> {
  const info = (await c.info('replication')) as string;
  const m = new RegExp(`^${field}:(.*)$`, 'm').exec(info);
  return m ? m[1].trim() : undefined;
}

export async function masterOffset(c: Redis): Promise<number> {
  return Number(await replInfo(c, 'master_repl_offset'));
}

/** The offset the source last received in an ACK from its first replica (INFO slave0 offset=). */
export async function ackedOffset(c: Redis): Promise<number | null> {
  const line = await replInfo(c, 'slave0');
  const m = line ? /offset=(\d+)/.exec(line) : null;
  return m ? Number(m[1]) : null;
}

/** Sizes of the stream commands that are not units: PING, SELECT <db>, REPLCONF GETACK *. */
export function nonUnitSizes(maxDb = 15): number[] {
  const sizes = new Set<number>([14 /* ping */, 37 /* REPLCONF GETACK * */]);
  for (let db = 0; db <= maxDb; db++) {
    const d = String(db);
    sizes.add(`*2\r\n$6\r\nSELECT\r\n$${d.length}\r\n${d}\r\n`.length);
  }
  return [...sizes];
}

/** True when `gap` bytes can be made of non-unit commands (0 included). */
export function gapIsNonUnits(gap: number, sizes = nonUnitSizes()): boolean {
  if (gap < 0) return false;
  const ok = new Array<boolean>(gap + 1).fill(false);
  ok[0] = true;
  for (let g = 1; g <= gap; g++) ok[g] = sizes.some((s) => s <= g && ok[g - s]);
  return ok[gap];
}

/**
 * Checks units tile the stream from `from`: each starts where the previous ended, except for
 * gaps whose size can only be made of non-unit commands (`sizes`). Returns the problems found.
 */
export function expectContiguous(units: CommandUnit[], from: number, sizes = nonUnitSizes()): string[] {
  const problems: string[] = [];
  let at = from;
  for (const u of units) {
    if (!gapIsNonUnits(u.startOffset - at, sizes)) {
      problems.push(`unit at ${u.startOffset} after ${at}: gap ${u.startOffset - at} is not made of PING/SELECT/REPLCONF`);
    }
    if (u.endOffset <= u.startOffset) problems.push(`unit at ${u.startOffset} is empty`);
    at = u.endOffset;
  }
  return problems;
}

export function unitStrings(u: CommandUnit): string[][] {
  return u.commands.map((c) => c.map((a) => a.toString('latin1')));
}
