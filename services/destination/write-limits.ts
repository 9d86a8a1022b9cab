/**
 * An applier's rate limits (`max-ops-per-second`, `max-bytes-per-second`) around the destination
 * writer: each plan of events is paid for before it is written, by its weight — one op per key
 * written by a full sync and per command of a propagated unit (a MULTI of ten writes is ten), and
 * the bytes of the keys, values and arguments sent. Snapshot markers and heartbeats write nothing
 * the user asked for: free. Full sync and incremental pass through the same limits.
 */
import { LimitSettings, Throttle } from '../common/rate-limit.js';
import type { ChangeEvent, TypedValue } from '../events/model.js';
import { EncodedCommandEvent, respArgumentBytes } from '../events/encoded-command.js';
import { packedArgsOf } from '../events/packed-args.js';
import type { DestinationWriter } from './writer.js';

export interface WriteLimits {
  /** Unset or 0: no limit. */
  maxOpsPerSecond?: number;
  maxBytesPerSecond?: number;
}

/** The part of the destination writer an applier calls. */
export type PlanWriter = Pick<DestinationWriter, 'applyStreams' | 'appliedPosition' | 'storedPositions' | 'writeFailures'>;

export interface LimitedWriter {
  writer: PlanWriter;
  /** The limits by setting name, for /status and POST /limits. */
  settings: LimitSettings<'ops' | 'bytes'>;
  /**
   * Events per plan that keep the written rate even under an ops limit given at start (about a
   * fifth of a second of it, at least 500: the plan size stays when the limit is lifted at run
   * time, and smaller plans cost throughput); undefined: the applier's own default.
   */
  maxEventsPerPlan: number | undefined;
  /** A plan waiting for the limits is written at once, and none waits any more (stopping). */
  close(): void;
}

export function limitWrites(writer: PlanWriter, limits: WriteLimits): LimitedWriter {
  const throttle = new Throttle({ ops: limits.maxOpsPerSecond || null, bytes: limits.maxBytesPerSecond || null });
  return {
    writer: {
      applyStreams: async (segments, options) => {
        if (throttle.active) await throttle.take(writeWeight(segments));
        return writer.applyStreams(segments, options);
      },
      writeFailures: () => writer.writeFailures(),
      appliedPosition: (stream) => writer.appliedPosition(stream),
      storedPositions: (streams) => writer.storedPositions(streams),
    },
    settings: new LimitSettings(throttle, { maxOpsPerSecond: 'ops', maxBytesPerSecond: 'bytes' }),
    maxEventsPerPlan: limits.maxOpsPerSecond ? Math.min(5000, Math.max(500, Math.round(limits.maxOpsPerSecond / 5))) : undefined,
    close: () => throttle.close(),
  };
}

export interface WriteWeight {
  ops: number;
  bytes: number;
}

export function writeWeight(segments: Array<{ events: ChangeEvent[] }>): WriteWeight {
  let ops = 0;
  let bytes = 0;
  for (const s of segments) {
    for (const e of s.events) {
      if (e.kind === 'snapshot-key') {
        ops++;
        // restore mode sends the payload; commands mode the typed value
        bytes += e.key.length + (e.payload ? e.payload.length : e.value ? typedBytes(e.value) : 0);
      } else if (e instanceof EncodedCommandEvent) {
        // read in RESP: counted from its bytes, not by decoding its arguments
        ops++;
        bytes += respArgumentBytes(e.resp, e.respStart, e.respEnd);
      } else if (e.kind === 'command') {
        ops += e.commands.length;
        for (const c of e.commands) {
          const packed = packedArgsOf(c); // its bytes counted, not a view made of each argument
          if (packed) bytes += packed.tail - packed.head;
          else for (const a of c) bytes += a.length;
        }
      }
    }
  }
  return { ops, bytes };
}

function typedBytes(v: TypedValue): number {
  let n = 0;
  switch (v.type) {
    case 'string':
      return v.value.length;
    case 'list':
      for (const i of v.items) n += i.length;
      return n;
    case 'set':
      for (const m of v.members) n += m.length;
      return n;
    case 'zset':
      for (const e of v.entries) n += e.member.length + 8;
      return n;
    case 'hash':
      for (const e of v.entries) n += e.field.length + e.value.length;
      return n;
    case 'stream':
      for (const e of v.stream.entries) for (const f of e.fields) n += f.length + 16;
      return n;
    case 'module':
      return 0;
  }
}
