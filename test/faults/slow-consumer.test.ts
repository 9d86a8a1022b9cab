/**
 * A slow applier (its destination link throttled by a proxy) meets a burst on the source. The
 * source's output buffer for replicas is small here (client-output-buffer-limit replica 8mb 4mb
 * 10): had capture's reading of the link waited for the applier, the source would drop it and
 * capture would need a PSYNC or a new snapshot. Capture keeps reading and hands the burst to
 * Kafka; the applier catches up once the throttle is lifted, with exact counters.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pipelineNames, redisClient, runApplier, runCapture, waitConverged, until } from '../helpers/pipeline.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { uniqueName } from '../helpers/stack-env.js';
import { cleanUpAfterEach, cleanups, fill, server } from './helpers.js';

cleanUpAfterEach();

describe('slow consumer', () => {
  it('a burst while the applier is throttled: the source never drops capture; converges with exact counters', async () => {
    const source = await server({ 'client-output-buffer-limit': 'replica 8mb 4mb 10' });
    const destination = await server();
    const proxy = await startFaultProxy(`127.0.0.1:${destination.port}`);
    cleanups.push(() => proxy.close());
    await fill(source.url, 2000);
    const names = pipelineNames();
    const capture = await runCapture(source.url, names, { dbs: [0] });
    cleanups.push(() => capture.stop());
    await until(() => capture.service.stats.state === 'synchronizing', 60_000, 'full sync captured');
    const applier = await runApplier(proxy.url(destination.url), names, uniqueName('g'));
    cleanups.push(() => applier.stop());
    await until(() => applier.applier.stats.events > 2000, 60_000, 'the applier writing');

    proxy.throttle(50_000); // 50 KB/s to the destination: far slower than the burst
    const rounds = 40_000;
    const value = 'v'.repeat(1000);
    const src = redisClient(source.url);
    const burstStart = Date.now();
    for (let i = 0; i < rounds; i += 1000) {
      const p = src.pipeline();
      for (let k = i; k < i + 1000; k++) p.set(`burst:${k % 3000}`, value).incr(`burstctr:${k % 7}`);
      await p.exec();
    }
    const burstMs = Date.now() - burstStart;
    src.disconnect();
    // about 45 MB of stream: durable in Kafka while the applier has hardly started on it
    await until(async () => capture.service.stats.durableOffset >= (await masterOffset(source.url)) - 1000, 60_000, 'the burst durable in Kafka');
    expect(applier.applier.stats.events).toBeLessThan(2000 + 2 * rounds);
    expect(capture.service.stats.continues).toBe(0);
    expect(capture.service.stats.fullSyncs).toBe(1);
    const log = readFileSync(join(source.dir, 'redis.log'), 'utf8');
    expect(log).not.toMatch(/output buffer limits/);
    expect(log).not.toMatch(/Connection with replica .* lost/);

    await proxy.restore();
    const result = await waitConverged(source.url, destination.url, [0], 150_000);
    expect(result.differences).toEqual([]);
    const dst = redisClient(destination.url);
    let sum = 0;
    for (let k = 0; k < 7; k++) sum += Number(await dst.get(`burstctr:${k}`));
    dst.disconnect();
    expect(sum).toBe(rounds);
    console.log(`burst of ${rounds} rounds in ${burstMs} ms; capture kept its link (continues 0, one full sync)`);
  });
});

async function masterOffset(url: string): Promise<number> {
  const c = redisClient(url);
  try {
    return Number(/master_repl_offset:(\d+)/.exec(await c.info('replication'))?.[1] ?? 0);
  } finally {
    c.disconnect();
  }
}
