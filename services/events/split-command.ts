/**
 * A command unit cut into pieces (see split.ts): the `commands` are spread over pieces; piece i has
 * `pos.seq = pos.seq + i` (model.ts: seq is the piece of a split command), the other fields
 * repeated. A command bigger than a piece has its arguments sliced (slicing.ts): the next piece
 * continues it (`piece.continued`).
 */
import { encodedEventSize } from './codec.js';
import type { CommandEvent, EventPiece } from './model.js';
import { packedArgsOf } from './packed-args.js';
import { ARRAY_COUNT, BIG_PIECE, listLen, PIECE_SLACK, sliceBufferList, slicePackedList, tooBig } from './slicing.js';

/** The pieces of whole command unit `e`, each encoding to at most `budget` bytes. */
export function splitCommand(e: CommandEvent, budget: number): CommandEvent[] {
  const base = encodedEventSize({ ...e, commands: [], piece: BIG_PIECE, pos: { ...e.pos, seq: e.pos.seq + 0x3fff_ffff } });
  const C = budget - base - PIECE_SLACK;
  if (C < 256) throw tooBig('the skeleton of a command event', { base });
  const drafts: Array<{ commands: Buffer[][]; continued: boolean; room: number }> = [];
  const fresh = (continued = false) => {
    const d = { commands: [] as Buffer[][], continued, room: C };
    drafts.push(d);
    return d;
  };
  let d = fresh();
  for (const args of e.commands) {
    const cost = listLen(args) + ARRAY_COUNT;
    if (cost <= d.room) {
      d.commands.push(args);
      d.room -= cost;
    } else if (cost <= C) {
      d = fresh();
      d.commands.push(args);
      d.room -= cost;
    } else {
      if (d.room < 256) d = fresh();
      const packed = packedArgsOf(args);
      const frags = packed ? slicePackedList(packed, 0, d.room, C) : sliceBufferList(args, 0, d.room, C);
      frags.forEach((f, i) => {
        if (i > 0) d = fresh(true);
        d.commands.push(f);
        d.room -= listLen(f);
      });
    }
  }
  return drafts.map((dr, i) => {
    const piece: EventPiece = { index: i, last: i === drafts.length - 1 };
    if (dr.continued) piece.continued = true;
    return { ...e, pos: { ...e.pos, seq: e.pos.seq + i }, commands: dr.commands, piece };
  });
}
