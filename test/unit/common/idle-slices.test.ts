import { describe, expect, it } from 'vitest';
import { runInSlices } from '../../../services/common/idle-slices.js';

describe('runInSlices', () => {
  it('runs whole slices until the total is reached', async () => {
    let calls = 0;
    const r = await runInSlices(1001, 500, () => void calls++);
    expect(calls).toBe(3);
    expect(r.units).toBe(1500);
    expect(r.waitedMs).toBe(0);
  });

  it('lets the event loop turn between slices', async () => {
    const order: string[] = [];
    const run = runInSlices(3, 1, () => void order.push('slice'));
    setImmediate(() => order.push('io'));
    await run;
    expect(order.indexOf('io')).toBeGreaterThan(0);
    expect(order.indexOf('io')).toBeLessThan(order.length - 1);
  });

  it('runs nothing once stopped, not even a first slice', async () => {
    let calls = 0;
    const r = await runInSlices(10, 1, () => void calls++, { stopped: () => true });
    expect(calls).toBe(0);
    expect(r.units).toBe(0);
  });

  it('holds while busy and resumes after', async () => {
    let busy = true;
    let calls = 0;
    const run = runInSlices(2, 1, () => void calls++, { busy: () => busy, pollMs: 5 });
    await new Promise((r) => setTimeout(r, 40));
    expect(calls).toBe(0);
    busy = false;
    const r = await run;
    expect(calls).toBe(2);
    expect(r.waitedMs).toBeGreaterThanOrEqual(30);
  });

  it('a stop while busy ends the wait', async () => {
    let stop = false;
    const run = runInSlices(2, 1, () => undefined, { busy: () => true, stopped: () => stop, pollMs: 5 });
    setTimeout(() => (stop = true), 20);
    const r = await run;
    expect(r.units).toBe(0);
  });

  it('awaits an async slice before the next', async () => {
    let running = 0;
    let overlapped = false;
    await runInSlices(4, 1, async () => {
      if (running++ > 0) overlapped = true;
      await new Promise((r) => setTimeout(r, 2));
      running--;
    });
    expect(overlapped).toBe(false);
  });
});
