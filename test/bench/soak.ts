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
 * With `--faults` the same run also suffers faults, one every `--fault-every-sec` from
 * `--first-fault-sec` on, alternating:
 * - a Kafka broker restart: `kill -9` of the broker, `--broker-down-sec` without it, then started
 *   again on the same data. The broker is a private one (test/helpers/kafka-broker.ts) that only
 *   this run uses: killing the shared stack's broker would break every other run on the machine;
 * - a destination outage: the applier reaches the destination through a fault proxy
 *   (test/helpers/fault-proxy.ts) that is cut for `--outage-sec` (connections reset, new ones
 *   refused), then restored.
 * A service that exits meanwhile (a Kafka outage past its retries ends it with exit 1) is started
 * again after a second, as an orchestrator would, and the exit is listed. Per fault it prints the
 * probe lag of the 30 s before, the highest lag from the fault's start to its recovery, and when
 * it recovered: the arrival of the first probe of `--recovered-hold-sec` of probes whose p99 is
 * back under max(1.5 × the p99 before, that p99 + 100 ms). The lag trend leaves out the samples
 * between a fault's start and its recovery (the RSS trend keeps them all); at the end, as without
 * faults, source = destination, and the INCR counters (`ctr:*`) compared one by one.
 *
 * Every process started here is stopped at the end, on an error and on Ctrl-C.
 */
import { verifyDatabases } from '../../services/destination/verify.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { startKafkaBroker, type KafkaBroker } from '../helpers/kafka-broker.js';
import { pipelineNames, redisClient, waitConverged } from '../helpers/pipeline.js';
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

type FaultKind = 'broker restart' | 'destination cut';

interface Fault {
  kind: FaultKind;
  /** performance.now() when the fault began, and when it was over (broker answering, proxy restored). */
  start: number;
  end: number;
}

interface FaultFigures {
  kind: FaultKind;
  /** Minutes since the load started. */
  atMin: number;
  /** How long the fault itself lasted (s). */
  faultSec: number;
  before: LagStats;
  threshold: number;
  /** Highest probe lag from the fault's start to the recovery (a probe never arrived counts up to the end). */
  maxLag: number;
  /** Seconds from the fault's start to the recovery (null: not recovered by the end of the run). */
  recoveredSec: number | null;
  /** Performance.now() of the recovery (null: none). */
  recoveredAt: number | null;
  exits: string[];
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
    faults: { default: false, help: 'inject faults during the load: Kafka broker restarts and destination outages, alternating (a private broker)' },
    'first-fault-sec': { default: 120, help: 'with --faults: seconds of load before the first fault' },
    'fault-every-sec': { default: 180, help: 'with --faults: seconds between the starts of two faults' },
    'broker-down-sec': { default: 5, help: 'with --faults: seconds between the broker\'s kill -9 and its restart (its start-up comes on top)' },
    'outage-sec': { default: 30, help: 'with --faults: seconds the destination is unreachable' },
    'recovered-hold-sec': { default: 10, help: 'with --faults: seconds of probes back at the pre-fault lag that count as recovered' },
  });
  if (f.minutes <= 0 || f.rate <= 0 || f['sample-sec'] <= 0 || f['probe-rate'] <= 0) throw new Error('--minutes, --rate, --sample-sec and --probe-rate must be > 0');
  if (f.faults && (f['fault-every-sec'] <= 0 || f['outage-sec'] <= 0 || f['recovered-hold-sec'] <= 0)) throw new Error('--fault-every-sec, --outage-sec and --recovered-hold-sec must be > 0');
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
  let broker: KafkaBroker | null = null;
  let destProxy: FaultProxy | null = null;
  const killOnExit = () => {
    for (const s of services) if (s.proc && s.proc.child.exitCode === null && s.proc.child.signalCode === null) s.proc.child.kill('SIGKILL');
    // (kill9 sends its signal synchronously: an exiting process still reaches the broker's JVM)
    void broker?.kill9();
  };
  process.once('exit', killOnExit);
  const cleanup = once(() => {
    if (poller) clearInterval(poller);
    rss.stop();
    return cleanupAll([
      gen ? () => gen!.close() : null,
      probe ? () => probe!.close() : null,
      () => Promise.all(services.map((s) => s.stop())).then(() => undefined),
      destProxy ? () => destProxy!.close() : null,
      dest ? () => dest!.stop() : null,
      src ? () => src!.stop() : null,
      // a private broker's topics go with its directory
      topicsCreated && !f['keep-topics'] && !broker ? () => deleteTopics(names.topicPrefix, [group]) : null,
      broker ? () => broker!.stop() : null,
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
    let destUrlForApplier = dest.url;
    if (f.faults) {
      progress('faults: starting a private Kafka broker (the shared one is never killed) and a proxy in front of the destination');
      broker = await startKafkaBroker();
      common.push('--kafka', broker.brokers);
      destProxy = await startFaultProxy(`127.0.0.1:${dest.port}`);
      destUrlForApplier = destProxy.url(dest.url);
    }
    const capture = new Svc('capture', ['capture', '--source', src.url, '--dbs', DBS.join(','), '--partitions', String(f.partitions), ...common], await freePort());
    const applier = new Svc('applier', ['apply', '--destination', destUrlForApplier, '--group', group, ...common], await freePort());
    services.push(capture, applier);
    const t0 = now();
    topicsCreated = true;
    capture.start();
    applier.start();
    rss.add('capture', capture.proc!.child.pid);
    rss.add('applier', applier.proc!.child.pid);
    // Without faults a service that exits is a failure of the run. With them, an exit is an
    // outcome to report (kafkajs gives up after about a minute of retries): it is started again,
    // as an orchestrator would, and listed.
    const exits: Array<{ at: number; text: string }> = [];
    const restarting = new Set<Svc>();
    const restart = async (s: Svc) => {
      restarting.add(s);
      try {
        const code = s.proc!.child.exitCode ?? s.proc!.child.signalCode;
        const last = s.logTail().split('\n').filter(Boolean).pop() ?? '';
        exits.push({ at: now(), text: `${s.name} exited (${code}): ${last.slice(0, 300)}` });
        progress(`  ${s.name} exited (${code}); starting it again in 1 s`);
        await s.stopGracefully(); // keeps its counters for the next process
        await sleep(1000);
        s.start();
        rss.add(s.name, s.proc!.child.pid);
      } finally {
        restarting.delete(s);
      }
    };
    const alive = () => {
      for (const s of services) {
        if (!f.faults) s.assertAlive();
        else if (!restarting.has(s) && s.exitedUnexpectedly()) void restart(s);
      }
    };
    poller = setInterval(() => {
      for (const s of services) void s.poll();
      if (f.faults) alive();
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
    const faults: Fault[] = [];
    const injecting = f.faults ? injectFaults(f, l0, loadMs, () => finished, broker!, destProxy!, faults) : Promise.resolve();
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
    await injecting;
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
    const figures = faults.map((ft, i) => faultFigures(pr, ft, faults[i + 1]?.start ?? Infinity, l0, f['probe-rate'] * f['recovered-hold-sec'], now(), exits));
    const lags: LagStats[] = samples.map((s, i) => pr.stats('replistream', pr.regularIndexes(i ? samples[i - 1].probes : base.probes, s.probes), now()));
    const hwm = { capture: safeHwm(capture), applier: safeHwm(applier) };
    progress(`verify: waiting for source = destination (at most ${f['verify-sec']} s)`);
    const v0 = now();
    const v = await waitConverged(srcUrl, destUrl, DBS, f['verify-sec'] * 1000);
    const verifySec = (now() - v0) / 1000;
    const counters = await compareCounters(srcUrl, destUrl);
    rss.stop();

    // ---- report --------------------------------------------------------------------------------
    const m = machine();
    const sampleSec = f['sample-sec'];
    /** The faults whose span (start → recovery) overlaps sample i's interval. */
    const faultsIn = (i: number): string => {
      const from = l0 + (i ? samples[i - 1].tMin : 0) * 60_000;
      const to = l0 + samples[i].tMin * 60_000;
      return figures.filter((x, k) => from < (x.recoveredAt ?? loadEnd) && to > faults[k].start).map((x) => (x.kind === 'broker restart' ? 'broker' : 'destination')).join(', ');
    };
    const rows = samples.map((s, i) => {
      const prevT = i ? samples[i - 1].tMin : 0;
      const prevApplied = i ? samples[i - 1].applied : base.applied;
      const l = lags[i];
      const lb = (x: number) => (l.missing > 0 ? `≥${fmt(x)}` : x);
      return [
        fmt(s.tMin, 2), s.probes - (i ? samples[i - 1].probes : base.probes), lb(l.p50), lb(l.p99), lb(l.max), s.hbLagMax,
        (s.applied - prevApplied) / ((s.tMin - prevT) * 60), s.captureRss / MB, s.applierRss / MB, s.load1,
        ...(f.faults ? [faultsIn(i) || '—'] : []),
      ];
    });
    printGrid(
      `soak — ${f.rate.toLocaleString('en-US')} mixed commands/s for ${f.minutes} min, capture + 1 applier (processes), dbs ${DBS.join(', ')}, ${f.partitions} partitions, ${m.cpus} CPUs, load ${loadBefore} → ${m.loadavg1}`,
      ['t (min)', 'probes', 'lag p50 ms', 'lag p99 ms', 'lag max ms', 'hb lag max ms', 'applied/s', 'capture RSS MB', 'applier RSS MB', 'load1', ...(f.faults ? ['fault (until recovered)'] : [])],
      rows,
      [
        `lag: the probes sent in the interval (every ${sampleSec} s), probe SET on the source → keyspace notification at the destination;`,
        '  ≥: some had not arrived by the end (a lower bound). hb lag max: the applier\'s heartbeat lagMs (/status, read every second; up to 1 s more).',
        'applied/s: events the applier wrote per second over the interval. RSS: VmRSS of each process at the sample (from /proc).',
        `load: ${run.issued.toLocaleString('en-US')} commands sent (${fmt(run.issued / (run.ms / 1000), 0)}/s), ${run.errors} refused by the source (e.g. RENAME of a missing key), ${(100 * run.multiKey / Math.max(1, run.issued)).toFixed(1)} % multi-key, ${run.crossDb} cross-db.`,
        `full sync of the prefilled ${filled.toLocaleString('en-US')} keys: ${fullSyncSec.toFixed(1)} s. Peak RSS (VmHWM): capture ${fmt(hwm.capture / MB, 0)} MB, applier ${fmt(hwm.applier / MB, 0)} MB.`,
      ],
    );

    if (f.faults) {
      printGrid(
        `soak faults — a fault every ${f['fault-every-sec']} s from ${f['first-fault-sec']} s on, alternating: Kafka broker kill -9, ${f['broker-down-sec']} s down, restart (private broker) / destination cut ${f['outage-sec']} s (proxy)`,
        ['at (min)', 'fault', 'lasted s', 'lag before p50 / p99 ms', 'back under ms', 'max lag during ms', 'recovered after s', 'service exits'],
        figures.map((x) => [
          fmt(x.atMin, 2), x.kind, fmt(x.faultSec, 1), `${fmt(x.before.p50)} / ${fmt(x.before.p99)}`, fmt(x.threshold, 0), fmt(x.maxLag, 0),
          x.recoveredSec === null ? 'not recovered' : fmt(x.recoveredSec, 1), x.exits.length ? x.exits.join('; ') : 'none',
        ]),
        [
          'lasted: from the kill -9 until the restarted broker answers (its JVM start included) / from the cut until the proxy is restored.',
          `lag before: probes sent in the 30 s before the fault. recovered after: from the fault's start to the arrival of the first probe of ${f['recovered-hold-sec']} s of probes`,
          '  whose p99 is back under the "back under" level, max(1.5 × p99 before, p99 before + 100 ms); max lag during: the highest probe lag from the start until then.',
          'service exits: a service that exited was started again after 1 s (as an orchestrator would); none means both rode the fault out.',
          `service exits in the whole run: ${exits.length}${exits.length ? ` (${exits.map((e) => `${fmt((e.at - l0) / 60_000, 2)} min`).join(', ')})` : ''}.`,
        ],
      );
    }

    const warm = samples.filter((s) => s.tMin * 60 >= f['warmup-sec']);
    const useIdx = warm.length >= 3 ? samples.map((s, i) => (s.tMin * 60 >= f['warmup-sec'] ? i : -1)).filter((i) => i >= 0) : samples.map((_, i) => i).slice(1);
    // a sample whose interval overlaps a fault or its recovery says nothing about creeping lag
    const lagIdx = useIdx.filter((i) => faultsIn(i) === '');
    const xs = useIdx.map((i) => samples[i].tMin);
    const lagXs = lagIdx.map((i) => samples[i].tMin);
    const trends: Trend[] = [
      trend('capture RSS', 'MB', xs, useIdx.map((i) => samples[i].captureRss / MB), 'rss'),
      trend('applier RSS', 'MB', xs, useIdx.map((i) => samples[i].applierRss / MB), 'rss'),
      trend('lag p50', 'ms', lagXs, lagIdx.map((i) => lags[i].p50), 'lag'),
      trend('lag p99', 'ms', lagXs, lagIdx.map((i) => lags[i].p99), 'lag'),
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
        ...(f.faults ? [`with --faults: the lag trend leaves out the ${useIdx.length - lagIdx.length} samples between a fault's start and its recovery (RSS keeps them).`] : []),
        `catch-up after the load stopped: ${catchUpSec === null ? `NOT within ${f['drain-sec']} s` : `${catchUpSec.toFixed(2)} s`} (every probe at the destination).`,
        `convergence (verify dbs ${DBS.join(', ')}): ${v.equal ? `destination EQUALS source (${v.compared.toLocaleString('en-US')} keys compared, ${verifySec.toFixed(1)} s)` : `!!! DESTINATION DIFFERS FROM SOURCE: ${v.differences.length} differences, e.g. ${JSON.stringify(v.differences.slice(0, 3))}`}.`,
        `INCR counters (ctr:* of dbs ${DBS.join(', ')}): ${counters.keys} keys, ${counters.sourceSum.toLocaleString('en-US')} increments at the source, ${counters.differ.length === 0 ? 'every one equal at the destination (no loss, no duplicate)' : `!!! ${counters.differ.length} differ, e.g. ${counters.differ.slice(0, 3).join(', ')}`}.`,
      ],
    );
    printJson({
      bench: 'soak', machine: m, loadBefore, flags: f, fullSyncSec, sent: run.issued, sentPerSec: run.issued / (run.ms / 1000), errors: run.errors, catchUpSec,
      verify: { equal: v.equal, compared: v.compared, differences: v.differences.length, sec: verifySec }, hwm, counters,
      faults: figures.map(({ recoveredAt: _r, ...x }) => x), exits: exits.map((e) => ({ atMin: (e.at - l0) / 60_000, text: e.text })),
      samples: samples.map((s, i) => ({ ...s, lag: lags[i] })), trends,
    });
    if (!v.equal) throw new Error('soak: the destination differs from the source');
    if (counters.differ.length > 0) throw new Error('soak: INCR counters differ between the source and the destination');
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

/**
 * The faults of `--faults`, alternating broker restart / destination cut, at their times after the
 * load's start `l0`; only those that start at least a minute before the load ends (a fault's
 * recovery is part of what is measured). Each is recorded once over.
 */
async function injectFaults(
  f: { 'first-fault-sec': number; 'fault-every-sec': number; 'broker-down-sec': number; 'outage-sec': number },
  l0: number,
  loadMs: number,
  finished: () => boolean,
  broker: KafkaBroker,
  proxy: FaultProxy,
  out: Fault[],
): Promise<void> {
  for (let k = 0; ; k++) {
    const at = l0 + (f['first-fault-sec'] + k * f['fault-every-sec']) * 1000;
    if (at - l0 > loadMs - 60_000) return;
    while (now() < at) {
      if (finished()) return;
      await sleep(Math.min(1000, at - now()));
    }
    const kind: FaultKind = k % 2 === 0 ? 'broker restart' : 'destination cut';
    const start = now();
    progress(`  fault ${k + 1}: ${kind}`);
    if (kind === 'broker restart') {
      await broker.kill9();
      await sleep(f['broker-down-sec'] * 1000);
      await broker.restart();
    } else {
      await proxy.cut();
      await sleep(f['outage-sec'] * 1000);
      await proxy.restore();
    }
    out.push({ kind, start, end: now() });
    progress(`  fault ${k + 1}: ${kind} over after ${((now() - start) / 1000).toFixed(1)} s`);
  }
}

/** Lag before, highest lag and recovery of one fault, from the probes (see the header). */
function faultFigures(pr: LagProbe, ft: Fault, nextStart: number, l0: number, holdCount: number, deadline: number, exits: Array<{ at: number; text: string }>): FaultFigures {
  const T = 'replistream';
  const range = (a: number, b: number) => Array.from({ length: Math.max(0, b - a) }, (_, i) => a + i);
  const before = pr.stats(T, range(pr.firstSentAfter(ft.start - 30_000), pr.firstSentAfter(ft.start)), deadline);
  const threshold = Math.max(1.5 * before.p99, before.p99 + 100);
  const n = pr.allIndexes().length;
  const from = pr.firstSentAfter(ft.start);
  // the recovery: the first window of `holdCount` probes sent after the fault was over, every one
  // arrived and their p99 back under the threshold (a step of a tenth of a window keeps this cheap)
  const step = Math.max(1, Math.floor(holdCount / 10));
  let j: number | null = null;
  for (let i = pr.firstSentAfter(ft.end); i + holdCount <= n; i += step) {
    const w = range(i, i + holdCount);
    if (pr.allArrived(T, w) && pr.stats(T, w, deadline).p99 <= threshold) {
      j = i;
      break;
    }
  }
  const recoveredAt = j === null ? null : pr.lastArrival(T, [j]);
  const during = pr.stats(T, range(from, j ?? n), deadline);
  const until = Math.min(recoveredAt ?? deadline, nextStart);
  return {
    kind: ft.kind,
    atMin: (ft.start - l0) / 60_000,
    faultSec: (ft.end - ft.start) / 1000,
    before,
    threshold,
    maxLag: during.max,
    recoveredSec: recoveredAt === null ? null : (recoveredAt - ft.start) / 1000,
    recoveredAt,
    exits: exits.filter((e) => e.at >= ft.start && e.at < until).map((e) => `${((e.at - ft.start) / 1000).toFixed(0)} s in: ${e.text}`),
  };
}

/** The INCR counters of the workload (`ctr:*`, every db), compared one by one. */
async function compareCounters(srcUrl: string, destUrl: string): Promise<{ keys: number; sourceSum: number; differ: string[] }> {
  let keys = 0;
  let sourceSum = 0;
  const differ: string[] = [];
  for (const db of DBS) {
    const s = redisClient(srcUrl, db);
    const d = redisClient(destUrl, db);
    try {
      const names: string[] = [];
      let cursor = '0';
      do {
        const [next, batch] = await s.scan(cursor, 'MATCH', 'ctr:*', 'COUNT', 1000);
        cursor = next;
        names.push(...batch);
      } while (cursor !== '0');
      for (const k of names) {
        const [a, b] = [await s.get(k), await d.get(k)];
        keys++;
        sourceSum += Number(a ?? 0);
        if (a !== b) differ.push(`db ${db} ${k}: source ${a}, destination ${b}`);
      }
    } finally {
      s.disconnect();
      d.disconnect();
    }
  }
  return { keys, sourceSum, differ };
}
