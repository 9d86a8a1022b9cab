import { describe, expect, it } from 'vitest';
import { Throttle, TokenBucket } from '../../../services/common/rate-limit.js';

/** A clock that moves only when someone sleeps. */
function fakeClock() {
  const clock = { t: 1_000_000, sleeps: [] as number[] };
  return {
    clock,
    now: () => clock.t,
    sleep: async (ms: number) => {
      clock.sleeps.push(ms);
      clock.t += ms;
    },
  };
}

describe('token bucket', () => {
  it('lets a burst through, then pays a debt at the rate', () => {
    const { clock, now } = fakeClock();
    const b = new TokenBucket(100, 0.1, now); // 10 units of burst
    b.take(10);
    expect(b.waitMs()).toBe(0);
    b.take(100);
    expect(b.waitMs()).toBe(1000);
    clock.t += 400;
    expect(b.waitMs()).toBe(600);
    clock.t += 5000; // idle: the bucket refills only up to its burst
    b.take(10);
    expect(b.waitMs()).toBe(0);
    b.take(1);
    expect(b.waitMs()).toBeCloseTo(10);
  });

  it('a new limit pays the remaining debt at the new rate; none clears it', () => {
    const { now } = fakeClock();
    const b = new TokenBucket(100, 0.1, now);
    b.take(210); // 200 in debt: 2 s at 100/s
    expect(b.waitMs()).toBe(2000);
    b.setLimit(400);
    expect(b.waitMs()).toBe(500);
    b.setLimit(null);
    expect(b.waitMs()).toBe(0);
    b.take(1_000_000);
    expect(b.waitMs()).toBe(0);
    b.setLimit(50); // limited again: starts with a full burst, not a debt
    b.take(5);
    expect(b.waitMs()).toBe(0);
  });
});

describe('throttle', () => {
  it('keeps a stream of work at the limit over a long window', async () => {
    const { clock, now, sleep } = fakeClock();
    const t = new Throttle({ ops: 4000, bytes: null }, { now, sleep });
    const start = clock.t;
    let ops = 0;
    // plans of 333 writes, as an applier sends them, for 10 fake seconds
    while (clock.t - start < 10_000) {
      await t.take({ ops: 333, bytes: 99_999 });
      ops += 333;
    }
    const rate = ops / ((clock.t - start) / 1000);
    // one burst (0.25 s) and one plan over 10 s: within 3 %
    expect(rate).toBeGreaterThan(4000 * 0.97);
    expect(rate).toBeLessThan(4000 * 1.03);
    expect(t.waitedMs).toBeGreaterThan(9000);
  });

  it('waits for the most limited quantity', async () => {
    const { clock, now, sleep } = fakeClock();
    const t = new Throttle({ ops: 1000, bytes: 1000 }, { now, sleep, burstSeconds: 0.001 });
    const start = clock.t;
    await t.take({ ops: 11, bytes: 3001 }); // bytes: 3 s of debt, ops: 10 ms
    expect(clock.t - start).toBe(3000);
    expect(t.limits()).toEqual({ ops: 1000, bytes: 1000 });
  });

  it('nothing limited: never sleeps', async () => {
    const { clock, now, sleep } = fakeClock();
    const t = new Throttle({ ops: null, bytes: 0 }, { now, sleep });
    expect(t.active).toBe(false);
    for (let i = 0; i < 100; i++) await t.take({ ops: 1e6, bytes: 1e9 });
    expect(clock.sleeps).toEqual([]);
    expect(t.limits()).toEqual({ ops: null, bytes: null });
  });

  it('a caller waiting is woken by a new limit and by close', async () => {
    // a sleep that never ends by itself: only a wake can free the caller
    let clock = 0;
    const t = new Throttle({ ops: 10 }, { now: () => clock, sleep: () => new Promise(() => undefined), burstSeconds: 0.1 });
    let done = false;
    const taking = t.take({ ops: 1001 }).then(() => (done = true)); // 100 s of debt
    await Promise.resolve();
    expect(done).toBe(false);
    clock += 10;
    t.setLimits({ ops: 20 }); // still in debt at 20/s: waits on
    await new Promise((r) => setImmediate(r));
    expect(done).toBe(false);
    t.setLimits({ ops: null });
    await taking;
    expect(done).toBe(true);

    t.setLimits({ ops: 1 });
    let second = false;
    const again = t.take({ ops: 1000 }).then(() => (second = true));
    await new Promise((r) => setImmediate(r));
    expect(second).toBe(false);
    t.close();
    await again;
    await t.take({ ops: 1e9 }); // closed: nothing waits any more
  });

  it('refuses a negative or non-numeric limit, naming it', () => {
    expect(() => new Throttle({ ops: -1 })).toThrow(/ops: a limit is a number ≥ 0/);
    const t = new Throttle({ ops: 5, bytes: null });
    expect(() => t.setLimits({ bytes: Number.NaN })).toThrow(/bytes/);
    expect(() => t.setLimits({ nope: 3 } as never)).toThrow(/no such limit: nope/);
    t.setLimits({ ops: 0 });
    expect(t.limits().ops).toBeNull();
  });
});

describe('limit settings', () => {
  it('shows and changes limits under their setting names, checking the whole change first', async () => {
    const { LimitSettings } = await import('../../../services/common/rate-limit.js');
    const t = new Throttle({ ops: 100, bytes: null });
    const s = new LimitSettings(t, { maxOpsPerSecond: 'ops', maxBytesPerSecond: 'bytes' });
    expect(s.view()).toEqual({ maxOpsPerSecond: 100, maxBytesPerSecond: null, throttledMs: 0 });
    s.set({ 'max-bytes-per-second': 1_000_000, maxOpsPerSecond: 0 });
    expect(t.limits()).toEqual({ ops: null, bytes: 1_000_000 });
    expect(() => s.set({ maxOpsPerSecond: 5, snapshotMaxBytesPerSecond: 10 })).toThrow(/snapshot-max-bytes-per-second: not a limit of this service \(it has max-ops-per-second, max-bytes-per-second\)/);
    expect(() => s.set({ maxOpsPerSecond: -3 })).toThrow(/max-ops-per-second: must be a whole number ≥ 0/);
    expect(() => s.set({ maxOpsPerSecond: '5' })).toThrow(/not "5"/);
    expect(() => s.set([1])).toThrow(/JSON object/);
    expect(t.limits().ops).toBeNull(); // nothing of a refused change was applied
    s.set({ maxOpsPerSecond: null, maxBytesPerSecond: null });
    expect(t.active).toBe(false);
  });
});
