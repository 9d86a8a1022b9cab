/**
 * The capture's stream source: the command units of the replication stream → command events
 * (routed to the partitions their keys hash to) and heartbeat events, and where the last of them
 * ends. During a cluster slot hand-off it holds the units that must wait behind it.
 *
 * Why a file of its own: the stream's work (key filtering, own-key stripping, heartbeats, routing,
 * held units) shares nothing with a snapshot's (snapshot-source.ts) but the event buffer both
 * write to (event-buffer.ts) and the epoch they stamp; it runs once per unit, at the stream's
 * rate. What it reads of the rest of the capture comes through `StreamSourceContext`.
 */
import type { Logger } from '../common/log.js';
import type { CommandEvent, Heartbeat, SourcePosition } from '../events/model.js';
import { NO_PARTICIPANTS } from '../events/model.js';
import type { ReplicaLink } from '../replication/link/index.js';
import type { CommandUnit } from '../replication/resp/grouper.js';
import type { CaptureOptions, CaptureStats, UnitEnd } from './capture-types.js';
import { keyIndexes } from './command-keys.js';
import type { EventBuffer } from './event-buffer.js';
import type { OwnKeys } from './own-keys.js';
import { routeUnit } from './routing.js';

/**
 * `seq` step between the units cut from one applier transaction of a cascade's middle source
 * (own-keys.ts): they share the transaction's offset, and a unit split into record pieces uses
 * seq, seq + 1 … for them, so the units' seqs are spaced further apart than any piece count.
 */
const CUT_UNIT_SEQ_STEP = 1 << 20;

/** What the stream source reads of the capture; one object made with the capture. */
export interface StreamSourceContext {
  readonly opts: Pick<CaptureOptions, 'dbs' | 'partitions' | 'filter' | 'slotGuard' | 'heartbeatKey'>;
  /** First partition of this capture's range. */
  readonly partitionBase: number;
  /** replistream's own keys in the source (a cascade's middle server): never forwarded. */
  readonly ownKeys: OwnKeys;
  readonly stats: Pick<CaptureStats, 'state' | 'sourceOffset' | 'commands' | 'lastHeartbeatMs' | 'epoch' | 'replid'>;
  readonly log: Logger;
  readonly events: Pick<EventBuffer, 'buffer'>;
  failed(): boolean;
  /** The current replication link, if any: its replication id goes into the events' positions. */
  link(): Pick<ReplicaLink, 'replicationId'> | null;
  /** A unit wrote a slot this shard did not own: the capture says so to its listeners (cluster-follow.ts). */
  foreignWrite(): void;
}

export class StreamSource {
  private readonly ctx: StreamSourceContext;
  private readonly heartbeatKeyBytes: Buffer | null;
  private unitEnd: UnitEnd | null = null;
  /**
   * Units received while a slot hand-off is pending, in order, not produced yet (null: not
   * holding). From the first unit that writes a slot this shard did not own (MIGRATE's RESTORE, a
   * write redirected by ASK) until `handOff` puts the hand-off in front of them: a unit produced
   * before it could reach the destination before the old owner's last writes to its keys. The
   * link pauses once `maxUnconfirmedBytes` are held (they are not durable).
   */
  private handOffHeld: CommandUnit[] | null = null;

  constructor(ctx: StreamSourceContext) {
    this.ctx = ctx;
    this.heartbeatKeyBytes = ctx.opts.heartbeatKey ? Buffer.from(ctx.opts.heartbeatKey) : null;
  }

  /** Where the last unit produced ends (null: none since the capture started or the epoch did). */
  get lastUnitEnd(): UnitEnd | null {
    return this.unitEnd;
  }

  /** A new epoch: its snapshot holds what was held, and no unit of it was produced yet. */
  newEpoch(): void {
    this.handOffHeld = null;
    this.unitEnd = null;
  }

  // ----- units held for a slot hand-off (cluster-follow.ts) ---------------------------------------

  /** Holds the stream from now on, until `endHold`. */
  beginHold(): void {
    this.handOffHeld ??= [];
  }

  /** True while units wait for a hand-off. */
  get holding(): boolean {
    return this.handOffHeld !== null;
  }

  /**
   * A new link delivers again what the last one delivered after the confirmed position: still
   * holding (the hand-off is pending), without the units that come again.
   */
  linkReopened(): void {
    if (this.handOffHeld) this.handOffHeld = [];
  }

  /** Stops holding; the units held, in order, for the caller to pass to `onUnit` behind the hand-off. */
  endHold(): CommandUnit[] {
    const held = this.handOffHeld ?? [];
    this.handOffHeld = null;
    return held;
  }

  // ----- units -----------------------------------------------------------------------------------

  onUnit(unit: CommandUnit): void {
    const { stats, opts } = this.ctx;
    if (this.ctx.failed()) return;
    if (this.handOffHeld) {
      opts.slotGuard?.touchesForeign(unit.commands); // notes the slots it writes: they must be handed over too
      this.handOffHeld.push(unit);
      return;
    }
    if (opts.slotGuard?.touchesForeign(unit.commands)) {
      this.handOffHeld = [unit];
      this.ctx.log.info({ offset: unit.endOffset }, 'a write to a slot this master did not own: its stream waits for the slots\' hand-off');
      this.ctx.foreignWrite();
      return;
    }
    if (stats.state !== 'full-sync') stats.state = 'synchronizing';
    stats.sourceOffset = unit.endOffset;
    this.unitEnd = { offset: unit.endOffset, db: unit.endDb };
    const pos: SourcePosition = { epoch: stats.epoch, offset: unit.endOffset, seq: 0, replid: this.ctx.link()?.replicationId ?? stats.replid ?? '' };
    const heartbeat = this.heartbeatOf(unit, pos);
    if (heartbeat) {
      // on every stream of every synced db: an applier holding only other dbs (a group with
      // db assignment) measures its lag too
      if (opts.filter.dbSelected(unit.db)) {
        for (const db of opts.dbs) {
          const copy = db === unit.db ? heartbeat : { ...heartbeat, db };
          for (let p = 0; p < opts.partitions; p++) this.ctx.events.buffer(db, this.ctx.partitionBase + p, copy);
        }
      }
      return;
    }
    const ownKeys = this.ctx.ownKeys;
    const runs = ownKeys.mayTouch(unit.commands) ? ownKeys.strip(unit.db, unit.commands) : null;
    if (runs === null) {
      this.emitUnit(unit.db, unit.commands, pos);
      return;
    }
    // an applier's transaction: its bookkeeping dropped, the rest one unit per database run
    for (let i = 0; i < runs.length; i++) this.emitUnit(runs[i].db, runs[i].commands, i === 0 ? pos : { ...pos, seq: i * CUT_UNIT_SEQ_STEP });
  }

  private emitUnit(db: number, unitCommands: Buffer[][], pos: SourcePosition): void {
    const { stats, opts } = this.ctx;
    const commands = opts.filter.filtersKeys ? this.filterUnitKeys(unitCommands) : unitCommands;
    if (commands.length === 0) return;
    const participants = routeUnit(db, commands, { partitions: opts.partitions, partitionBase: this.ctx.partitionBase, syncedDbs: opts.dbs });
    if (participants.length === 0) return;
    stats.commands += commands.length;
    const event: CommandEvent = {
      kind: 'command', pos, db, commands, piece: null,
      // (a list of several is the unit's own; one of one is shared by every unit routed there)
      participants: participants.length > 1 ? (participants as CommandEvent['participants']) : NO_PARTICIPANTS,
    };
    for (const p of participants) this.ctx.events.buffer(p.db, p.partition, event);
  }

  /** A lone SET of the heartbeat key becomes a Heartbeat event: lag is measured, nothing written. */
  private heartbeatOf(unit: CommandUnit, pos: SourcePosition): Heartbeat | null {
    const key = this.heartbeatKeyBytes;
    if (!key || unit.commands.length !== 1) return null;
    const [name, k, v] = unit.commands[0];
    if (!k || k.length !== key.length || !name || name.length !== 3 || !k.equals(key) || name.toString('latin1').toLowerCase() !== 'set') return null;
    const timeMs = Number(v?.toString());
    if (!Number.isFinite(timeMs)) return null;
    this.ctx.stats.lastHeartbeatMs = timeMs;
    return { kind: 'heartbeat', pos, db: unit.db, timeMs };
  }

  /** Drops commands whose keys are all filtered out (keyless commands are kept). */
  private filterUnitKeys(commands: Buffer[][]): Buffer[][] {
    return commands.filter((args) => {
      const idx = keyIndexes(args);
      if (idx === null || idx.length === 0) return true;
      return idx.some((i) => this.ctx.opts.filter.keySelected(args[i]));
    });
  }
}
