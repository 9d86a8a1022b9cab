/**
 * One event cut into pieces that each fit a record alone (`splitForRecordLimit`), for the record
 * packer and for callers that want the pieces themselves. Only whole snapshot keys
 * (split-snapshot-key.ts) and command units (split-command.ts) can be split.
 */
import { ReplistreamError } from '../common/errors.js';
import { encodeEvent, encodeEventWithin } from './codec.js';
import type { ChangeEvent, CommandEvent, SnapshotKey } from './model.js';
import { checkRecordLimit, DEFAULT_MAX_RECORD_BYTES, maxEventBytes } from './record-limit.js';
import { tooBig } from './slicing.js';
import { splitCommand } from './split-command.js';
import { splitSnapshotKey } from './split-snapshot-key.js';

export interface EncodedEvent {
  event: ChangeEvent;
  /** `encodeEvent(event)` */
  encoded: Buffer;
}

/** The pieces of `event`, whose encoding (`bytes` long) is over `budget` (see `splitForRecordLimit`). */
export function splitOversized(event: ChangeEvent, bytes: number, budget: number): ChangeEvent[] {
  if (event.kind === 'snapshot-key' && event.piece === null) return splitSnapshotKey(event, budget);
  if (event.kind === 'command' && event.piece === null) return splitCommand(event, budget);
  throw tooBig(`a ${event.kind} event${'piece' in event && event.piece ? ' piece' : ''} of ${bytes} bytes`, {
    pos: event.pos,
    bytes,
  });
}

/** A piece that encodes over the budget: a bug of the splitter, never a record sent over the limit. */
export function pieceOverBudget(p: ChangeEvent, bytes: number, budget: number): ReplistreamError {
  return new ReplistreamError('INTERNAL', `split produced a ${bytes}-byte piece over the ${budget}-byte budget`, {
    details: { pos: p.pos, index: (p as SnapshotKey | CommandEvent).piece?.index },
  });
}

/** `splitForRecordLimit`, keeping each piece's encoding (so that it is not encoded twice). */
export function splitEncoded(event: ChangeEvent, maxBytes = DEFAULT_MAX_RECORD_BYTES): EncodedEvent[] {
  checkRecordLimit(maxBytes);
  const budget = maxEventBytes(maxBytes);
  // an event over the budget is measured, not copied out (its bytes are not needed)
  const whole = encodeEventWithin(event, budget);
  if (typeof whole !== 'number') return [{ event, encoded: whole }];
  return splitOversized(event, whole, budget).map((p) => {
    const enc = encodeEvent(p);
    if (enc.length > budget) throw pieceOverBudget(p, enc.length, budget);
    return { event: p, encoded: enc };
  });
}

/**
 * The event itself when it fits in one record of `maxBytes` (wire header included), else its
 * pieces, each fitting alone. Only whole snapshot keys and command units can be split; another
 * event too big (absurd key name or replid) is an error.
 */
export function splitForRecordLimit(event: ChangeEvent, maxBytes = DEFAULT_MAX_RECORD_BYTES): ChangeEvent[] {
  return splitEncoded(event, maxBytes).map((x) => x.event);
}
