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
  it('hands the writer every unit, decoded, in order, as commands of the db given, record after record', async () => {
    const w = recordingWriter();
    const r = await rehearseApplyPath(w, () => ({}), 5, { units: 1700 });
    // whole records of 500: 1,700 rounded up
    expect(r.units).toBe(2000);
    const events = w.segments.flatMap((s) => s.events);
    expect(events).toHaveLength(2000);
    expect(events.every((e) => e.db === 5)).toBe(true);
    // each record holds the stream's first 499 units, in order, then a heartbeat; positions grow
    const want = [...rehearsalUnits(499)].map((u) => u.map((args) => args.map(String)));
    for (let k = 0; k < 4; k++) {
      const record = events.slice(k * 500, (k + 1) * 500);
      const commands = record.slice(0, 499) as CommandEvent[];
      expect(commands.every((e) => e.kind === 'command')).toBe(true);
      expect(commands.map((e) => e.commands.map((args) => args.map(String)))).toEqual(want);
      expect(record[499].kind).toBe('heartbeat');
      for (let i = 1; i < record.length; i++) expect(record[i].pos.offset).toBeGreaterThan(record[i - 1].pos.offset);
      // positions as capture writes them
      expect(record[0].pos.epoch).toBeGreaterThan(0);
      expect(record[0].pos.replid).toMatch(/^[0-9a-f]{40}$/);
    }
    // one plan per record: the writer sees what an applier hands it, a plan at a time
    expect(w.segments.map((s) => s.events.length)).toEqual([500, 500, 500, 500]);
  });

  it('decodes with the read options asked (commands read straight into RESP for a standalone writer)', async () => {
    const w = recordingWriter();
    await rehearseApplyPath(w, () => ({ encodeCommands: true }), 0, { units: 500 });
    const events = w.segments.flatMap((s) => s.events);
    expect(events).toHaveLength(500);
    expect(events.some((e) => e instanceof EncodedCommandEvent)).toBe(true);
  });

  it('stops early when told to', async () => {
    const w = recordingWriter();
    let asked = 0;
    const r = await rehearseApplyPath(w, () => ({}), 0, { units: 20_000, stopped: () => asked++ > 0 });
    expect(r.units).toBe(500);
  });

  it('sends nothing to the writer while the service is busy', async () => {
    const w = recordingWriter();
    let busy = true;
    const run = rehearseApplyPath(w, () => ({}), 0, { units: 1000, busy: () => busy, pollMs: 5 });
    await new Promise((r) => setTimeout(r, 30));
    expect(w.segments).toHaveLength(0);
    busy = false;
    const r = await run;
    expect(r.units).toBe(1000);
    expect(w.segments.flatMap((s) => s.events)).toHaveLength(1000);
    expect(r.waitedMs).toBeGreaterThan(0);
  });
});
