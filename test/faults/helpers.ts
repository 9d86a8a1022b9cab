/**
 * What the fault tests share: private Redis servers stopped after each test, a workload of
 * non-idempotent writes whose final values show any loss or duplicate, and a reader of a service's
 * /status.
 */
import { afterEach, expect } from 'vitest';
import { redisClient } from '../helpers/pipeline.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';

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

export interface Workload {
  done: Promise<void>;
  /** Operations sent so far. */
  sent(): number;
}

/**
 * `ops` rounds of INCR, LPUSH and APPEND (a MULTI every 50): any write lost or applied twice
 * changes a counter, a list length or a string (see `expectExactCounters`).
 */
export function workload(url: string, ops: number, paceMs = 0): Workload {
  const c = redisClient(url);
  let i = 0;
  const done = (async () => {
    for (; i < ops; i++) {
      const p = c.pipeline();
      p.incr(`ctr:${i % 7}`);
      p.lpush(`lst:${i % 5}`, String(i));
      p.append(`app:${i % 3}`, `${i},`);
      if (i % 50 === 0) await c.multi().incrby('tx:a', 2).rpush('tx:l', String(i)).exec();
      await p.exec();
      if (paceMs) await sleep(paceMs);
    }
  })().finally(() => c.disconnect());
  return { done, sent: () => i };
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

/** GET /status of a service's HTTP port. */
export async function statusOf(port: number): Promise<Record<string, any>> {
  const res = await fetch(`http://127.0.0.1:${port}/status`);
  return (await res.json()) as Record<string, any>;
}
