/**
 * Runs the plan of a command whose keys span slots of a cluster destination (cross-slot.ts): loads
 * the slots' positions, finds out whether a crashed run left it half-done, reads the inputs from
 * the nodes that hold them, and hands each slot's commands to the writer, which applies them in
 * one transaction with that slot's position (exactly once per slot).
 *
 * The writer runs it as a cluster-wide step: every slot transaction before the command has
 * committed when it starts, and none after it starts before it ends, so its reads see exactly the
 * state the source had when it ran the command.
 *
 * Cost: one round trip per node holding inputs (in parallel), then two per slot written (the
 * writer's WATCH check and its MULTI/EXEC), one slot after the other.
 */
import { ReplistreamError } from '../common/errors.js';
import type { ClusterRouter } from './connection.js';
import { type CrossSlotPlan, type ReadValue, type SlotRead, remainingSteps, resumption } from './cross-slot.js';
import type { Arg } from './translate.js';

export interface CrossSlotHost {
  router: ClusterRouter;
  /** The event's snapshot epoch. */
  epoch: number;
  /** Loads this stream's positions and the epoch markers of `slots`. */
  load(slots: number[]): Promise<void>;
  /** The stream's position in `slot` is at or past the command's (loaded). */
  committed(slot: number): boolean;
  /** The epoch marker of `slot` (loaded); null when the slot was never written. */
  marker(slot: number): number | null;
  /** Applies `commands` in `slot` in one transaction that also sets the stream's position there. */
  write(slot: number, commands: Arg[][]): Promise<void>;
  /** The command cannot be applied: throws (on-command-error fail) or counts it (skip). */
  refuse(reason: string): void;
}

const REDIRECT = /^(MOVED|ASK)\b/;
const MAX_REDIRECTS = 20;

/** 'applied' when slot transactions ran, 'skipped' when the command had been applied already or was refused and skipped. */
export async function runCrossSlot(plan: CrossSlotPlan, host: CrossSlotHost): Promise<'applied' | 'skipped'> {
  if (plan.kind === 'unsupported') {
    host.refuse(plan.reason);
    return 'skipped';
  }
  const involved = [...new Set([...plan.slots, ...plan.reads.map((r) => r.slot)])];
  await host.load(involved);
  if (involved.some((s) => (host.marker(s) ?? -1) > host.epoch)) {
    // an event of an older snapshot epoch: the writer marks it stale slot by slot, writing nothing
    for (const s of plan.slots) await host.write(s, []);
    return 'skipped';
  }
  const committed = plan.slots.map((s) => host.committed(s));
  const state = resumption(plan, committed);
  if (state === 'done') return 'skipped';
  let values: ReadValue[] | null = null;
  let branch: 'apply' | 'noop';
  let skipped = false;
  if (state === 'decide') {
    values = await readAll(host, plan.reads);
    const d = plan.decide(values);
    if (d.t === 'refuse') {
      host.refuse(d.reason); // throws unless on-command-error is skip
      branch = 'noop';
      skipped = true;
    } else {
      branch = d.t;
    }
  } else {
    branch = state;
  }
  for (const step of remainingSteps(plan, branch, committed, values)) await host.write(step.slot, step.commands);
  return skipped ? 'skipped' : 'applied';
}

/**
 * The values of `reads`, one pipeline per node. A slot whose content is of an older snapshot epoch
 * (its marker is below the event's epoch: it is emptied when the epoch reaches it) reads as empty.
 */
async function readAll(host: CrossSlotHost, reads: SlotRead[]): Promise<ReadValue[]> {
  const values: ReadValue[] = reads.map((r) => emptyValue(r));
  const live = reads.map((r, i) => ({ r, i })).filter(({ r }) => {
    const m = host.marker(r.slot);
    return m === null || m >= host.epoch;
  });
  for (let attempt = 0; ; attempt++) {
    const byNode = new Map<string, Array<{ r: SlotRead; i: number }>>();
    for (const x of live) {
      const node = host.router.nodeKeyForSlot(x.r.slot) ?? '';
      let a = byNode.get(node);
      if (!a) byNode.set(node, (a = []));
      a.push(x);
    }
    let redirected = false;
    await Promise.all(
      [...byNode.values()].map(async (group) => {
        const p = host.router.forSlot(group[0].r.slot).pipeline();
        for (const { r } of group) {
          if (r.t === 'dump') p.dumpBuffer(r.key as never).pttl(r.key as never);
          else if (r.t === 'exists') p.exists(r.key as never);
          else if (r.t === 'sismember') p.sismember(r.key as never, r.member as never);
          else p.lindexBuffer(r.key as never, r.index);
        }
        let res: Array<[Error | null, unknown]>;
        try {
          res = ((await p.exec()) ?? []) as Array<[Error | null, unknown]>;
        } catch (err) {
          throw new ReplistreamError('CONNECTION', `reading the inputs of a cross-slot command: ${(err as Error).message}`, { cause: err, retriable: true });
        }
        let j = 0;
        for (const { r, i } of group) {
          const n = r.t === 'dump' ? 2 : 1;
          const replies = res.slice(j, j + n);
          j += n;
          const e = replies.find(([err]) => err)?.[0];
          if (e) {
            if (REDIRECT.test(e.message)) {
              redirected = true;
              continue;
            }
            throw new ReplistreamError('DESTINATION', `reading ${r.t.toUpperCase()} of a cross-slot command's input: ${e.message}`, { cause: e, retriable: e.name !== 'ReplyError' });
          }
          if (r.t === 'dump') values[i] = { payload: (replies[0][1] as Buffer | null) ?? null, pttl: Number(replies[1][1]) };
          else if (r.t === 'lindex') values[i] = (replies[0][1] as Buffer | null) ?? null;
          else values[i] = Number(replies[0][1]) > 0;
        }
      }),
    );
    if (!redirected) return values;
    if (attempt >= MAX_REDIRECTS) throw new ReplistreamError('DESTINATION', 'slot map keeps changing while reading the inputs of a cross-slot command', { retriable: true });
    await host.router.refresh();
  }
}

function emptyValue(r: SlotRead): ReadValue {
  switch (r.t) {
    case 'dump':
      return { payload: null, pttl: -2 };
    case 'exists':
    case 'sismember':
      return false;
    case 'lindex':
      return null;
  }
}
