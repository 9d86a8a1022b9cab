/**
 * Applying one stream's events to a cluster destination: each event's writes grouped by slot, each
 * slot's share applied in its own transaction with that slot's position (at most `maxInFlight`
 * slots at once), and the steps that span every slot (a flush, an epoch sweep, a command run on
 * every master, a command whose keys span slots) run between rounds of slot transactions.
 *
 * Why apart from the writer: a standalone destination takes a call in a few large transactions on
 * one connection; a cluster one takes it slot by slot on many, with per-slot positions and epoch
 * markers, and steps the standalone path never has. The two share chunk building
 * (chunk-builder.ts) and running transactions (transaction-runner.ts), nothing else.
 */
import type { SnapshotKey } from '../events/model.js';
import { ReplistreamError } from '../common/errors.js';
import { type Topology, keySlot } from './connection.js';
import { runCrossSlot } from './cross-slot-runner.js';
import type { CrossSlotPlan } from './cross-slot.js';
import { type PositionKeys, type WriterPosition, compareWriterPositions, decodePosition, encodePosition, withPart } from './position.js';
import { type Arg, ENTER_EPOCH_SLOT_LUA, FLUSH_SLOT_LUA, type Op, type OpOrigin, isAlreadyDoneError } from './translate.js';
import { type ChunkContext, type Part, type Prepared, buildChunk } from './chunk-builder.js';
import {
  MAX_RETRIES,
  REDIRECT,
  type RejectedCommand,
  type TransactionRunner,
  connectionOrReplyError,
  isReplyError,
  refusedError,
} from './transaction-runner.js';
import { type StreamState, type WriterState, emptyDomain } from './writer-state.js';
import type { BatchResult, ResolvedWriterOptions, WriterStats } from './writer-types.js';

type ClusterTopology = Extract<Topology, { kind: 'cluster' }>;

/**
 * A step of a cluster batch that spans every slot (a flush, an epoch sweep, a command run on every
 * master, a command whose keys span slots): the slot transactions before it finish first, those
 * after it start after it. Not the applier's cross-partition barrier.
 */
type ClusterWideStep =
  | { t: 'flush'; pos: WriterPosition; prep: Prepared; name: string }
  | { t: 'all-masters'; pos: WriterPosition; prep: Prepared; args: Arg[]; origin: OpOrigin }
  | { t: 'sweep'; pos: WriterPosition; prep: Prepared; epoch: number }
  | { t: 'cross-slot'; pos: WriterPosition; prep: Prepared; plan: CrossSlotPlan; args: Arg[]; origin: OpOrigin };

/**
 * Slot transactions that may run concurrently (`parts`, by slot), then the cluster-wide step that
 * ends the round (null in the last round): a batch is a sequence of such rounds.
 */
interface SlotRound {
  parts: Map<number, Part[]>;
  step: ClusterWideStep | null;
}

/** Records what happened to events (by index) of the stream being applied; 'applied' wins. */
type MarkEvents = (idxs: number[], s: 'applied' | 'skipped') => void;

/** Applies streams to one cluster destination (its topology, as opened at start). */
export class ClusterWriter {
  /** The highest epoch whose snapshot-begin swept every slot (by this writer). */
  private sweptEpoch = -1;

  constructor(
    private readonly topo: ClusterTopology,
    private readonly keys: PositionKeys,
    private readonly opts: Pick<ResolvedWriterOptions, 'maxInFlight' | 'preservedPrefixes' | 'onUnknownCommand' | 'logger'>,
    private readonly stats: WriterStats,
    private readonly state: WriterState,
    private readonly chunks: ChunkContext,
    private readonly transactions: TransactionRunner,
  ) {}

  /** Applies the events of `stream`, translated (`prepared`, in stream order), exactly once per slot. */
  async apply(stream: string, prepared: Prepared[]): Promise<BatchResult> {
    const topo = this.topo;
    const keys = this.keys;
    const st = this.state.stream(stream);
    const home = keys.homeSlot(stream);
    const result: BatchResult = { applied: 0, skipped: 0 };
    const rounds: SlotRound[] = [{ parts: new Map(), step: null }];
    const addPart = (slot: number, part: Part) => {
      const round = rounds[rounds.length - 1];
      let a = round.parts.get(slot);
      if (!a) round.parts.set(slot, (a = []));
      a.push(part);
    };
    const addStep = (step: ClusterWideStep) => {
      rounds[rounds.length - 1].step = step;
      rounds.push({ parts: new Map(), step: null });
    };
    let unmapped = 0;
    for (const prep of prepared) {
      const ev = prep.event;
      if (prep.db === undefined) {
        unmapped++;
        continue;
      }
      const base = (slot: number, part: number, ops: Op[], sk: SnapshotKey | null = null): Part => ({
        stream,
        prep,
        op: null,
        pos: withPart(ev.pos, part),
        ops,
        snapshotKey: sk,
        markerKey: keys.marker(slot),
        markerScope: slot,
        db: prep.db,
      });
      switch (ev.kind) {
        case 'snapshot-begin':
          if (ev.pos.epoch > this.sweptEpoch) addStep({ t: 'sweep', pos: withPart(ev.pos), prep, epoch: ev.pos.epoch });
          addPart(home, base(home, 0, []));
          break;
        case 'snapshot-end':
        case 'heartbeat':
        case 'slot-handoff':
          addPart(home, base(home, 0, []));
          break;
        case 'snapshot-key':
          addPart(keySlot(ev.key), base(keySlot(ev.key), 0, [], ev));
          break;
        case 'command': {
          let partNo = 0;
          let bySlot = new Map<number, Op[]>();
          const flushOpsOf = () => {
            for (const [slot, ops] of bySlot) addPart(slot, base(slot, partNo, ops));
            bySlot = new Map();
          };
          for (const it of prep.items) {
            if (it.t === 'op') {
              const slot = it.op.slot ?? home;
              let a = bySlot.get(slot);
              if (!a) bySlot.set(slot, (a = []));
              a.push(it.op);
              continue;
            }
            flushOpsOf();
            partNo++;
            if (it.t === 'flush') addStep({ t: 'flush', pos: withPart(ev.pos, partNo), prep, name: it.origin.name });
            else if (it.t === 'cross-slot') addStep({ t: 'cross-slot', pos: withPart(ev.pos, partNo), prep, plan: it.plan, args: it.args, origin: it.origin });
            else addStep({ t: 'all-masters', pos: withPart(ev.pos, partNo), prep, args: it.args, origin: it.origin });
            partNo++;
          }
          if (bySlot.size === 0 && partNo === 0) bySlot.set(home, []); // a unit with nothing to write still moves the position
          flushOpsOf();
          unmapped += prep.dropped.length;
          break;
        }
      }
    }
    this.stats.unmappedDb += unmapped;
    result.skipped += prepared.filter((p) => p.db === undefined).length;
    const statusOf = new Map<number, 'applied' | 'skipped'>();
    const mark: MarkEvents = (idxs, s) => {
      for (const i of idxs) if (statusOf.get(i) !== 'applied') statusOf.set(i, s);
    };

    for (const round of rounds) {
      if (round.parts.size) await this.runSlots(stream, st, round.parts, mark);
      if (round.step) await this.runClusterWideStep(stream, st, round.step, mark, topo);
    }
    for (const s of statusOf.values()) {
      if (s === 'applied') result.applied++;
      else result.skipped++;
    }
    return result;
  }

  /** Loads the positions and epoch markers of `slots` not known yet. */
  async loadSlots(stream: string, st: StreamState, slots: number[]): Promise<void> {
    const topo = this.topo;
    const keys = this.keys;
    if (!st.errorChecked) {
      const v = await topo.router.forSlot(keys.homeSlot(stream)).get(keys.error(stream));
      this.transactions.checkErrorMarker(stream, v);
      st.errorChecked = true;
    }
    const want = slots.filter((s) => !st.domains.has(s) || !this.state.markers.has(keys.marker(s)));
    if (!want.length) return;
    for (let attempt = 0; ; attempt++) {
      const byNode = new Map<string, number[]>();
      for (const s of want) {
        const k = topo.router.nodeKeyForSlot(s) ?? '';
        let a = byNode.get(k);
        if (!a) byNode.set(k, (a = []));
        a.push(s);
      }
      let redirected = false;
      await Promise.all(
        [...byNode.entries()].map(async ([, ss]) => {
          const c = topo.router.forSlot(ss[0]);
          const p = c.pipeline();
          for (const s of ss) p.get(keys.position(stream, s)).get(keys.marker(s));
          const res = (await p.exec()) ?? [];
          ss.forEach((s, i) => {
            const [pe, pv] = res[2 * i];
            const [me, mv] = res[2 * i + 1];
            const e = pe ?? me;
            if (e) {
              if (REDIRECT.test(e.message)) {
                redirected = true;
                return;
              }
              throw connectionOrReplyError(e, 'reading slot positions');
            }
            if (!st.domains.has(s)) st.domains.set(s, emptyDomain(decodePosition(pv as string | null, keys.position(stream, s))));
            this.state.markers.set(keys.marker(s), mv === null ? null : Number(mv));
          });
        }),
      );
      if (!redirected) return;
      if (attempt >= MAX_RETRIES) throw new ReplistreamError('DESTINATION', 'slot map keeps changing while reading positions', { retriable: true });
      await topo.router.refresh();
    }
  }

  private async runSlots(stream: string, st: StreamState, bySlot: Map<number, Part[]>, mark: MarkEvents): Promise<void> {
    const topo = this.topo;
    const keys = this.keys;
    await this.loadSlots(stream, st, [...bySlot.keys()]);
    const queue = [...bySlot.entries()];
    const errors: unknown[] = [];
    const worker = async () => {
      for (;;) {
        const next = queue.shift();
        if (!next) return;
        const [slot, parts] = next;
        try {
          const skipIds = new Set<string>();
          let from = 0;
          let attempts = 0;
          const result: BatchResult = { applied: 0, skipped: 0 };
          while (from < parts.length) {
            if (!st.domains.has(slot) || !this.state.markers.has(keys.marker(slot))) await this.loadSlots(stream, st, [slot]);
            const chunk = buildChunk(this.chunks, parts, from, () => st.domains.get(slot)!, skipIds);
            if (!chunk.positionChanged && chunk.ops.length === 0) {
              this.transactions.commitChunk(slot, chunk, result, false);
              mark(chunk.applied, 'applied');
              mark([...chunk.duplicates, ...chunk.stale], 'skipped');
              from = chunk.end;
              continue;
            }
            const client = topo.router.forSlot(slot);
            const outcome = await this.transactions.execTransaction(client, null, chunk, (name) => keys.position(name, slot));
            const r = await this.transactions.handleOutcome(slot, chunk, parts, outcome, skipIds, result, ++attempts);
            if (r === 'retry') continue;
            mark(chunk.applied, 'applied');
            mark([...chunk.duplicates, ...chunk.stale], 'skipped');
            attempts = 0;
            from = chunk.end;
          }
        } catch (err) {
          st.domains.delete(slot);
          errors.push(err);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.opts.maxInFlight, queue.length) }, worker));
    if (errors.length) throw errors[0];
  }

  private async runClusterWideStep(
    stream: string,
    st: StreamState,
    step: ClusterWideStep,
    mark: MarkEvents,
    topo: ClusterTopology,
  ): Promise<void> {
    const keys = this.keys;
    const home = keys.homeSlot(stream);
    const perSlotScript = async (script: string, keyOf: (slot: number) => string, argv: (slot: number) => string[]): Promise<number> => {
      let total = 0;
      for (let attempt = 0; ; attempt++) {
        let redirected = false;
        await Promise.all(
          [...topo.router.slotsByMaster().entries()].map(async ([nodeKey, slots]) => {
            const c = topo.router.client(nodeKey)!;
            for (let i = 0; i < slots.length; i += 1024) {
              const p = c.pipeline();
              const part = slots.slice(i, i + 1024);
              for (const s of part) p.call('EVAL', script, '1', keyOf(s), ...argv(s));
              const res = (await p.exec()) ?? [];
              for (const [e, v] of res) {
                if (e) {
                  if (REDIRECT.test(e.message)) redirected = true;
                  else throw connectionOrReplyError(e, `${step.t} on ${nodeKey}`);
                } else if (typeof v === 'number' && v > 0) total += v;
              }
            }
          }),
        );
        if (!redirected) return total;
        if (attempt >= MAX_RETRIES) throw new ReplistreamError('DESTINATION', 'slot map keeps changing', { retriable: true });
        await topo.router.refresh();
      }
    };
    switch (step.t) {
      case 'sweep': {
        const n = await perSlotScript(ENTER_EPOCH_SLOT_LUA, (s) => keys.marker(s), (s) => [String(step.epoch), String(s), ...this.opts.preservedPrefixes]);
        this.sweptEpoch = Math.max(this.sweptEpoch, step.epoch);
        this.state.markers.clear();
        if (n > 0) this.stats.epochFlushes++;
        this.opts.logger.info({ stream, epoch: step.epoch, removed: n }, 'new snapshot epoch: swept every slot of the cluster destination');
        return;
      }
      case 'flush': {
        await perSlotScript(FLUSH_SLOT_LUA, (s) => keys.position(stream, s), (s) => [encodePosition(step.pos), String(s), ...this.opts.preservedPrefixes]);
        st.domains.clear();
        mark([step.prep.index], 'applied');
        return;
      }
      case 'cross-slot': {
        // keys in several slots (cross-slot.ts): each slot written in its own transaction with its position
        const partIn = (slot: number, commands: Arg[][]): Part => ({
          stream,
          prep: step.prep,
          op: null,
          pos: step.pos,
          ops: commands.map((args, j) => ({ args, db: 0, slot, origin: { ...step.origin, id: `${step.origin.id}/${slot}/${j}` } })),
          snapshotKey: null,
          markerKey: keys.marker(slot),
          markerScope: slot,
          db: step.prep.db,
        });
        const outcome = await runCrossSlot(step.plan, {
          router: topo.router,
          epoch: step.pos.epoch,
          load: (slots) => this.loadSlots(stream, st, slots),
          committed: (slot) => {
            const d = st.domains.get(slot);
            return !!d?.pos && compareWriterPositions(step.pos, d.pos) <= 0;
          },
          marker: (slot) => this.state.markers.get(keys.marker(slot)) ?? null,
          write: (slot, commands) => this.runSlots(stream, st, new Map([[slot, [partIn(slot, commands)]]]), mark),
          refuse: (reason) => {
            if (this.opts.onUnknownCommand === 'skip') this.transactions.countSkipped(step.origin.name, stream, step.prep.event.pos, reason);
            else throw refusedError(stream, { origin: step.origin, args: step.args, error: new Error(reason) }, step.prep.event.pos, false);
          },
        });
        mark([step.prep.index], outcome);
        return;
      }
      case 'all-masters': {
        await this.loadSlots(stream, st, [home]);
        const d = st.domains.get(home)!;
        if (d.pos && compareWriterPositions(step.pos, d.pos) <= 0) {
          mark([step.prep.index], 'skipped');
          return;
        }
        const refusals: RejectedCommand[] = [];
        for (const m of topo.router.masters()) {
          try {
            await m.client.callBuffer(String(step.args[0]), ...step.args.slice(1));
          } catch (e) {
            const err = e as Error;
            if (!isReplyError(err)) throw connectionOrReplyError(err, `${step.origin.name} on ${m.key}`);
            if (isAlreadyDoneError(step.args, err.message)) continue;
            refusals.push({ origin: step.origin, args: step.args, error: err });
          }
        }
        const refused = refusals[0];
        if (refused) {
          if (this.opts.onUnknownCommand === 'skip') this.transactions.countSkipped(step.origin.name, stream, step.prep.event.pos, refused.error.message);
          else throw refusedError(stream, refused, step.prep.event.pos, false);
        }
        // record the position in the home slot
        const part: Part = { stream, prep: step.prep, op: null, pos: step.pos, ops: [], snapshotKey: null, markerKey: null, markerScope: home, db: step.prep.db };
        await this.runSlots(stream, st, new Map([[home, [part]]]), mark);
        return;
      }
    }
  }
}
