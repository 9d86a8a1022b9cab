/**
 * The Kafka broker is killed (`kill -9`) and started again under load, once during the full sync
 * and once during incremental sync. The broker is a private one (test/helpers/kafka-broker.ts),
 * so the shared stack is not disturbed. Capture and applier either ride the restart out (kafkajs
 * retries) or stop with an error and are started again, as an orchestrator would; the test
 * records which. Either way the destination ends equal to the source, every INCR applied once.
 * The last test puts the broker behind a proxy (it advertises the proxy's port) and black-holes
 * every Kafka connection instead.
 */
import { describe, expect, it } from 'vitest';
import type { RunningApplier } from '../../services/applier/service.js';
import type { RunningCapture } from '../../services/capture/service.js';
import { pipelineNames, runApplier, runCapture, waitConverged, until, type PipelineNames } from '../helpers/pipeline.js';
import { startKafkaBroker, type KafkaBroker } from '../helpers/kafka-broker.js';
import { uniqueName } from '../helpers/stack-env.js';
import { cleanUpAfterEach, cleanups, expectExactCounters, fill, server, sleep, workload } from './helpers.js';

cleanUpAfterEach();

/**
 * Keeps a capture and an applier running against `broker`: one that fails is started again
 * (after a second), as an orchestrator restarts a process that exited 1.
 */
function supervised(source: string, destination: string, names: PipelineNames, broker: KafkaBroker) {
  const group = uniqueName('g');
  const restarts = { capture: 0, applier: 0 };
  const errors: string[] = [];
  let capture: RunningCapture | null = null;
  let applier: RunningApplier | null = null;
  let stopped = false;
  const keepCapture = async (): Promise<void> => {
    while (!stopped) {
      try {
        capture = await runCapture(source, names, { dbs: [0], kafka: broker.brokers, kafkaTimeoutMs: 60_000 });
      } catch (err) {
        errors.push(`capture start: ${(err as Error).message}`);
        await sleep(1000);
        continue;
      }
      const failed = await capture.service.failure();
      if (stopped) return;
      errors.push(`capture: ${failed.message}`);
      await capture.stop().catch(() => undefined);
      restarts.capture++;
      await sleep(1000);
    }
  };
  const keepApplier = async (): Promise<void> => {
    while (!stopped) {
      try {
        applier = await runApplier(destination, names, group, { kafka: broker.brokers, kafkaTimeoutMs: 60_000 });
      } catch (err) {
        errors.push(`applier start: ${(err as Error).message}`);
        await sleep(1000);
        continue;
      }
      const failed = await applier.consumer.done.then(() => null, (e: Error) => e);
      if (stopped) return;
      errors.push(`applier: ${failed?.message ?? 'consumer ended'}`);
      await applier.stop().catch(() => undefined);
      restarts.applier++;
      await sleep(1000);
    }
  };
  void keepCapture();
  const startApplier = () => void keepApplier();
  cleanups.push(async () => {
    stopped = true;
    await (applier as RunningApplier | null)?.stop().catch(() => undefined);
    await (capture as RunningCapture | null)?.stop().catch(() => undefined);
  });
  return {
    startApplier,
    capture: () => capture as RunningCapture | null,
    applier: () => applier as RunningApplier | null,
    restarts,
    errors,
  };
}

async function privateBroker(proxied = false): Promise<KafkaBroker> {
  const broker = await startKafkaBroker(120_000, { proxied });
  cleanups.push(() => broker.stop());
  return broker;
}

describe('Kafka broker kill -9 and restart under load', () => {
  it('during incremental sync: converges with exact counters', async () => {
    const broker = await privateBroker();
    const source = await server();
    const destination = await server();
    await fill(source.url, 5000);
    const names = pipelineNames();
    const run = supervised(source.url, destination.url, names, broker);
    await until(() => run.capture()?.service.stats.state === 'synchronizing', 90_000, 'full sync captured');
    run.startApplier();
    const ops = 4000;
    const w = workload(source.url, ops, 2);
    await until(() => (run.capture()?.service.stats.commands ?? 0) > 500 && (run.applier()?.applier.stats.events ?? 0) > 5000, 90_000, 'both streaming');

    await broker.kill9();
    const sentAtKill = w.sent();
    await sleep(3000);
    await broker.restart();
    expect(w.sent()).toBeGreaterThan(sentAtKill); // the source never waited for Kafka

    await w.done;
    const result = await waitConverged(source.url, destination.url, [0], 150_000);
    expect(result.differences, run.errors.join('\n')).toEqual([]);
    await expectExactCounters(destination.url, ops);
    for (const e of run.errors) expect(e).toMatch(/kafka/i); // a stop, if any, names Kafka
    console.log(`broker restart during incremental sync: restarts ${JSON.stringify(run.restarts)}; ${run.errors.join(' | ') || 'no error'}`);
  });

  it('during the full sync: converges with exact counters', async () => {
    const broker = await privateBroker();
    const source = await server();
    const destination = await server();
    await fill(source.url, 100_000);
    const names = pipelineNames();
    const run = supervised(source.url, destination.url, names, broker);
    run.startApplier();
    await until(() => (run.capture()?.service.stats.snapshotKeys ?? 0) > 5000, 90_000, 'the full sync under way');
    expect(run.capture()?.service.stats.state).toBe('full-sync');
    const ops = 1000;
    const w = workload(source.url, ops, 2);
    await broker.kill9();
    await sleep(3000);
    await broker.restart();

    await w.done;
    const result = await waitConverged(source.url, destination.url, [0], 180_000);
    expect(result.differences, run.errors.join('\n')).toEqual([]);
    await expectExactCounters(destination.url, ops);
    for (const e of run.errors) expect(e).toMatch(/kafka/i);
    console.log(`broker restart during the full sync: restarts ${JSON.stringify(run.restarts)}; ${run.errors.join(' | ') || 'no error'}`);
  });

  it('Kafka black-holed for 10 s under load (every client behind the proxy; no RST): rides it out, converges with exact counters', async () => {
    const broker = await privateBroker(true);
    const proxy = broker.proxy!;
    const source = await server();
    const destination = await server();
    await fill(source.url, 5000);
    const names = pipelineNames();
    const run = supervised(source.url, destination.url, names, broker);
    cleanups.push(() => proxy.restore());
    await until(() => run.capture()?.service.stats.state === 'synchronizing', 90_000, 'full sync captured');
    run.startApplier();
    const ops = 4000;
    const w = workload(source.url, ops, 2);
    await until(() => (run.capture()?.service.stats.commands ?? 0) > 500 && (run.applier()?.applier.stats.events ?? 0) > 5000, 90_000, 'both streaming');

    expect(proxy.stats().bytesUp).toBeGreaterThan(0); // the clients do go through the proxy (advertised listener)
    proxy.blackhole();
    const traffic = proxy.stats();
    const sentAtHole = w.sent();
    // acks that crossed just before the hole are still being handled for a moment: count after it
    await sleep(1000);
    const produced = run.capture()!.service.stats.eventsProduced;
    await sleep(9000);
    // nothing crossed, nothing was acknowledged, and the source was never held back
    expect(proxy.stats()).toMatchObject({ bytesUp: traffic.bytesUp, bytesDown: traffic.bytesDown });
    expect(run.capture()!.service.stats.eventsProduced).toBe(produced);
    expect(w.sent()).toBeGreaterThan(sentAtHole);
    await proxy.restore();

    await w.done;
    const result = await waitConverged(source.url, destination.url, [0], 150_000);
    expect(result.differences, run.errors.join('\n')).toEqual([]);
    await expectExactCounters(destination.url, ops);
    for (const e of run.errors) expect(e).toMatch(/kafka/i);
    console.log(`Kafka black-holed 10 s: restarts ${JSON.stringify(run.restarts)}; ${run.errors.join(' | ') || 'no error'}`);
  });
});
