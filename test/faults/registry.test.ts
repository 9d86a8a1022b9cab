/**
 * The schema registry unreachable (a proxy in front of the stack's registry, cut):
 * - at capture's start: the start fails within kafka-timeout-ms with an error naming the
 *   registry setting (the CLI then exits 1; an orchestrator restarts it);
 * - mid-run: capture and a running applier have the schema ids they need and keep going; an
 *   applier started meanwhile (a new group, with ids it has never seen) retries until the
 *   registry is back. Both destinations end equal to the source, with exact counters.
 */
import { describe, expect, it } from 'vitest';
import { pipelineNames, runApplier, runCapture, waitConverged, until } from '../helpers/pipeline.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { stack, uniqueName } from '../helpers/stack-env.js';
import { cleanUpAfterEach, cleanups, expectExactCounters, fill, server, sleep, workload } from './helpers.js';
import { ReplistreamError } from '../../services/common/errors.js';

cleanUpAfterEach();

async function registryProxy(): Promise<FaultProxy> {
  const u = new URL(stack().registry);
  const proxy = await startFaultProxy(`${u.hostname}:${u.port}`);
  cleanups.push(() => proxy.close());
  return proxy;
}

describe('schema registry unreachable', () => {
  it('at capture start: fails within kafka-timeout-ms naming the registry setting', async () => {
    const source = await server();
    const proxy = await registryProxy();
    await proxy.cut();
    const names = pipelineNames();
    const started = Date.now();
    const err = await runCapture(source.url, names, { dbs: [0], registry: proxy.url(stack().registry), kafkaTimeoutMs: 3000 }).then(
      (c) => {
        cleanups.push(() => c.stop());
        return null;
      },
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ReplistreamError);
    expect((err as ReplistreamError).setting).toBe('registry');
    expect((err as ReplistreamError).message).toMatch(new RegExp(`schema registry .*127\\.0\\.0\\.1:${proxy.port}.*connection refused.*check the registry setting`));
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  it('mid-run: the pipeline keeps going on known schema ids; a new applier retries until it is back; converges', async () => {
    const proxy = await registryProxy();
    const registry = proxy.url(stack().registry);
    const source = await server();
    const destination = await server();
    const second = await server();
    await fill(source.url, 3000);
    const names = pipelineNames();
    const capture = await runCapture(source.url, names, { dbs: [0], registry });
    cleanups.push(() => capture.stop());
    const applier = await runApplier(destination.url, names, uniqueName('g'), { registry });
    cleanups.push(() => applier.stop());
    cleanups.push(() => proxy.restore());
    const ops = 3000;
    const w = workload(source.url, ops, 2);
    await until(() => applier.applier.stats.events > 3500, 60_000, 'the applier writing');

    await proxy.cut();
    const appliedAtCut = applier.applier.stats.events;
    const late = await runApplier(second.url, names, uniqueName('g'), { registry });
    cleanups.push(() => late.stop());
    await sleep(6000);
    // capture produced and the running applier applied during the outage
    expect(applier.applier.stats.events).toBeGreaterThan(appliedAtCut + 500);
    expect(capture.service.stats.state).toBe('synchronizing');
    expect(late.applier.stats.events).toBe(0); // it cannot read a record without its schema
    expect(late.status.body().state).not.toBe('failed');
    await proxy.restore();

    await w.done;
    for (const d of [destination, second]) {
      const result = await waitConverged(source.url, d.url, [0], 120_000);
      expect(result.differences).toEqual([]);
      await expectExactCounters(d.url, ops);
    }
  });
});
