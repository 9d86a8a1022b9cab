import { ReplistreamError } from '../../common/errors.js';
import type { RespCommand } from './parser.js';

/**
 * One atomic piece of the replication stream: a lone command, or the commands of a MULTI…EXEC
 * transaction (without the MULTI and EXEC themselves).
 */
export interface CommandUnit {
  /** Database selected when the unit starts. */
  db: number;
  /** Each command's arguments, name first. A SELECT inside a transaction stays here. */
  commands: Buffer[][];
  /** Stream offset of the unit's first byte (the MULTI, or the lone command). */
  startOffset: number;
  /** Stream offset just after the unit's last byte (after EXEC). */
  endOffset: number;
  /** Database selected after the unit (differs from `db` only when a transaction holds a SELECT). */
  endDb: number;
}

export interface CommandGrouperOptions {
  /** Database selected at `offset` (default 0). */
  db?: number;
  /** Stream offset of the first command that will be pushed (default 0). */
  offset?: number;
}

/**
 * Turns the parser's commands into units, tracking the selected database.
 *
 * - `SELECT n` outside a transaction is consumed: it changes `db` and yields nothing.
 * - `MULTI … EXEC` is one unit; SELECT inside stays among the unit's commands (and moves the db
 *   the following units start in, like Redis executing the transaction). `DISCARD` drops the
 *   open transaction; a nested MULTI and an EXEC/DISCARD without MULTI are ignored, as a Redis
 *   replica ignores them (they fail there without effect).
 * - `PING`, `REPLCONF …` and empty commands (inline keepalives) are not units.
 *
 * `offset` and `db` describe the last point the replica can stand on: after the last complete
 * unit or non-unit command, never inside an open transaction. That is what a replica ACKs and
 * where it resumes after a reconnect.
 *
 * Pure; commands must be pushed contiguously (each `cmd.offset` equal to the end of the previous
 * one), else it throws `ReplistreamError('INTERNAL')`.
 */
export class CommandGrouper {
  private committedOffset: number;
  private committedDb: number;
  /** Offset just after the last pushed command (inside a transaction this runs ahead of `offset`). */
  private cursor: number;
  private tx: { startOffset: number; startDb: number; db: number; commands: Buffer[][] } | null = null;

  constructor(opts: CommandGrouperOptions = {}) {
    this.committedOffset = opts.offset ?? 0;
    this.committedDb = opts.db ?? 0;
    this.cursor = this.committedOffset;
  }

  /** Offset just after the last command fully handled outside a transaction. */
  get offset(): number {
    return this.committedOffset;
  }

  /** Database selected at `offset`. */
  get db(): number {
    return this.committedDb;
  }

  /** True while a MULTI has been seen without its EXEC. */
  get inTransaction(): boolean {
    return this.tx !== null;
  }

  /** Drops an open transaction and restarts at (`offset`, `db`), e.g. after a reconnect. */
  reset(offset: number, db: number): void {
    this.tx = null;
    this.committedOffset = offset;
    this.committedDb = db;
    this.cursor = offset;
  }

  /** Handles one command; returns the unit it completes, if any. */
  push(cmd: RespCommand): CommandUnit | null {
    if (cmd.offset !== this.cursor) {
      throw new ReplistreamError('INTERNAL', `command at offset ${cmd.offset} pushed, expected ${this.cursor}`, {
        details: { offset: cmd.offset, expected: this.cursor },
      });
    }
    this.cursor = cmd.offset + cmd.size;
    const end = this.cursor;
    const name = cmd.args.length > 0 ? commandName(cmd.args[0]) : '';
    const tx = this.tx;

    if (tx) {
      switch (name) {
        case 'EXEC': {
          this.tx = null;
          this.committedOffset = end;
          this.committedDb = tx.db;
          if (tx.commands.length === 0) return null;
          return { db: tx.startDb, commands: tx.commands, startOffset: tx.startOffset, endOffset: end, endDb: tx.db };
        }
        case 'DISCARD':
          this.tx = null;
          this.committedOffset = end;
          return null;
        case 'MULTI':
        case 'PING':
        case 'REPLCONF':
        case '':
          return null;
        case 'SELECT':
          tx.db = parseDb(cmd);
          tx.commands.push(cmd.args);
          return null;
        default:
          tx.commands.push(cmd.args);
          return null;
      }
    }

    switch (name) {
      case 'MULTI':
        this.tx = { startOffset: cmd.offset, startDb: this.committedDb, db: this.committedDb, commands: [] };
        return null;
      case 'SELECT':
        this.committedDb = parseDb(cmd);
        this.committedOffset = end;
        return null;
      case 'PING':
      case 'REPLCONF':
      case 'EXEC':
      case 'DISCARD':
      case '':
        this.committedOffset = end;
        return null;
      default: {
        const db = this.committedDb;
        this.committedOffset = end;
        return { db, commands: [cmd.args], startOffset: cmd.offset, endOffset: end, endDb: db };
      }
    }
  }
}

/** Upper-cased command name for the few names the grouper cares about; '?' for anything else. */
function commandName(arg: Buffer): string {
  switch (arg.length) {
    case 4:
      return equalsIgnoreCase(arg, 'EXEC') ? 'EXEC' : equalsIgnoreCase(arg, 'PING') ? 'PING' : '?';
    case 5:
      return equalsIgnoreCase(arg, 'MULTI') ? 'MULTI' : '?';
    case 6:
      return equalsIgnoreCase(arg, 'SELECT') ? 'SELECT' : '?';
    case 7:
      return equalsIgnoreCase(arg, 'DISCARD') ? 'DISCARD' : '?';
    case 8:
      return equalsIgnoreCase(arg, 'REPLCONF') ? 'REPLCONF' : '?';
    default:
      return '?';
  }
}

/** ASCII case-insensitive comparison of `buf` with an upper-case `name` of the same length. */
function equalsIgnoreCase(buf: Buffer, name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const c = buf[i];
    if ((c >= 0x61 && c <= 0x7a ? c - 0x20 : c) !== name.charCodeAt(i)) return false;
  }
  return true;
}

function parseDb(cmd: RespCommand): number {
  const arg = cmd.args[1];
  const s = arg && arg.length <= 10 ? arg.toString('latin1') : '';
  if (cmd.args.length !== 2 || !/^[0-9]+$/.test(s)) {
    throw new ReplistreamError('PROTOCOL', `replication stream: invalid SELECT at offset ${cmd.offset}`, {
      details: { offset: cmd.offset },
    });
  }
  return Number(s);
}

/** True for `REPLCONF GETACK …` (the master asking for an immediate ACK). */
export function isGetAck(args: Buffer[]): boolean {
  return (
    args.length >= 2 &&
    args[0].length === 8 &&
    args[0].toString('latin1').toUpperCase() === 'REPLCONF' &&
    args[1].toString('latin1').toUpperCase() === 'GETACK'
  );
}
