/**
 * End-to-end lag in a cascade A → B → C: the lag of C from A, as one figure.
 *
 * Each hop measures its own lag from its own source's heartbeat (capture turns the heartbeat key's
 * SET into a Heartbeat event). The time of A's heartbeat does not survive the hop: B's capture
 * drops A's heartbeat key like any bookkeeping. So the applier of A → B also keeps, in B, one key
 * per origin, `replistream:origin:<A's source id>` = the time of A's latest heartbeat it applied.
 * B's capture forwards that key like user data (capture/own-keys.ts), and C's applier, seeing its
 * SET go by, reports `originLag`: now minus that time, naming A. Further hops carry it on the same
 * way (C's applier writes the SET into C like any command).
 *
 * An applier writes its own source's origin key only when its source is an origin: when no origin
 * key came through its stream over the last few heartbeats. A middle hop would otherwise add a
 * second origin key (its own source) that says less than the one passing through it.
 */
import type { Logger } from '../common/log.js';
import type { ChangeEvent } from '../events/model.js';
import { ORIGIN_KEY_PREFIX, isOriginKey, isOriginKeyAt } from '../capture/own-keys.js';
import { EncodedCommandEvent } from '../events/encoded-command.js';
import { clientForKey, closeTopology, openTopology, type Topology } from '../destination/connection.js';

/** Heartbeats seen with no origin key between them before an applier counts its source as an origin. */
const HEARTBEATS_BEFORE_ORIGIN = 3;
/**
 * The origin key's time to live: a cascade taken apart leaves no key behind for longer. Long
 * against any plausible lag; each write renews it.
 */
const ORIGIN_KEY_TTL_S = 24 * 3600;

export interface OriginLagReport {
  /** The origin's source id (the key's suffix). */
  sourceId: string;
  /** Now minus the origin's latest heartbeat time seen here. */
  ms: number;
  /** That heartbeat time (epoch ms). */
  timeMs: number;
}

/** The origin keys going by in an applier's stream, and whether its source is itself an origin. */
export class OriginTracker {
  /** Latest time per origin: one entry per origin, never per event. */
  private readonly origins = new Map<string, number>();
  private heartbeatsSinceOrigin = 0;
  /** Capture sends each heartbeat once per database: one tick is counted once, by its time. */
  private lastHeartbeatMs = 0;

  /** Looks at events about to be written (cheap: only a SET whose key has the origin prefix counts). */
  observe(events: ChangeEvent[]): void {
    for (const ev of events) {
      if (ev.kind === 'heartbeat') {
        if (ev.timeMs > this.lastHeartbeatMs) {
          this.lastHeartbeatMs = ev.timeMs;
          this.heartbeatsSinceOrigin++;
        }
      } else if (ev.kind === 'command') {
        // an event read in RESP is looked at in its bytes: reading `commands` would decode every one
        if (ev instanceof EncodedCommandEvent && (ev.name.length !== 3 || !isOriginKeyAt(ev.resp, ev.keyStart, ev.keyEnd))) continue;
        for (const args of ev.commands) {
          if (args.length < 3 || args[0].length !== 3 || !isOriginKey(args[1])) continue;
          if (args[0].toString('latin1').toUpperCase() !== 'SET') continue;
          const timeMs = Number(args[2].toString('latin1'));
          if (!Number.isSafeInteger(timeMs) || timeMs <= 0) continue;
          const id = args[1].toString('utf8').slice(ORIGIN_KEY_PREFIX.length);
          this.origins.set(id, Math.max(this.origins.get(id) ?? 0, timeMs));
          this.heartbeatsSinceOrigin = 0;
        }
      }
    }
  }

  /** True when this applier's source is an origin: no origin key came through lately. */
  sourceIsOrigin(): boolean {
    return this.heartbeatsSinceOrigin >= HEARTBEATS_BEFORE_ORIGIN;
  }

  /**
   * The lag from the farthest origin seen: the one with the oldest latest time. (After a cascade
   * is changed, an origin that stopped coming keeps its growing lag until the applier restarts:
   * a stalled first hop must show, not vanish.)
   */
  report(now = Date.now()): OriginLagReport | null {
    let best: OriginLagReport | null = null;
    for (const [sourceId, timeMs] of this.origins) {
      if (!best || timeMs < best.timeMs) best = { sourceId, timeMs, ms: Math.max(0, now - timeMs) };
    }
    return best;
  }
}

/**
 * Keeps `replistream:origin:<sourceId>` in the destination (db 0) at the time of the latest
 * heartbeat the writer applied, while the source is an origin: a write when it changed, checked
 * every `intervalMs`. A destination that refuses the write is logged once; the task goes on.
 */
export function keepOriginKey(opts: {
  destination: string;
  sourceId: string;
  latestHeartbeatMs: () => number | null;
  tracker: OriginTracker;
  logger: Logger;
  intervalMs?: number;
}): { close(): void } {
  const key = `${ORIGIN_KEY_PREFIX}${opts.sourceId}`;
  let topology: Topology | null = null;
  let opening = false;
  let closed = false;
  let written = 0;
  let warned = false;
  const warn = (err: unknown) => {
    if (warned) return;
    warned = true;
    opts.logger.warn({ err: (err as Error).message, key }, 'cannot write the origin key in the destination (a cascade downstream will not see the lag from this source)');
  };
  const tick = async () => {
    const t = opts.latestHeartbeatMs();
    if (closed || opening || t === null || t <= written || !opts.tracker.sourceIsOrigin()) return;
    try {
      if (!topology) {
        opening = true;
        const opened = await openTopology(opts.destination, 'replistream-origin').finally(() => (opening = false));
        if (closed) return closeTopology(opened);
        topology = opened;
      }
      await clientForKey(topology, key).set(key, String(t), 'EX', ORIGIN_KEY_TTL_S);
      written = t;
      warned = false;
    } catch (err) {
      warn(err);
    }
  };
  const timer = setInterval(() => void tick(), opts.intervalMs ?? 250);
  timer.unref();
  return {
    close() {
      closed = true;
      clearInterval(timer);
      if (topology) closeTopology(topology);
      topology = null;
    },
  };
}
