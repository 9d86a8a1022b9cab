/**
 * The body of a transaction: a chunk's writes between MULTI and the position SETs, with the
 * SELECTs they need, encoded once. Pure code, no I/O.
 *
 * Why apart from the sending (transaction-runner.ts): a standalone writer encodes the next
 * transaction's body while the destination still runs the current one, and sends it as it is once
 * that one is answered, so the two alternate no more (the writer building while the destination
 * waits, then the destination working while the writer waits).
 */
import { encodeCommandChunks, type EncodedBatch, type RespCommand } from './resp-codec.js';
import type { Op, OpOrigin } from './translate.js';

export interface TransactionBody {
  /** The commands in order: reply `i` after MULTI answers `commands[i]` (error messages). */
  readonly commands: readonly RespCommand[];
  /** The op each command comes from (null: a SELECT of the writer's own). */
  readonly origins: ReadonlyArray<OpOrigin | null>;
  /** The db selected once the body has run (-1: unknown, a script selected inside it). */
  readonly endDb: number | null;
  /** `commands` encoded as RESP, for a connection that sends encoded batches. */
  readonly wire: EncodedBatch;
}

/**
 * The body of a transaction of `ops`, starting with db `selectDb` selected (null: a cluster
 * transaction, which never SELECTs). `encode`: also encode it now (a standalone writer); else
 * `wire` is empty.
 */
export function composeBody(ops: readonly Op[], selectDb: number | null, encode: boolean): TransactionBody {
  const commands: RespCommand[] = [];
  const origins: Array<OpOrigin | null> = [];
  let cur: number | null = selectDb;
  for (const op of ops) {
    if (selectDb !== null && op.db !== null && op.db !== cur) {
      commands.push(['SELECT', String(op.db)]);
      origins.push(null);
      cur = op.db;
    }
    commands.push(op.encoded ?? op.restore ?? op.args);
    origins.push(op.origin);
    if (op.clobbersDb) cur = -1;
  }
  const wire: EncodedBatch = encode ? { chunks: encodeCommandChunks(commands), count: commands.length } : { chunks: [], count: 0 };
  return { commands, origins, endDb: cur, wire };
}
