/**
 * The Kafka broker gone for longer than kafkajs retries (8 retries, backoff up to 30 s: about a
 * minute) under load. capture and the applier run as real processes (the `replistream` command),
 * so what a user sees is what is checked: each either rides the outage out, or exits 1 with an
 * error naming the broker — never a process that hangs or a crash without a name (the `kafka`
 * setting is named at start; an exit while running does not name it yet). A process that exits is
 * started again after a second, as an orchestrator would (while the broker is still down, a
 * restarted one waits kafka-timeout-ms and exits naming the setting). Once the
 * broker is back, the destination ends equal to the source, every INCR, LPUSH and APPEND applied
 * exactly once. The broker is a private one (test/helpers/kafka-broker.ts): the shared stack's is
 * never touched.
 */
import { describe, expect, it } from 'vitest';
import { startKafkaBroker } from '../helpers/kafka-broker.js';
import { pipelineNames, redisClient, waitConverged, until } from '../helpers/pipeline.js';
import { startService, type ServiceProcess } from '../helpers/processes.js';
import { freePort } from '../helpers/redis-server.js';
import { uniqueName } from '../helpers/stack-env.js';
import { cleanUpAfterEach, cleanups, expectExactCounters, fill, server, sleep, statusOf, workload } from './helpers.js';

cleanUpAfterEach();

const OUTAGE_MS = 90_000;

interface Exit {
  service: string;
  code: number | null;
  signal: string | null;
  /** The `replistream: …` error line(s) of the process's stderr. */
  lines: string[];
  /** ms after the broker was killed (negative: before). */
  atMs: number;
  /** The last log lines, to show what a process without an error line said last. */
  tail: string[];
}

/**
 * What a process said when it ended on an error: the CLI's `replistream: …` line (an error at
 * start), or the `err` of the service's "stopped on an error" log line (an error while running).
 */
function errorLines(log: string): string[] {
  const out: string[] = [];
  for (const l of log.split('\n')) {
    if (l.startsWith('replistream: ') && !l.includes('running the TypeScript sources')) out.push(l);
    else if (l.includes('stopped on an error')) {
      try {
        out.push(`${String((JSON.parse(l) as { msg?: unknown }).msg)}: ${String((JSON.parse(l) as { err?: unknown }).err)}`);
      } catch {
        out.push(l);
      }
    }
  }
  return out;
}

/** Runs `args` as a process and starts it again 1 s after every exit, recording each exit. */
function supervise(name: string, args: string[], exits: Exit[], killedAt: () => number | null) {
  let proc: ServiceProcess | null = null;
  let stopped = false;
  let starts = 0;
  const loop = (async () => {
    while (!stopped) {
      const p = startService(args);
      proc = p;
      starts++;
      const code = await p.exited();
      if (stopped) return;
      const k = killedAt();
      exits.push({
        service: name,
        code,
        signal: p.child.signalCode,
        lines: errorLines(p.log()),
        atMs: k === null ? Number.NEGATIVE_INFINITY : Date.now() - k,
        tail: p.log().split('\n').filter(Boolean).slice(-3).map((l) => l.slice(0, 600)),
      });
      await sleep(1000);
    }
  })();
  return {
    starts: () => starts,
    current: () => proc as ServiceProcess | null,
    stop: async () => {
      stopped = true;
      await (proc as ServiceProcess | null)?.term();
      await loop;
    },
  };
}

describe('Kafka unreachable for longer than kafkajs retries (≈ 1 min) under load', () => {
  it(`broker down ${OUTAGE_MS / 1000} s: each service rides it out or exits 1 naming the broker; restarted, they converge with exact counters`, async () => {
    const broker = await startKafkaBroker();
    cleanups.push(() => broker.stop());
    const source = await server();
    const destination = await server();
    await fill(source.url, 5000);
    const names = pipelineNames();
    const common = ['--source-id', names.sourceId, '--topic-prefix', names.topicPrefix, '--kafka', broker.brokers];
    const [capturePort, applierPort] = [await freePort(), await freePort()];
    const exits: Exit[] = [];
    let killedAt: number | null = null;
    const capture = supervise('capture', ['capture', '--source', source.url, '--dbs', '0', '--http-port', String(capturePort), ...common], exits, () => killedAt);
    const applier = supervise('applier', ['apply', '--destination', destination.url, '--group', uniqueName('g'), '--http-port', String(applierPort), ...common], exits, () => killedAt);
    cleanups.push(() => capture.stop());
    cleanups.push(() => applier.stop());
    const applied = async () => Number((await statusOf(applierPort).catch(() => null))?.applier?.events ?? 0);
    await until(async () => (await applied()) > 5000, 120_000, 'the full sync applied');

    const ops = 3000;
    const w = workload(source.url, ops, 30); // about a minute and a half of writes: well into the outage
    await until(() => w.sent() > 300, 30_000, 'writes under way');
    killedAt = Date.now();
    await broker.kill9();
    const sentAtKill = w.sent();
    await sleep(OUTAGE_MS);
    expect(w.sent()).toBeGreaterThan(sentAtKill); // the source was never held back
    await broker.restart();

    await w.done;
    const result = await waitConverged(source.url, destination.url, [0], 240_000);
    const report = exits.map((e) => `${e.service} exit ${e.code ?? e.signal} ${Math.round(e.atMs / 1000)} s after the kill: ${e.lines.join(' | ') || `(no error line; its last lines: ${e.tail.join(' / ')})`}`);
    expect(result.differences, report.join('\n')).toEqual([]);
    await expectExactCounters(destination.url, ops);
    // every exit is a clear one: code 1 and an error that names the broker. An exit at start (a
    // restart while the broker is still down) also names the kafka setting; one while running
    // (capture, about a minute in: 'capture stopped on an error: writing position … : Connection
    // error: connect ECONNREFUSED <broker>') does not yet — reported, see issue 13.
    for (const e of exits) {
      expect(e.code, report.join('\n')).toBe(1);
      expect(e.lines.join('\n'), report.join('\n')).toContain(broker.brokers);
      if (e.lines.some((l) => l.startsWith('replistream: '))) expect(e.lines.join('\n'), report.join('\n')).toMatch(/^replistream: kafka\b.*check the kafka setting/m);
    }
    // and both are running again, the destination following the source
    const c = redisClient(source.url);
    await c.set('after-outage', '1');
    c.disconnect();
    expect((await waitConverged(source.url, destination.url, [0], 60_000)).differences).toEqual([]);
    console.log(
      `Kafka down ${OUTAGE_MS / 1000} s: capture started ${capture.starts()}×, applier ${applier.starts()}×; ` + (report.length ? report.join(' || ') : 'both rode it out'),
    );
  }, 600_000);
});
