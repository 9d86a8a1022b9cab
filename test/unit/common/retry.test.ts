import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ReplistreamError } from '../../../services/common/errors.js';
import { runUntilStopped, withStartupRetry } from '../../../services/common/retry.js';

const log = pino({ level: 'silent' });

describe('service life', () => {
  it('a stop that hangs (a server gone) is abandoned at the deadline, keeping the exit code', async () => {
    const t0 = Date.now();
    const code = await runUntilStopped('test', log, Promise.resolve(new Error('broken')), () => new Promise<void>(() => undefined), 200);
    expect(code).toBe(1);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190);
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  it('a stop that fails still ends the run', async () => {
    const code = await runUntilStopped('test', log, Promise.resolve(undefined), () => Promise.reject(new Error('socket gone')), 200);
    expect(code).toBe(0);
  });

  it('start-up retries only what may pass (an unreachable server), not a configuration error', async () => {
    let tries = 0;
    const config = withStartupRetry('test', log, async () => {
      tries++;
      throw new ReplistreamError('CONFIG', 'db-map: bad');
    });
    await expect(config).rejects.toThrow(/db-map/);
    expect(tries).toBe(1);
  });
});
