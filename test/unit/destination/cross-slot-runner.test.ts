import { describe, expect, it } from 'vitest';
import calculateSlot from 'cluster-key-slot';
import type { ClusterRouter } from '../../../services/destination/connection.js';
import { planCrossSlot } from '../../../services/destination/cross-slot.js';
import { type CrossSlotHost, runCrossSlot } from '../../../services/destination/cross-slot-runner.js';
import type { Arg } from '../../../services/destination/translate.js';

const B = (...a: Array<string | number>) => a.map((x) => Buffer.from(String(x)));
const str = (args: Arg[]) => args.map((a) => (typeof a === 'string' ? a : a.toString())).join(' ');
const [A, Bs] = ['{a}', '{b}'].map((k) => calculateSlot(k));

/**
 * A host whose router answers reads with `replies` (one pipeline per node; each slot its own node
 * here), and that records the slot transactions and refusals instead of running them.
 */
function host(over: { committed?: number[]; markers?: Record<number, number>; replies?: unknown[]; skip?: boolean; epoch?: number } = {}) {
  const writes: string[] = [];
  const refusals: string[] = [];
  let reads = 0;
  const pipeline = () => {
    const queued: unknown[] = [];
    const p = {
      dumpBuffer: () => (queued.push('dump'), p),
      pttl: () => (queued.push('pttl'), p),
      exists: () => (queued.push('exists'), p),
      sismember: () => (queued.push('sismember'), p),
      lindexBuffer: () => (queued.push('lindex'), p),
      exec: async () => {
        reads++;
        return queued.map((_, i) => [null, (over.replies ?? [])[i]]);
      },
    };
    return p;
  };
  const router = { nodeKeyForSlot: (s: number) => `node${s}`, forSlot: () => ({ pipeline }), refresh: async () => undefined } as unknown as ClusterRouter;
  const h: CrossSlotHost = {
    router,
    epoch: over.epoch ?? 1,
    load: async () => undefined,
    committed: (s) => (over.committed ?? []).includes(s),
    marker: (s) => over.markers?.[s] ?? null,
    write: async (slot, commands) => void writes.push(`${slot}: ${commands.map(str).join('; ')}`),
    refuse: (reason) => {
      if (!over.skip) throw new Error(reason);
      refusals.push(reason);
    },
  };
  return { h, writes, refusals, reads: () => reads };
}

describe('runCrossSlot', () => {
  const rename = planCrossSlot(B('RENAME', '{a}old', '{b}new'), [1, 2]);

  it('reads, then writes the output slot, then the source slot', async () => {
    const t = host({ replies: [Buffer.from('P'), 1500] });
    expect(await runCrossSlot(rename, t.h)).toBe('applied');
    expect(t.writes).toEqual([`${Bs}: RESTORE {b}new 1500 P REPLACE`, `${A}: DEL {a}old`]);
  });

  it('completes a run cut after its first slot without reading anything', async () => {
    const t = host({ committed: [Bs] });
    expect(await runCrossSlot(rename, t.h)).toBe('applied');
    expect(t.reads()).toBe(0);
    expect(t.writes).toEqual([`${A}: DEL {a}old`]);
  });

  it('does nothing when every slot has it', async () => {
    const t = host({ committed: [A, Bs] });
    expect(await runCrossSlot(rename, t.h)).toBe('skipped');
    expect(t.writes).toEqual([]);
  });

  it('a refused command stops the writer, or (skip) only moves the positions, in reverse order', async () => {
    await expect(runCrossSlot(rename, host({ replies: [null, -2] }).h)).rejects.toThrow(/no such key/);
    const t = host({ replies: [null, -2], skip: true });
    expect(await runCrossSlot(rename, t.h)).toBe('skipped');
    expect(t.refusals).toHaveLength(1);
    expect(t.writes).toEqual([`${A}: `, `${Bs}: `]);
  });

  it('an event of an older epoch writes nothing (the writer marks it stale slot by slot)', async () => {
    const t = host({ markers: { [A]: 3 }, epoch: 2 });
    expect(await runCrossSlot(rename, t.h)).toBe('skipped');
    expect(t.reads()).toBe(0);
    expect(t.writes).toEqual([`${Bs}: `, `${A}: `]);
  });

  it('a slot of an older epoch (emptied when the epoch reaches it) reads as empty', async () => {
    const t = host({ markers: { [A]: 1 }, epoch: 2, replies: [Buffer.from('P'), -1], skip: true });
    await runCrossSlot(rename, t.h);
    expect(t.reads()).toBe(0);
    expect(t.refusals).toHaveLength(1); // the key to rename is gone with its epoch
  });

  it('refuses what cannot be emulated', async () => {
    const t = host({ skip: true });
    expect(await runCrossSlot(planCrossSlot(B('EVAL', 's', 2, '{a}', '{b}'), [3, 4]), t.h)).toBe('skipped');
    expect(t.refusals[0]).toMatch(/EVAL cannot be emulated/);
    expect(t.writes).toEqual([]);
  });
});
