import { describe, expect, it } from 'vitest';
import { rehearseCommandPath, type RehearsalSetup } from '../../../services/capture/warm-up.js';
import { createLogger } from '../../../services/common/log.js';

const log = createLogger('silent');
const setup = (dbs: number[], heartbeatKey: string | null = null): RehearsalSetup => ({ dbs, partitions: 4, maxRecordBytes: 900_000, heartbeatKey, log });

describe("capture's warm-up rehearsal", () => {
  it('runs the units asked through the command path, in slices', async () => {
    let turns = 0;
    const ticker = setInterval(() => turns++, 0);
    try {
      const r = await rehearseCommandPath(setup([0]), { units: 3000 });
      expect(r.units).toBe(3000);
      // multi-key units go to several partitions: one event in each
      expect(r.events).toBeGreaterThan(3000);
      expect(r.recordBytes).toBeGreaterThan(3000 * 20);
    } finally {
      clearInterval(ticker);
    }
    // the event loop ran between slices (500 units each)
    expect(turns).toBeGreaterThan(0);
  });

  it('stops early when told to', async () => {
    let asked = 0;
    const r = await rehearseCommandPath(setup([0]), { units: 20_000, stopped: () => asked++ > 0 });
    expect(r.units).toBe(500);
  });

  it('waits while the service is busy, then does all its units', async () => {
    let polls = 0;
    const r = await rehearseCommandPath(setup([0]), { units: 1000, busy: () => polls++ < 3, pollMs: 5 });
    expect(r.units).toBe(1000);
    expect(r.events).toBeGreaterThan(1000);
    expect(r.waitedMs).toBeGreaterThan(0);
  });

  it('routes nothing when no db is synced (a source with no synced db) and still ends', async () => {
    const r = await rehearseCommandPath(setup([]), { units: 1000 });
    expect(r.units).toBe(1000);
    expect(r.events).toBe(0);
    expect(r.recordBytes).toBe(0);
  });

  it('makes one unit of each slice a heartbeat, which goes to every partition of every synced db', async () => {
    const plain = await rehearseCommandPath(setup([0, 3]), { units: 1000 });
    const beating = await rehearseCommandPath(setup([0, 3], 'HB'), { units: 1000 });
    // per slice: one unit fewer of the stream, one heartbeat in each of 2 dbs × 4 partitions
    expect(beating.events).toBeGreaterThan(plain.events);
    expect(beating.events - plain.events).toBeLessThanOrEqual(2 * 8);
  });
});
