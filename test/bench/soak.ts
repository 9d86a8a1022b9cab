/**
 * `npm run soak [-- --minutes M] [--rate R] [--sample-sec S] …` (the same as `npm run bench -- soak`)
 *
 * A long run at a fixed rate, to see whether memory or lag creep: `replistream capture` and one
 * `replistream apply` process (as a user runs them, with --http-port), the mixed workload of the
 * mixed bench (its generator child: single-key writes, multi-key commands, MULTI/EXEC, EVAL, an INCR
 * stream, MOVE and SWAPDB 0 1 on dbs 0, 1, 7; no FLUSHDB) at `--rate` commands per second for
 * `--minutes`, after a full sync of the prefilled keys.
 *
 * - every `--sample-sec` seconds: the RSS (VmRSS from /proc) of the capture and the applier, the
 *   applier's applied events/s and heartbeat lag (/status), and the probe lag of the interval: the
 *   mixed bench's probe SETs `probe:{tag}:<i>` on every (db, partition) stream, `--probe-rate` per
 *   second, and times the keyspace notification at the destination (lag = received − sent);
 * - at the end: catch-up (load stopped → every probe arrived), then source = destination (verify of
 *   dbs 0, 1, 7 until equal or `--verify-sec`);
 * - the trend: a least-squares line through each series (RSS MB/min of each process, lag p50 and
 *   p99 ms/min), the samples of the first `--warmup-sec` left out, and a verdict: "growing" when
 *   the slope is significant (t = slope / its standard error ≥ 3) and large (RSS: at that slope it
 *   would grow by ≥ 10 % of its mean and ≥ 5 MB in an hour; lag: by ≥ max(100 ms, its mean) in an
 *   hour), "falling" likewise downwards, "flat" otherwise.
 *
 * Every process started here is stopped at the end, on an error and on Ctrl-C.
 */
import { verifyDatabases } from '../../services/destination/verify.js';
import { pipelineNames, waitConverged } from '../helpers/pipeline.js';
import { freePort, startRedis, type RedisServer } from '../helpers/redis-server.js';
import { uniqueName } from '../helpers/stack-env.js';
import {
  MB, ProcRssSampler, cleanupAll, cleanupOnSignalUntilDone, deleteTopics, fmt, linearFit, load1, machine, now, once, parseFlags, printGrid, printJson, procStats, progress, sleep,
} from './common.js';
import { DBS, Generator, LagProbe, Svc, type LagStats } from './mixed.js';

interface Sample {
  /** Minutes since the load started. */
  tMin: number;
  /** Probes sent so far (regular ones): the interval's probes are those since the previous sample. */
  probes: number;
  captureRss: number;
  applierRss: number;
  applied: number;
  hbLagMax: number | null;
  load1: number;
}

interface Trend {
  series: string;
  unit: string;
  slope: number;
  t: number;
  mean: number;
  first: number;
  last: number;
  n: number;
  verdict: 'flat' | 'growing' | 'falling' | 'too few samples';
}

export async function benchSoak(args: string[]): Promise<void> {
  const f = parseFlags('soak', args, {
    minutes: { default: 10, help: 'minutes of load' },
    rate: { default: 2000, help: 'mixed workload commands per second' },
    'sample-sec': { default: 10, help: 'seconds between samples (lag over the interval, RSS at its end)' },
    'warmup-sec': { default: 60, help: 'samples of the first seconds left out of the trend (all but the first when the run is shorter than twice this)' },
    keys: { default: 1000, help: 'keys per type per db (8 types, dbs 0, 1, 7), written before the capture starts' },
    partitions: { default: 4, help: 'partitions per db topic' },
    'probe-rate': { default: 100, help: 'lag probes per second (timestamped SETs on every stream)' },
    seed: { default: 12, help: 'seed of the workload PRNG' },
    'drain-sec': { default: 120, help: 'longest wait, after the load, for every probe to arrive' },
    'verify-sec': { default: 180, help: 'longest wait for source = destination at the end' },
    'keep-topics': { default: false, help: 'keep the Kafka topics of the run' },
  });
  if (f.minutes <= 0 || f.rate <= 0 || f['sample-sec'] <= 0 || f['probe-rate'] <= 0) throw new Error('--minutes, --rate, --sample-sec and --probe-rate must be > 0');
  const loadBefore = load1();
  const names = pipelineNames();
  const group = uniqueName('g');
  let src: RedisServer | null = null;
  let dest: RedisServer | null = null;
  let gen: Generator | null = null;
  let probe: LagProbe | null = null;
  let poller: NodeJS.Timeout | null = null;
  const services: Svc[] = [];
  const rss = new ProcRssSampler(500);
  let topicsCreated = false;
  const killOnExit = () => {
    for (const s of services) if (s.proc && s.proc.child.exitCode === null && s.proc.child.signalCode === null) s.proc.child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  const cleanup = once(() => {
    if (poller) clearInterval(poller);
    rss.stop();
    return cleanupAll([
      gen ? () => gen!.close() : null,
      probe ? () => probe!.close() : null,
      () => Promise.all(services.map((s) => s.stop())).then(() => undefined),
      dest ? () => dest!.stop() : null,
      src ? () => src!.stop() : null,
      topicsCreated && !f['keep-topics'] ? () => deleteTopics(names.topicPrefix, [group]) : null,
    ]);
  });
  const offSignals = cleanupOnSignalUntilDone(cleanup);
  try {
    src = await startRedis({ 'repl-diskless-sync': 'yes', 'repl-diskless-sync-delay': 0, 'repl-backlog-size': '256mb' });
    dest = await startRedis();
    gen = await Generator.start(src.port, f.seed, f.keys);
    const filled = await gen.fill();
    progress(`source: ${filled.toLocaleString('en-US')} keys in dbs ${DBS.join(', ')}`);

    const common = ['--source-id', names.sourceId, '--topic-prefix', names.topicPrefix];
    const capture = new Svc('capture', ['capture', '--source', src.url, '--dbs', DBS.join(','), '--partitions', String(f.partitions), ...common], await freePort());
    const applier = new Svc('applier', ['apply', '--destination', dest.url, '--group', group, ...common], await freePort());
    services.push(capture, applier);
    const t0 = now();
    topicsCreated = true;
    capture.start();
    applier.start();
    rss.add('capture', capture.proc!.child.pid);
    rss.add('applier', applier.proc!.child.pid);
    const alive = () => {
      for (const s of services) s.assertAlive();
    };
    poller = setInterval(() => {
      for (const s of services) void s.poll();
    }, 1000);
    const srcUrl = src.url;
    const destUrl = dest.url;
    const deadline = Date.now() + 300_000;
    for (;;) {
      alive();
      if ((await verifyDatabases(srcUrl, destUrl, DBS, new Map())).equal) break;
      if (Date.now() > deadline) throw new Error('the full sync did not complete within 300 s');
      await sleep(500);
    }
    const fullSyncSec = (now() - t0) / 1000;
    progress(`full sync of ${filled.toLocaleString('en-US')} keys done in ${fullSyncSec.toFixed(1)} s`);

    probe = new LagProbe(src.port, [{ name: 'replistream', port: dest.port }], f['probe-rate'], f.partitions);
    await probe.start();
    await sleep(2000);
    const pr = probe;
    const g = gen;

    // ---- the load, sampled ---------------------------------------------------------------------
    const loadMs = f.minutes * 60_000;
    progress(`load: ${f.rate.toLocaleString('en-US')} mixed commands/s for ${f.minutes} min, a sample every ${f['sample-sec']} s`);
    const samples: Sample[] = [];
    const takeSample = async (l0: number): Promise<Sample> => {
      await applier.poll();
      rss.sample();
      const from = samples.length ? samples[samples.length - 1].tMin : 0;
      let hb: number | null = null;
      for (const [t, v] of applier.hbSamples) if ((t - l0) / 60_000 >= from && v !== null) hb = Math.max(hb ?? 0, v);
      return {
        tMin: (now() - l0) / 60_000, probes: pr.regularCount(), captureRss: rss.last.get('capture') ?? NaN, applierRss: rss.last.get('applier') ?? NaN,
        applied: applier.counters().applied, hbLagMax: hb, load1: load1(),
      };
    };
    await applier.poll();
    const base = { probes: pr.regularCount(), applied: applier.counters().applied };
    const l0 = now();
    let finished = false;
    const running = g.run(f.rate, loadMs, false);
    const ended = running.then(() => undefined, () => undefined).finally(() => (finished = true));
    let next = l0 + f['sample-sec'] * 1000;
    while (!finished) {
      await Promise.race([ended, sleep(Math.max(0, next - now()))]);
      if (finished) break;
      alive();
      const s = await takeSample(l0);
      samples.push(s);
      next += f['sample-sec'] * 1000;
      const prev = samples.length > 1 ? samples[samples.length - 2] : { probes: base.probes };
      const lag = pr.stats('replistream', pr.regularIndexes(prev.probes, s.probes), now());
      progress(`  ${s.tMin.toFixed(2)} min: lag p50 ${fmt(lag.p50)} p99 ${fmt(lag.p99)} ms (${lag.missing} probes not arrived yet), capture ${fmt(s.captureRss / MB, 0)} MB, applier ${fmt(s.applierRss / MB, 0)} MB, load ${s.load1}`);
    }
    const run = await running;
    const loadEnd = now();
    alive();
    if (loadEnd - l0 - (samples.length ? samples[samples.length - 1].tMin * 60_000 : 0) > 1000) samples.push(await takeSample(l0));

    // ---- catch-up, convergence -----------------------------------------------------------------
    const all = pr.allIndexes();
    progress(`load stopped: ${run.issued.toLocaleString('en-US')} commands in ${(run.ms / 1000).toFixed(1)} s; waiting for every probe (at most ${f['drain-sec']} s)`);
    const drainDeadline = now() + f['drain-sec'] * 1000;
    while (!pr.allArrived('replistream', all) && now() < drainDeadline) {
      alive();
      await sleep(100);
    }
    const caughtUp = pr.allArrived('replistream', all);
    const catchUpSec = caughtUp ? Math.max(0, pr.lastArrival('replistream', all) - loadEnd) / 1000 : null;
    pr.stopWriting();
    const lags: LagStats[] = samples.map((s, i) => pr.stats('replistream', pr.regularIndexes(i ? samples[i - 1].probes : base.probes, s.probes), now()));
    const hwm = { capture: safeHwm(capture), applier: safeHwm(applier) };
    progress(`verify: waiting for source = destination (at most ${f['verify-sec']} s)`);
    const v0 = now();
    const v = await waitConverged(srcUrl, destUrl, DBS, f['verify-sec'] * 1000);
    const verifySec = (now() - v0) / 1000;
    rss.stop();

    // ---- report --------------------------------------------------------------------------------
    const m = machine();
    const sampleSec = f['sample-sec'];
    const rows = samples.map((s, i) => {
      const prevT = i ? samples[i - 1].tMin : 0;
      const prevApplied = i ? samples[i - 1].applied : base.applied;
      const l = lags[i];
      const lb = (x: number) => (l.missing > 0 ? `≥${fmt(x)}` : x);
      return [
        fmt(s.tMin, 2), s.probes - (i ? samples[i - 1].probes : base.probes), lb(l.p50), lb(l.p99), lb(l.max), s.hbLagMax,
        (s.applied - prevApplied) / ((s.tMin - prevT) * 60), s.captureRss / MB, s.applierRss / MB, s.load1,
      ];
    });
    printGrid(
      `soak — ${f.rate.toLocaleString('en-US')} mixed commands/s for ${f.minutes} min, capture + 1 applier (processes), dbs ${DBS.join(', ')}, ${f.partitions} partitions, ${m.cpus} CPUs, load ${loadBefore} → ${m.loadavg1}`,
      ['t (min)', 'probes', 'lag p50 ms', 'lag p99 ms', 'lag max ms', 'hb lag max ms', 'applied/s', 'capture RSS MB', 'applier RSS MB', 'load1'],
      rows,
      [
        `lag: the probes sent in the interval (every ${sampleSec} s), probe SET on the source → keyspace notification at the destination;`,
        '  ≥: some had not arrived by the end (a lower bound). hb lag max: the applier\'s heartbeat lagMs (/status, read every second; up to 1 s more).',
        'applied/s: events the applier wrote per second over the interval. RSS: VmRSS of each process at the sample (from /proc).',
        `load: ${run.issued.toLocaleString('en-US')} commands sent (${fmt(run.issued / (run.ms / 1000), 0)}/s), ${run.errors} refused by the source (e.g. RENAME of a missing key), ${(100 * run.multiKey / Math.max(1, run.issued)).toFixed(1)} % multi-key, ${run.crossDb} cross-db.`,
        `full sync of the prefilled ${filled.toLocaleString('en-US')} keys: ${fullSyncSec.toFixed(1)} s. Peak RSS (VmHWM): capture ${fmt(hwm.capture / MB, 0)} MB, applier ${fmt(hwm.applier / MB, 0)} MB.`,
      ],
    );

    const warm = samples.filter((s) => s.tMin * 60 >= f['warmup-sec']);
    const useIdx = warm.length >= 3 ? samples.map((s, i) => (s.tMin * 60 >= f['warmup-sec'] ? i : -1)).filter((i) => i >= 0) : samples.map((_, i) => i).slice(1);
    const xs = useIdx.map((i) => samples[i].tMin);
    const trends: Trend[] = [
      trend('capture RSS', 'MB', xs, useIdx.map((i) => samples[i].captureRss / MB), 'rss'),
      trend('applier RSS', 'MB', xs, useIdx.map((i) => samples[i].applierRss / MB), 'rss'),
      trend('lag p50', 'ms', xs, useIdx.map((i) => lags[i].p50), 'lag'),
      trend('lag p99', 'ms', xs, useIdx.map((i) => lags[i].p99), 'lag'),
    ];
    const span = xs.length ? xs[xs.length - 1] - xs[0] : 0;
    const window = xs.length ? `${fmt(xs[0], 2)}–${fmt(xs[xs.length - 1], 2)} min${span < 5 ? ' (under 5 min: the verdicts are indicative only)' : ''}` : '—';
    printGrid(
      `soak trend — least-squares line over the samples ${window}${warm.length >= 3 ? ` (first ${f['warmup-sec']} s left out)` : ' (run shorter than twice the warm-up: all samples but the first)'}`,
      ['series', 'slope /min', 'slope /hour', 't', 'mean', 'first', 'last', 'samples', 'verdict'],
      trends.map((t) => [t.series, `${fmt(t.slope, 2)} ${t.unit}`, `${fmt(t.slope * 60, 1)} ${t.unit}`, fmt(t.t, 1), t.mean, t.first, t.last, t.n, t.verdict]),
      [
        'verdict: growing / falling when |t| ≥ 3 (t = slope / its standard error) and the slope is material: RSS ≥ 10 % of its mean and ≥ 5 MB per hour;',
        '  lag ≥ max(100 ms, its mean) per hour; flat otherwise.',
        `catch-up after the load stopped: ${catchUpSec === null ? `NOT within ${f['drain-sec']} s` : `${catchUpSec.toFixed(2)} s`} (every probe at the destination).`,
        `convergence (verify dbs ${DBS.join(', ')}): ${v.equal ? `destination EQUALS source (${v.compared.toLocaleString('en-US')} keys compared, ${verifySec.toFixed(1)} s)` : `!!! DESTINATION DIFFERS FROM SOURCE: ${v.differences.length} differences, e.g. ${JSON.stringify(v.differences.slice(0, 3))}`}.`,
      ],
    );
    printJson({
      bench: 'soak', machine: m, loadBefore, flags: f, fullSyncSec, sent: run.issued, sentPerSec: run.issued / (run.ms / 1000), errors: run.errors, catchUpSec,
      verify: { equal: v.equal, compared: v.compared, differences: v.differences.length, sec: verifySec }, hwm,
      samples: samples.map((s, i) => ({ ...s, lag: lags[i] })), trends,
    });
    if (!v.equal) throw new Error('soak: the destination differs from the source');
  } finally {
    offSignals();
    await cleanup();
    process.off('exit', killOnExit);
  }
}

function safeHwm(s: Svc): number {
  try {
    return s.proc?.child.pid ? procStats(s.proc.child.pid).hwm : NaN;
  } catch {
    return NaN;
  }
}

function trend(series: string, unit: string, xs: number[], ys: number[], kind: 'rss' | 'lag'): Trend {
  const ok = xs.map((x, i) => [x, ys[i]] as const).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const fit = linearFit(ok.map(([x]) => x), ok.map(([, y]) => y));
  const mean = ok.reduce((a, [, y]) => a + y, 0) / Math.max(1, ok.length);
  const perHour = fit.slope * 60;
  const material = kind === 'rss' ? Math.abs(perHour) >= Math.max(5, 0.1 * mean) : Math.abs(perHour) >= Math.max(100, mean);
  const verdict: Trend['verdict'] = ok.length < 3 ? 'too few samples' : Math.abs(fit.t) >= 3 && material ? (fit.slope > 0 ? 'growing' : 'falling') : 'flat';
  return { series, unit, slope: fit.slope, t: fit.t, mean, first: ok[0]?.[1] ?? NaN, last: ok[ok.length - 1]?.[1] ?? NaN, n: ok.length, verdict };
}
