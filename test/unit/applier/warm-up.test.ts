import { describe, expect, it } from 'vitest';
import { rehearseApplyPath } from '../../../services/applier/warm-up.js';
import type { PlanSegment } from '../../../services/applier/barrier.js';
import { rehearsalUnits } from '../../../services/events/rehearsal.js';
import { EncodedCommandEvent } from '../../../services/events/encoded-command.js';
import type { CommandEvent } from '../../../services/events/model.js';

function recordingWriter() {
  const segments: PlanSegment[] = [];
  return { segments, rehearse: (s: PlanSegment[]) => void segments.push(...s) };
}

describe("the applier's warm-up rehearsal", () => {
  it('hands the writer every unit, decoded, in order, as commands of the db given', async () => {
    const w = recordingWriter();
    const r = await rehearseApplyPath(w, () => ({}), 5, { units: 1700 });
    expect(r.units).toBe(1700);
    const events = w.segments.flatMap((s) => s.events) as CommandEvent[];
    expect(events).toHaveLength(1700);
    expect(events.every((e) => e.kind === 'command' && e.db === 5)).toBe(true);
    const want = [...rehearsalUnits(1700)].map((u) => u.map((args) => args.map(String)));
    expect(events.map((e) => e.commands.map((args) => args.map(String)))).toEqual(want);
    // positions grow: the planner and the writer see an ordinary stream
    for (let i = 1; i < events.length; i++) expect(events[i].pos.offset).toBeGreaterThan(events[i - 1].pos.offset);
  });

  it('decodes with the read options asked (commands read straight into RESP for a standalone writer)', async () => {
    const w = recordingWriter();
    await rehearseApplyPath(w, () => ({ encodeCommands: true }), 0, { units: 600 });
    const events = w.segments.flatMap((s) => s.events);
    expect(events).toHaveLength(600);
    expect(events.some((e) => e instanceof EncodedCommandEvent)).toBe(true);
  });

  it('stops early when told to', async () => {
    const w = recordingWriter();
    const r = await rehearseApplyPath(w, () => ({}), 0, { units: 20_000, stopped: () => true });
    expect(r.units).toBe(500);
  });
});
