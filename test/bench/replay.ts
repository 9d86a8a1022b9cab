/**
 * `npm run bench -- replay [--keys N] [--runs N] [--baseline DIR] [--partitions N]`
 *
 * The applier alone: a snapshot already in Kafka, replayed by one `replistream apply` process into
 * an empty Redis, from the topic's first record (`--from earliest`). Nothing else runs meanwhile
 * (capture has stopped), so the figures are the applier's and its destination's, without the
 * capture and the broker's ingest competing for the cores as they do in the e2e bench's full sync.
 *
 * 1. A source with the e2e bench's mixed dataset (`--keys`, default 1,000,000: 96 % small strings,
 *    4 % small collections) in db 1; capture runs until the snapshot is in Kafka, then stops.
 * 2. `--runs` times (default 3), each contender on a fresh destination: the time from spawning the
 *    applier until the destination's DBSIZE equals the source's, its CPU and its peak RSS.
 *    Contenders: this checkout, and with `--baseline DIR` another checkout's build
 *    (`DIR/bin/replistream.mjs`, e.g. a worktree of the previous commit after `npm run build`),
 *    interleaved run by run so both see the same machine.
 * Printed: the medians, and the baseline's beside them as a ratio; every run in the JSON line.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pipelineNames, redisClient } from '../helpers/pipeline.js';
import { startService, type ServiceProcess } from '../helpers/processes.js';
import { freePort, startRedis } from '../helpers/redis-server.js';
import { uniqueName } from '../helpers/stack-env.js';
import {
  cleanupAll, cleanupOnSignalUntilDone, deleteTopics, fillSourceMixed, load1, machine, now, once, parseFlags, printGrid, printJson, procStats, progress, ratio, sleep, startSource, waitFor,
} from './common.js';

const DB = 1;
const TIMEOUT_MS = 10 * 60_000;

interface Run {
  contender: string;
  sec: number;
  cpuSec: number;
  peakRssMb: number;
  load1: number;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

export async function benchReplay(args: string[]): Promise<void> {
  const f = parseFlags('replay', args, {
    keys: { default: 1_000_000, help: 'keys in the snapshot (mixed dataset, as the e2e bench)' },
    runs: { default: 3, help: 'replays per contender' },
    baseline: { default: '', help: 'another checkout (built) to replay with, interleaved: DIR/bin/replistream.mjs' },
    partitions: { default: 4, help: 'partitions of the topic' },
  });
  const baselineBin = f.baseline ? resolve(String(f.baseline), 'bin', 'replistream.mjs') : null;
  if (baselineBin && !existsSync(baselineBin)) throw new Error(`--baseline: ${baselineBin} does not exist`);
  if (baselineBin && !existsSync(join(String(f.baseline), 'dist', '.built'))) throw new Error(`--baseline: ${f.baseline} has no build (npm run build there)`);
  const contenders: Array<{ name: string; bin: string | undefined }> = [{ name: 'this build', bin: undefined }];
  if (baselineBin) contenders.unshift({ name: 'baseline', bin: baselineBin });
  const loadBefore = load1();
  const names = pipelineNames();
  const groups: string[] = [];
  let src: Awaited<ReturnType<typeof startSource>> | null = null;
  let running: ServiceProcess | null = null;
  const cleanup = once(() =>
    cleanupAll([
      running ? async () => void (await running!.kill9()) : null,
      src ? () => src!.stop() : null,
      () => deleteTopics(names.topicPrefix, groups),
    ]),
  );
  const offSignals = cleanupOnSignalUntilDone(cleanup);
  const runs: Run[] = [];
  try {
    progress(`source: filling ${f.keys.toLocaleString('en-US')} keys (mixed) in db ${DB}`);
    src = await startSource('diskless');
    const fill = await fillSourceMixed(src, DB, f.keys);
    const common = ['--source-id', names.sourceId, '--topic-prefix', names.topicPrefix];
    const capPort = await freePort();
    progress('capture: the snapshot into Kafka');
    const cap = (running = startService(['capture', '--source', src.url, '--dbs', String(DB), '--partitions', String(f.partitions), '--http-port', String(capPort), ...common]));
    await waitFor(
      async () => {
        const st = (await fetch(`http://127.0.0.1:${capPort}/status`).then((r) => r.json()).catch(() => null)) as Record<string, unknown> | null;
        return st !== null && Number(st.fullSyncs) >= 1 && st.state === 'synchronizing';
      },
      'capture to have sent the snapshot',
      TIMEOUT_MS,
      200,
    );
    await cap.term();
    running = null;
    await sleep(1000);

    for (let i = 1; i <= f.runs; i++) {
      for (const c of contenders) {
        const dest = await startRedis();
        const dc = redisClient(dest.url, DB);
        const group = uniqueName('g');
        groups.push(group);
        try {
          const t0 = now();
          const l = load1();
          const app = (running = startService(['apply', '--destination', dest.url, '--group', group, '--from', 'earliest', ...common], {}, c.bin));
          let stats = procStats(app.child.pid!);
          await waitFor(
            async () => {
              if (app.child.exitCode !== null) throw new Error(`the applier exited (${app.child.exitCode}):\n${app.log().split('\n').slice(-10).join('\n')}`);
              stats = procStats(app.child.pid!);
              return (await dc.dbsize()) >= fill.dbsize;
            },
            'the destination to hold every key',
            TIMEOUT_MS,
            20,
          );
          const sec = (now() - t0) / 1000;
          stats = procStats(app.child.pid!);
          await app.term();
          running = null;
          runs.push({ contender: c.name, sec, cpuSec: stats.cpuSec, peakRssMb: stats.hwm / 1024 / 1024, load1: l });
          progress(`${c.name}, run ${i}: ${sec.toFixed(2)} s, ${stats.cpuSec.toFixed(2)} CPU-s, peak RSS ${(stats.hwm / 1024 / 1024).toFixed(0)} MB (load ${l.toFixed(2)})`);
        } finally {
          dc.disconnect();
          await dest.stop();
        }
      }
    }

    const of = (name: string) => runs.filter((r) => r.contender === name);
    const mine = of('this build');
    const base = of('baseline');
    const row = (label: string, pick: (r: Run) => number, digits = 2) => {
      const a = median(mine.map(pick));
      const b = base.length ? median(base.map(pick)) : null;
      const r = b === null ? null : ratio(a, b);
      return [label, Number(a.toFixed(digits)), b === null ? null : Number(b.toFixed(digits)), r === null ? null : Number(r.toFixed(2))];
    };
    printGrid(
      `replay bench — one applier replays a ${fill.dbsize.toLocaleString('en-US')}-key snapshot (${(fill.usedMemory / 1024 / 1024).toFixed(1)} MB in the source) from Kafka into an empty Redis, ${f.runs} run(s) each, ${machine().cpus} CPUs, load ${loadBefore.toFixed(2)} → ${load1().toFixed(2)}`,
      ['median of the runs', 'this build', 'baseline', 'ratio'],
      [row('replay: spawn → every key written (s)', (r) => r.sec), row('keys per second', (r) => fill.dbsize / r.sec, 0), row('CPU s of the applier', (r) => r.cpuSec), row('peak RSS of the applier (MB)', (r) => r.peakRssMb, 0)],
      [
        'Each run: a fresh destination and consumer group, the applier spawned with --from earliest, timed until the destination\'s DBSIZE equals the source\'s',
        '(node start and the group join included). Baseline: --baseline DIR, interleaved with this build run by run; ratio = this build / baseline.',
      ],
    );
    printJson({ bench: 'replay', machine: machine(), loadBefore, loadAfter: load1(), keys: fill.dbsize, flags: f, runs });
  } finally {
    offSignals();
    await cleanup();
  }
}
