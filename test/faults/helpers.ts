/**
 * What the fault tests share: private Redis servers stopped after each test, a workload of
 * non-idempotent writes whose final values show any loss or duplicate, and a reader of a service's
 * /status.
 */
import { afterEach, expect } from 'vitest';
import { redisClient } from '../helpers/pipeline.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';

// the reader of a service's /status and the workload are the integration tests' too
export { counterWorkload as workload, statusOf, type Workload } from '../helpers/pipeline.js';

export const cleanups: Array<() => Promise<void> | void> = [];

/** Registers the after-each clean-up (call once per test file). */
export function cleanUpAfterEach(): void {
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await Promise.resolve(c()).catch(() => undefined);
  });
}

export async function server(config: Record<string, string | number> = {}): Promise<RedisServer> {
  const s = await startRedis({ 'repl-backlog-size': '64mb', ...config });
  cleanups.push(() => s.stop());
  return s;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Keys for a snapshot: small strings and a few lists (lists are not idempotent to re-apply). */
export async function fill(url: string, keys: number): Promise<void> {
  const c = redisClient(url);
  await c.call('DEBUG', 'POPULATE', keys, 'pop', 32);
  for (let l = 0; l < 10; l++) await c.rpush(`snaplist:${l}`, ...Array.from({ length: 300 }, (_, i) => `item${i}`));
  c.disconnect();
}

/** The destination holds exactly the effects of `ops` rounds of `workload` (no loss, no duplicate). */
export async function expectExactCounters(destinationUrl: string, ops: number): Promise<void> {
  const d = redisClient(destinationUrl);
  try {
    let incrs = 0;
    for (let k = 0; k < 7; k++) incrs += Number((await d.get(`ctr:${k}`)) ?? 0);
    expect(incrs).toBe(ops);
    let pushed = 0;
    for (let k = 0; k < 5; k++) pushed += await d.llen(`lst:${k}`);
    expect(pushed).toBe(ops);
    expect(await d.get('tx:a')).toBe(String(2 * Math.ceil(ops / 50)));
    expect(await d.llen('tx:l')).toBe(Math.ceil(ops / 50));
    const appended = ((await d.get('app:0')) ?? '').split(',').filter(Boolean);
    expect(appended).toEqual(Array.from({ length: Math.ceil(ops / 3) }, (_, n) => String(n * 3)));
  } finally {
    d.disconnect();
  }
}
