/**
 * `npm run bench -- mixed [--rates 500,2000,…] [--step-sec S] [--appliers 1,3] [--backlog-sec N] …`
 *
 * A mixed workload of the kind real applications send, through the services as a user runs them
 * (`replistream capture` and N × `replistream apply` processes, one consumer group), against native
 * replication (a REPLICAOF replica of the same source) in the same run:
 *
 * - the workload (a child process, deterministic PRNG): about one command in five touches several
 *   keys (MSET across slots, DEL a b, RENAME, SMOVE, SUNIONSTORE, ZUNIONSTORE, BITOP, PFMERGE,
 *   MULTI/EXEC of 4 commands on 4 keys, EVAL writing 2 keys), one in ten is an INCR on 100 hot
 *   counters (not idempotent), the rest single-key writes (SET, SET EX, LPUSH, RPOP, LTRIM, HSET,
 *   HINCRBY, SADD, SREM, ZADD, ZINCRBY, PFADD, SETBIT), on dbs 0, 1 and 7; plus rare cross-db
 *   commands: MOVE key 7 (every max(500, rate/2) commands), SWAPDB 0 1 (every max(2500, 5×rate)
 *   commands) and FLUSHDB on db 7 (once per rate step, at its middle).
 * - lag: a probe (this process) SETs `probe:{tag}:<i>` on the source, `--probe-rate` per second,
 *   cycling over every (db, partition) stream, and subscribes to keyspace notifications of the
 *   destination and of the native replica: lag = notification received − SET sent, per probe.
 *   The applier's heartbeat-based `lagMs` (/status) is shown beside it as a cross-check (max of
 *   the samples taken every second).
 * - rate steps (`--rates`, `--step-sec` each), stopping at the first step the applier cannot keep
 *   up with: probe lag p99 over 1 s, lag growing (last quarter's p50 over max(250 ms, 2 × the first
 *   quarter's)), or not caught up (every probe of the step and a final probe on every stream at the
 *   destination) within `--catchup-sec` after the step; also when the sender cannot reach 90 % of
 *   the rate (then the machine, not the applier, is the limit).
 * - re-read/applied: from each applier's /status, as deltas over the step: re-read =
 *   (applier.rereadRecords ?? 0) + writer.duplicates, applied = writer.applied.
 * - backlog: at `--backlog-rate`, the capture is stopped (SIGTERM) for `--backlog-sec` seconds and
 *   started again; then the same with every applier of the group. Build-up = the time stopped;
 *   drain = restart → the first probe from which on every probe of the next second arrives with
 *   lag < 250 ms. The native replica is stopped the same time by DEBUG SLEEP.
 * - convergence: at the end of each pipeline, `verifyDatabases` source vs destination (and vs the
 *   native replica) on dbs 0, 1 and 7 until equal or `--verify-sec`.
 *
 * Everything runs for each `--appliers` count on fresh private Redis servers, a fresh topic prefix
 * and group. Every process started here is stopped at the end, on an error and on Ctrl-C.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { partitionOfKey } from '../../services/capture/routing.js';
import { verifyDatabases, type VerifyResult } from '../../services/destination/verify.js';
import { createKafka } from '../../services/transport/kafka.js';
import { pipelineNames, redisClient, testLogger, waitConverged } from '../helpers/pipeline.js';
import { startService, type ServiceProcess } from '../helpers/processes.js';
import { prng } from '../helpers/prng.js';
import { RawRedis, type RawArg } from './raw-redis.js';
import { freePort, startRedis, type RedisServer } from '../helpers/redis-server.js';
import { stack, uniqueName } from '../helpers/stack-env.js';
import {
  cleanupAll, cleanupOnSignal, deleteTopics, fmt, load1, machine, masterOffset, now, once, parseFlags, percentile, printGrid, printJson, progress, ratio, sleep, startNativeReplica,
} from './common.js';

export const DBS = [0, 1, 7];
const GEN_ENV = 'REPLISTREAM_BENCH_MIXED_GEN';
const LAG_OK_MS = 250;
const P99_LIMIT_MS = 1000;

export async function benchMixed(args: string[]): Promise<void> {
  const f = parseFlags('mixed', args, {
    rates: { default: '500,2000,5000,10000,20000,40000', help: 'workload commands per second of the steps, increasing' },
    'step-sec': { default: 20, help: 'seconds per rate step' },
    appliers: { default: '1,3', help: 'applier processes in the group, one pipeline per count' },
    'catchup-sec': { default: 10, help: 'a step fails when the destination has not caught up this long after it' },
    'backlog-rate': { default: 400, help: 'workload commands per second of the backlog test' },
    'backlog-sec': { default: 60, help: 'seconds the capture (then the appliers) stay stopped; 0 skips the backlog test' },
    'drain-sec': { default: 0, help: 'longest wait for a drain (after the steps, after each restart); 0: max(60, 5 × backlog-sec)' },
    'verify-sec': { default: 180, help: 'longest wait for source = destination at the end of a pipeline' },
    'probe-rate': { default: 100, help: 'lag probes per second (timestamped SETs on every stream)' },
    keys: { default: 1000, help: 'keys per type per db (8 types, dbs 0, 1, 7), written before the capture starts' },
    partitions: { default: 4, help: 'partitions per db topic (≥ the largest --appliers)' },
    seed: { default: 12, help: 'seed of the workload PRNG' },
    'keep-topics': { default: false, help: 'keep the Kafka topics of the run' },
    'lag-csv': { default: '', help: 'append every probe of every step to this CSV file (appliers, rate, target, stream, sent ms after the step start, lag ms)' },
  });
  const rates = list(f.rates, '--rates');
  const applierCounts = list(f.appliers, '--appliers');
  if (!rates.length || !applierCounts.length) throw new Error('--rates and --appliers need at least one value');
  if (Math.max(...applierCounts) > f.partitions) throw new Error(`--partitions ${f.partitions} is less than ${Math.max(...applierCounts)} appliers`);
  if (f['probe-rate'] <= 0) throw new Error('--probe-rate must be > 0');
  const drainCapMs = (f['drain-sec'] || Math.max(60, 5 * f['backlog-sec'])) * 1000;
  const m0 = machine();
  const results: PipelineResult[] = [];
  const failures: string[] = [];

  for (const n of applierCounts) {
    const r = await runPipeline(n, {
      rates, stepSec: f['step-sec'], catchupMs: f['catchup-sec'] * 1000, backlogRate: f['backlog-rate'], backlogSec: f['backlog-sec'], drainCapMs,
      verifyMs: f['verify-sec'] * 1000, probeRate: f['probe-rate'], keys: f.keys, partitions: f.partitions, seed: f.seed, keepTopics: f['keep-topics'], lagCsv: f['lag-csv'],
    });
    results.push(r);
    report(r, f.partitions);
    if (r.error) failures.push(`${n} applier(s): ${r.error}`);
    if (r.verify && !r.verify.equal) failures.push(`${n} applier(s): DESTINATION DIFFERS FROM SOURCE (${r.verify.differenceCount > 1000 ? 'over 1,000' : r.verify.differenceCount} differences)`);
  }

  printJson({ bench: 'mixed', machine: m0, loadAfter: load1(), flags: f, results });
  if (failures.length) {
    const bar = '!'.repeat(100);
    process.stdout.write(`\n${bar}\n${failures.map((x) => `!!! ${x}`).join('\n')}\n${bar}\n`);
    throw new Error(`mixed bench: ${failures.join('; ')}`);
  }
}

function list(s: string, flag: string): number[] {
  const out = s.split(',').filter(Boolean).map((x) => Number(x.replace(/_/g, '')));
  if (out.some((x) => !Number.isFinite(x) || x <= 0)) throw new Error(`${flag}: ${s} is not a list of positive numbers`);
  return out;
}

// ----- one pipeline: source, capture, N appliers, destination, native replica ------------------

interface PipelineOptions {
  rates: number[];
  stepSec: number;
  catchupMs: number;
  backlogRate: number;
  backlogSec: number;
  drainCapMs: number;
  verifyMs: number;
  probeRate: number;
  keys: number;
  partitions: number;
  seed: number;
  keepTopics: boolean;
  /** Where every probe of every step is appended ('' : nowhere). */
  lagCsv: string;
}

export interface LagStats {
  p50: number;
  p99: number;
  max: number;
  /** Probes not arrived by the deadline (their lag counts as deadline − sent, a lower bound). */
  missing: number;
  firstQuarterP50: number;
  lastQuarterP50: number;
}

interface StepResult {
  rate: number;
  sentOpsPerSec: number;
  ackedOps: number;
  errors: number;
  multiKeyShare: number;
  crossDb: number;
  lag: LagStats;
  native: LagStats;
  caughtUpSec: number | null;
  nativeCaughtUpSec: number | null;
  hbLagMaxMs: number | null;
  counters: CounterDelta;
  load1: number;
  /** CPU seconds the services used during the step (user + system, from /proc). */
  cpuSec: { capture: number; appliers: number; commands: number };
  verdict: string;
  ok: boolean;
}

interface BacklogResult {
  variant: 'capture' | 'appliers';
  /** Lag p99 was over 1 s already before the stop: the pipeline does not keep up with the load. */
  behindBefore: boolean;
  buildUpSec: number;
  /** restart → every write made before the restart is at the destination. */
  backlogAppliedSec: number | null;
  /** restart → lag back under 250 ms (sustained for 1 s of probes). */
  drainSec: number | null;
  nativeDrainSec: number | null;
  /**
   * The restart's timeline from the restarted processes' logs, seconds after the restart (the
   * slowest process of each): process up (its first log line), consumer group's final assignment
   * (appliers: the last "consumer group joined"), working (capture: stream resumed; applier: first
   * write). Null when a process never logged it.
   */
  restart: { upSec: number | null; joinedSec: number | null; workingSec: number | null };
  /**
   * CPU seconds (user + system) the restarted processes used from their start until the backlog
   * was applied (sampled when it was seen applied, every 200 ms), all of them together.
   */
  restartCpuSec: number | null;
  sentOpsPerSec: number;
  lagBefore: LagStats;
  counters: CounterDelta;
  load1: number;
}

interface PipelineResult {
  appliers: number;
  loadBefore: number;
  fullSyncSec: number | null;
  steps: StepResult[];
  drainAfterStepsSec: number | null;
  backlog: BacklogResult[];
  verify: { equal: boolean; compared: number; differenceCount: number; differences: VerifyResult['differences']; sec: number } | null;
  /** When the destination differs: what the bench could tell about why (still applying, stuck, dbs swapped …). */
  diagnosis: string[];
  nativeEqual: boolean | null;
  rereadField: boolean;
  error: string | null;
}

async function runPipeline(appliers: number, o: PipelineOptions): Promise<PipelineResult> {
  const res: PipelineResult = {
    appliers, loadBefore: load1(), fullSyncSec: null, steps: [], drainAfterStepsSec: null, backlog: [], verify: null, diagnosis: [], nativeEqual: null, rereadField: false, error: null,
  };
  const names = pipelineNames();
  const group = uniqueName('g');
  let src: RedisServer | null = null;
  let dest: RedisServer | null = null;
  let native: Awaited<ReturnType<typeof startNativeReplica>> | null = null;
  let gen: Generator | null = null;
  let probe: LagProbe | null = null;
  let sleeper: Redis | null = null;
  const services: Svc[] = [];
  let poller: NodeJS.Timeout | null = null;
  let topicsCreated = false;
  const cleanup = once(() => {
    if (poller) clearInterval(poller);
    return cleanupAll([
      gen ? () => gen!.close() : null,
      probe ? () => probe!.close() : null,
      sleeper ? () => sleeper!.disconnect() : null,
      () => Promise.all(services.map((s) => s.stop())).then(() => undefined),
      native ? () => native!.stop() : null,
      dest ? () => dest!.stop() : null,
      src ? () => src!.stop() : null,
      topicsCreated && !o.keepTopics ? () => deleteTopics(names.topicPrefix, [group]) : null,
    ]);
  });
  const offSignals = cleanupOnSignal(cleanup);
  try {
    progress(`${appliers} applier(s): starting source, destination, native replica`);
    const replTimeout = String(Math.max(60, 2 * o.backlogSec + 60));
    src = await startRedis({ 'repl-diskless-sync': 'yes', 'repl-diskless-sync-delay': 0, 'repl-backlog-size': '256mb', 'repl-timeout': replTimeout });
    dest = await startRedis();
    gen = await Generator.start(src.port, o.seed, o.keys);
    const filled = await gen.fill();
    progress(`source: ${filled.toLocaleString('en-US')} keys in dbs ${DBS.join(', ')}`);

    native = await startNativeReplica();
    await native.client.config('SET', 'repl-timeout', replTimeout);
    await native.replicate(src.port);

    // ---- the services, as processes ------------------------------------------------------------
    const common = ['--source-id', names.sourceId, '--topic-prefix', names.topicPrefix];
    const capture = new Svc('capture', ['capture', '--source', src.url, '--dbs', DBS.join(','), '--partitions', String(o.partitions), ...common], await freePort());
    services.push(capture);
    const appl: Svc[] = [];
    for (let i = 0; i < appliers; i++) {
      const a = new Svc(`applier-${i + 1}`, ['apply', '--destination', dest.url, '--group', group, ...common], await freePort());
      appl.push(a);
      services.push(a);
    }
    const t0 = now();
    topicsCreated = true;
    capture.start();
    for (const a of appl) a.start();
    const alive = () => {
      for (const s of services) s.assertAlive();
    };
    poller = setInterval(() => {
      for (const s of services) void s.poll();
    }, 1000);

    const destUrl = dest.url;
    const srcUrl = src.url;
    await waitUntil(async () => {
      alive();
      return (await verifyDatabases(srcUrl, destUrl, DBS, new Map())).equal;
    }, 'the full sync (destination equal to the source)', 180_000, 500);
    res.fullSyncSec = (now() - t0) / 1000;
    await waitGroupMembers(group, appliers, 60_000, alive);
    const nat = native;
    const srcAdmin = redisClient(src.url);
    await waitUntil(async () => (await nat.offset()) >= (await masterOffset(srcAdmin)), 'the native replica', 60_000, 100).catch(() => undefined);
    srcAdmin.disconnect();
    progress(`full sync done in ${res.fullSyncSec.toFixed(1)} s; ${appliers} applier(s) in group ${group}`);

    probe = new LagProbe(src.port, [{ name: 'replistream', port: dest.port }, { name: 'native', port: native.server.port }], o.probeRate, o.partitions);
    await probe.start();
    await sleep(2000);
    const pr = probe;
    const g = gen;

    const counters = async () => {
      await Promise.all(appl.map((a) => a.poll()));
      res.rereadField ||= appl.some((a) => a.hasRereadField);
      return sumCounters(appl.map((a) => a.counters()));
    };
    const hbMax = (from: number) => {
      let mx: number | null = null;
      for (const a of appl) for (const [t, v] of a.hbSamples) if (t >= from && v !== null) mx = Math.max(mx ?? 0, v);
      return mx;
    };

    // ---- rate steps ----------------------------------------------------------------------------
    for (const rate of o.rates) {
      alive();
      progress(`${appliers} applier(s): ${rate.toLocaleString('en-US')} ops/s for ${o.stepSec} s`);
      const c0 = await counters();
      const cpu0 = { capture: capture.cpuSec(), appliers: appl.reduce((n, a) => n + a.cpuSec(), 0) };
      const s0 = now();
      const firstProbe = pr.regularCount();
      const run = await g.run(rate, o.stepSec * 1000, true);
      const s1 = now();
      const lastProbe = pr.regularCount();
      const window = pr.regularIndexes(firstProbe, lastProbe);
      const burst = pr.burst();
      const idx = [...window, ...burst];
      const deadline = s1 + o.catchupMs;
      await waitCapped(() => (alive(), pr.allArrived('replistream', idx)), o.catchupMs, 50);
      const caught = pr.allArrived('replistream', idx);
      const natCaught = pr.allArrived('native', idx);
      const c1 = await counters();
      // (the catch-up after the step is the step's work too)
      const cpuSec = { capture: capture.cpuSec() - cpu0.capture, appliers: appl.reduce((n, a) => n + a.cpuSec(), 0) - cpu0.appliers, commands: run.issued };
      const lag = pr.stats('replistream', window, Math.min(now(), deadline));
      const nlag = pr.stats('native', window, Math.min(now(), deadline));
      if (o.lagCsv) for (const t of ['replistream', 'native']) appendFileSync(o.lagCsv, pr.csv(t, window, `${appliers},${rate}`));
      const sentOpsPerSec = run.issued / (run.ms / 1000);
      const growing = lag.lastQuarterP50 > Math.max(LAG_OK_MS, 2 * lag.firstQuarterP50);
      const reasons: string[] = [];
      if (lag.p99 > P99_LIMIT_MS) reasons.push('lag p99 > 1 s');
      if (growing) reasons.push('lag growing');
      if (!caught) reasons.push(`not caught up in ${o.catchupMs / 1000} s`);
      const senderLimited = run.issued < 0.9 * rate * o.stepSec;
      const step: StepResult = {
        rate, sentOpsPerSec, ackedOps: run.acked, errors: run.errors, multiKeyShare: run.multiKey / Math.max(1, run.issued), crossDb: run.crossDb,
        lag, native: nlag,
        caughtUpSec: caught ? (pr.lastArrival('replistream', idx) - s1) / 1000 : null,
        nativeCaughtUpSec: natCaught ? (pr.lastArrival('native', idx) - s1) / 1000 : null,
        hbLagMaxMs: hbMax(s0), counters: delta(c0, c1), load1: load1(), cpuSec,
        verdict: reasons.length ? `FAIL: ${reasons.join(', ')}` : senderLimited ? 'sender below 90 % of the rate' : 'ok',
        ok: reasons.length === 0 && !senderLimited,
      };
      res.steps.push(step);
      progress(`  sent ${Math.round(sentOpsPerSec)} ops/s, lag p50 ${lag.p50.toFixed(0)} p99 ${lag.p99.toFixed(0)} max ${lag.max.toFixed(0)} ms (native p99 ${nlag.p99.toFixed(1)}), ${step.verdict}`);
      if (!step.ok) break;
    }

    // ---- drain what the steps left -------------------------------------------------------------
    {
      const all = pr.allIndexes();
      const d0 = now();
      progress(`draining (at most ${Math.round(o.drainCapMs / 1000)} s)`);
      await waitCapped(() => (alive(), pr.allArrived('replistream', all)), o.drainCapMs, 100);
      res.drainAfterStepsSec = pr.allArrived('replistream', all) ? (now() - d0) / 1000 : null;
    }

    // ---- backlog: capture stopped, then the appliers ---------------------------------------------
    if (o.backlogSec > 0) {
      sleeper = native.client.duplicate();
      sleeper.on('error', () => undefined);
      const natSleeper = sleeper;
      for (const variant of ['capture', 'appliers'] as const) {
        alive();
        progress(`backlog (${variant}): ${o.backlogRate} ops/s, ${variant} stopped ${o.backlogSec} s`);
        const c0 = await counters();
        const running = g.run(o.backlogRate, 24 * 3600_000, false);
        running.catch(() => undefined); // awaited below; an interrupted run must not be an unhandled rejection
        const warm0 = pr.regularCount();
        const warmIdx = pr.firstSentAfter(now());
        await sleep(Math.min(10, o.backlogSec) * 1000);
        const lagBefore = pr.stats('replistream', pr.regularIndexes(warm0, pr.regularCount()), now());
        // A pipeline already behind the load before the stop cannot drain: still stop and restart
        // (the re-reads of a restart are measured), but do not wait the whole drain cap.
        const behind = lagBefore.p99 > P99_LIMIT_MS;
        const tStop = now();
        const stopped = variant === 'capture' ? [capture] : appl;
        void natSleeper.call('DEBUG', 'SLEEP', String(o.backlogSec)).catch(() => undefined);
        const nativeRestart = tStop + o.backlogSec * 1000;
        await Promise.all(stopped.map((s) => s.stopGracefully()));
        await sleep(Math.max(0, o.backlogSec * 1000 - (now() - tStop)));
        const tRestart = now();
        for (const s of stopped) s.start();
        const firstAfter = pr.firstSentAfter(tRestart);
        let drainedAt: number | null = null;
        let nativeDrainedAt: number | null = null;
        let appliedAt: number | null = null;
        let restartCpuSec: number | null = null;
        const before = pr.indexesSentBefore(tRestart).slice(warmIdx);
        await waitCapped(() => {
          alive();
          drainedAt ??= pr.drainedAt('replistream', firstAfter, 1000);
          nativeDrainedAt ??= pr.drainedAt('native', pr.firstSentAfter(nativeRestart), 1000);
          if (appliedAt === null && pr.allArrived('replistream', before)) {
            appliedAt = pr.lastArrival('replistream', before);
            restartCpuSec = stopped.reduce((n, s) => n + s.cpuSec(), 0);
          }
          return drainedAt !== null && appliedAt !== null && nativeDrainedAt !== null;
        }, behind ? o.backlogSec * 1000 : o.drainCapMs, 200);
        g.stop();
        const run = await running;
        const c1 = await counters();
        const slowest = (msg: string, which: 'first' | 'last') => {
          const times = stopped.map((p) => p.logTime(msg, which));
          return times.some((t) => t === null) ? null : (Math.max(...(times as number[])) - tRestart) / 1000;
        };
        const restart = {
          upSec: slowest('task state: prechecking', 'first'),
          joinedSec: variant === 'appliers' ? slowest('consumer group joined', 'last') : null,
          workingSec: slowest('task state: synchronizing', 'first'),
        };
        res.backlog.push({
          variant, behindBefore: behind, buildUpSec: (tRestart - tStop) / 1000,
          backlogAppliedSec: appliedAt === null ? null : (appliedAt - tRestart) / 1000,
          drainSec: drainedAt === null ? null : (drainedAt - tRestart) / 1000,
          nativeDrainSec: nativeDrainedAt === null ? null : Math.max(0, nativeDrainedAt - nativeRestart) / 1000,
          restart, restartCpuSec,
          sentOpsPerSec: run.issued / (run.ms / 1000), lagBefore, counters: delta(c0, c1), load1: load1(),
        });
        const b = res.backlog[res.backlog.length - 1];
        progress(`  build-up ${b.buildUpSec.toFixed(1)} s, drain ${b.drainSec === null ? 'not within the cap' : `${b.drainSec.toFixed(1)} s`}`);
      }
    }

    // ---- convergence ---------------------------------------------------------------------------
    g.stop();
    pr.stopWriting();
    progress(`verify: waiting for source = destination (at most ${Math.round(o.verifyMs / 1000)} s)`);
    const v0 = now();
    alive();
    const cv0 = await counters();
    const v = await waitConverged(srcUrl, destUrl, DBS, o.verifyMs);
    res.verify = { equal: v.equal, compared: v.compared, differenceCount: v.differences.length, differences: v.differences.slice(0, 20), sec: (now() - v0) / 1000 };
    res.nativeEqual = (await waitConverged(srcUrl, native.server.url, DBS, 30_000)).equal;
    if (!v.equal) {
      progress(`DESTINATION DIFFERS FROM SOURCE: ${JSON.stringify(v.differences.slice(0, 10))}`);
      // what can be told from outside: still applying or stuck, which dbs, dbs 0 and 1 swapped
      const cv1 = await counters();
      const moved = cv1.applied - cv0.applied;
      const all = pr.allIndexes();
      const missing = all.filter((i) => !pr.allArrived('replistream', [i])).length;
      res.diagnosis.push(`the appliers applied ${moved} events during the ${Math.round(res.verify.sec)} s of verify (${moved > 0 ? 'still applying: lagging, or looping' : 'nothing: stuck or done'})`);
      res.diagnosis.push(`${missing} of ${all.length} lag probes never arrived at the destination`);
      for (const a of appl) {
        const st = a.lastStatus ?? {};
        res.diagnosis.push(`${a.name} /status: state ${String(st.state)}, offsetLag ${String(st.offsetLag)}, lagMs ${String(st.lagMs)}, error ${String(st.error ?? null)}`);
      }
      const perDb: string[] = [];
      for (const db of DBS) perDb.push(`db ${db} ${(await verifyDatabases(srcUrl, destUrl, [db], new Map(), { maxDifferences: 0 })).equal ? 'equal' : 'differs'}`);
      res.diagnosis.push(perDb.join(', '));
      const swapped = await verifyDatabases(srcUrl, destUrl, [0, 1], new Map([[0, 1], [1, 0]]), { maxDifferences: 0 });
      if (swapped.equal) res.diagnosis.push('source db 0 = destination db 1 and source db 1 = destination db 0: one SWAPDB 0 1 too many or too few at the destination');
      for (const d of res.diagnosis) progress(`  ${d}`);
    }
  } catch (err) {
    res.error = err instanceof Error ? err.message : String(err);
    progress(`${appliers} applier(s): ${res.error}`);
    for (const s of services) if (s.exitedUnexpectedly()) progress(`${s.name} log tail:\n${s.logTail()}`);
  } finally {
    offSignals();
    await cleanup().catch((e: Error) => progress(`cleanup: ${e.message}`));
  }
  return res;
}

async function waitUntil(cond: () => Promise<boolean> | boolean, what: string, timeoutMs: number, everyMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what || 'a condition'}`);
    await sleep(everyMs);
  }
}

/** Like waitUntil, but a timeout is an answer (false), not an error; other errors propagate. */
async function waitCapped(cond: () => Promise<boolean> | boolean, timeoutMs: number, everyMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() > deadline) return false;
    await sleep(everyMs);
  }
}

/** Until the group has `n` members and is stable (so no rebalance falls into the first step). */
async function waitGroupMembers(group: string, n: number, timeoutMs: number, alive: () => void): Promise<void> {
  const admin = createKafka({ brokers: stack().kafka, clientId: 'replistream-bench', logger: testLogger }).admin();
  await admin.connect();
  try {
    await waitUntil(async () => {
      alive();
      const g = (await admin.describeGroups([group])).groups[0];
      return g?.state === 'Stable' && g.members.length === n;
    }, `${n} members in group ${group}`, timeoutMs, 500);
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

// ----- a service process and its /status -------------------------------------------------------

interface Counters {
  rereadRecords: number;
  /** Records a newly assigned partition dropped unread: before the destination's resume offset. */
  resumeSkippedRecords: number;
  duplicates: number;
  applied: number;
  events: number;
}
type CounterDelta = Counters & { reread: number };

const zero = (): Counters => ({ rereadRecords: 0, resumeSkippedRecords: 0, duplicates: 0, applied: 0, events: 0 });

function sumCounters(list: Counters[]): Counters {
  const out = zero();
  for (const c of list) for (const k of Object.keys(out) as Array<keyof Counters>) out[k] += c[k];
  return out;
}

function delta(a: Counters, b: Counters): CounterDelta {
  const d = zero();
  for (const k of Object.keys(d) as Array<keyof Counters>) d[k] = b[k] - a[k];
  return { ...d, reread: d.rereadRecords + d.duplicates };
}

function num(x: unknown): number | null {
  return typeof x === 'number' && Number.isFinite(x) ? x : null;
}

export class Svc {
  proc: ServiceProcess | null = null;
  /** Counters of earlier processes of this service (a restart starts the counters from 0). */
  private base = zero();
  private last = zero();
  private generation = 0;
  hasRereadField = false;
  /** The latest /status read. */
  lastStatus: Record<string, unknown> | null = null;
  /** (time, lagMs) of every /status read. */
  readonly hbSamples: Array<[number, number | null]> = [];
  private expectedExit = false;

  constructor(readonly name: string, readonly args: string[], readonly port: number) {}

  start(): void {
    this.generation++;
    this.expectedExit = false;
    this.proc = startService([...this.args, '--http-port', String(this.port)]);
  }

  async poll(): Promise<void> {
    const gen = this.generation;
    if (!this.proc || this.proc.child.exitCode !== null) return;
    const st = await fetch(`http://127.0.0.1:${this.port}/status`, { signal: AbortSignal.timeout(2000) })
      .then((r) => (r.ok ? (r.json() as Promise<Record<string, unknown>>) : null))
      .catch(() => null);
    if (!st || gen !== this.generation) return;
    this.lastStatus = st;
    this.hbSamples.push([now(), num(st.lagMs)]);
    if (this.hbSamples.length > 100_000) this.hbSamples.splice(0, 50_000);
    const ap = (st.applier ?? {}) as Record<string, unknown>;
    const wr = (st.writer ?? {}) as Record<string, unknown>;
    if ('rereadRecords' in ap) this.hasRereadField = true;
    this.last = { rereadRecords: num(ap.rereadRecords) ?? 0, resumeSkippedRecords: num(ap.resumeSkippedRecords) ?? 0, duplicates: num(wr.duplicates) ?? 0, applied: num(wr.applied) ?? 0, events: num(ap.events) ?? 0 };
  }

  counters(): Counters {
    return sumCounters([this.base, this.last]);
  }

  /** CPU seconds (user + system) the running process used so far; 0 when it is not running. */
  cpuSec(): number {
    const pid = this.proc?.child.pid;
    if (!pid || this.proc!.child.exitCode !== null) return 0;
    try {
      // /proc/<pid>/stat: fields 14 and 15 (utime, stime) in clock ticks (100 per second), after the ")" of the name
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
      return (Number(f[11]) + Number(f[12])) / 100;
    } catch {
      return 0;
    }
  }

  assertAlive(): void {
    if (this.exitedUnexpectedly()) throw new Error(`${this.name} exited (${this.proc!.child.exitCode ?? this.proc!.child.signalCode}):\n${this.logTail()}`);
  }

  exitedUnexpectedly(): boolean {
    return !this.expectedExit && !!this.proc && (this.proc.child.exitCode !== null || this.proc.child.signalCode !== null);
  }

  /** When the running process logged `msg` (its first or last such line), on this bench's clock (`now()`); null if never. */
  logTime(msg: string, which: 'first' | 'last'): number | null {
    let at: number | null = null;
    for (const line of (this.proc?.log() ?? '').split('\n')) {
      if (!line.includes(msg)) continue;
      try {
        const j = JSON.parse(line) as { time?: unknown; msg?: unknown };
        if (j.msg !== msg || typeof j.time !== 'number') continue;
        at = j.time - performance.timeOrigin; // log times are epoch ms; now() counts from timeOrigin
        if (which === 'first') break;
      } catch {
        // not a log line of the service's own (a stray write to stderr)
      }
    }
    return at;
  }

    logTail(): string {
    return (this.proc?.log() ?? '').split('\n').slice(-15).join('\n');
  }

  /** SIGTERM (as an orchestrator stops a service), SIGKILL after 20 s; counters kept for the next process. */
  async stopGracefully(): Promise<void> {
    if (!this.proc) return;
    await this.poll();
    this.expectedExit = true;
    this.generation++;
    const p = this.proc;
    const killer = setTimeout(() => void p.kill9(), 20_000);
    await p.term();
    clearTimeout(killer);
    this.base = this.counters();
    this.last = zero();
  }

  async stop(): Promise<void> {
    if (!this.proc) return;
    this.expectedExit = true;
    this.generation++;
    const p = this.proc;
    const killer = setTimeout(() => void p.kill9(), 10_000);
    await p.term();
    clearTimeout(killer);
  }
}

// ----- the lag probe (this process) ---------------------------------------------------------------

export class LagProbe {
  private readonly sent: number[] = [];
  /** `db/partition` of every probe sent. */
  private readonly streamOf: string[] = [];
  private readonly regular: number[] = [];
  private readonly recv = new Map<string, number[]>();
  private readonly writers = new Map<number, Redis>();
  private readonly subs: Redis[] = [];
  private readonly tags: string[] = [];
  private timer: NodeJS.Timeout | null = null;
  private issued = 0;

  constructor(private readonly sourcePort: number, private readonly targets: Array<{ name: string; port: number }>, private readonly rate: number, private readonly partitions: number) {
    // one hash tag per partition, so that the probes cycle over every (db, partition) stream
    for (let p = 0, n = 0; p < partitions; n++) {
      if (partitionOfKey(Buffer.from(`pt${n}`), partitions) === p) {
        this.tags.push(`pt${n}`);
        p++;
        n = -1;
      }
    }
  }

  private conn(port: number, db = 0): Redis {
    const c = new Redis({ host: '127.0.0.1', port, db, maxRetriesPerRequest: 2 });
    c.on('error', () => undefined);
    return c;
  }

  async start(): Promise<void> {
    for (const t of this.targets) {
      const admin = this.conn(t.port);
      await admin.config('SET', 'notify-keyspace-events', 'KA');
      admin.disconnect();
      const recv: number[] = [];
      this.recv.set(t.name, recv);
      const sub = this.conn(t.port);
      sub.on('pmessage', (_p: string, channel: string) => {
        const at = now();
        const i = Number(channel.slice(channel.lastIndexOf(':') + 1));
        if (Number.isInteger(i) && i >= 0 && i < this.sent.length && !(recv[i] > 0)) recv[i] = at;
      });
      await sub.psubscribe('__keyspace@*__:probe:*');
      this.subs.push(sub);
    }
    for (const db of DBS) {
      const w = this.conn(this.sourcePort, db);
      await w.ping();
      this.writers.set(db, w);
    }
    const t0 = now();
    this.timer = setInterval(() => {
      const due = Math.floor(((now() - t0) / 1000) * this.rate) + 1;
      while (this.issued < due) {
        const k = this.issued++;
        this.regular.push(this.send(DBS[k % DBS.length], Math.floor(k / DBS.length) % this.partitions));
      }
    }, 5);
  }

  private send(db: number, partition: number): number {
    const i = this.sent.length;
    this.sent.push(now());
    this.streamOf.push(`${db}/${partition}`);
    void this.writers.get(db)!.set(`probe:{${this.tags[partition]}}:${i}`, String(Date.now())).catch(() => undefined);
    return i;
  }

  /** One probe on every (db, partition) stream; returns their indexes. */
  burst(): number[] {
    const out: number[] = [];
    for (const db of DBS) for (let p = 0; p < this.partitions; p++) out.push(this.send(db, p));
    return out;
  }

  stopWriting(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  regularCount(): number {
    return this.regular.length;
  }

  regularIndexes(from: number, to: number): number[] {
    return this.regular.slice(from, to);
  }

  allIndexes(): number[] {
    return this.sent.map((_, i) => i);
  }

  indexesSentBefore(t: number): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.sent.length && this.sent[i] < t; i++) out.push(i);
    return out;
  }

  /** Index of the first probe sent at or after `t` (possibly not sent yet). */
  firstSentAfter(t: number): number {
    let i = this.sent.length;
    while (i > 0 && this.sent[i - 1] >= t) i--;
    return i;
  }

  allArrived(target: string, idx: number[]): boolean {
    const recv = this.recv.get(target)!;
    return idx.every((i) => recv[i] > 0);
  }

  lastArrival(target: string, idx: number[]): number {
    const recv = this.recv.get(target)!;
    let mx = 0;
    for (const i of idx) mx = Math.max(mx, recv[i] ?? 0);
    return mx;
  }

  /**
   * Arrival time of the first probe (index ≥ `from`) from which on every probe sent in the next
   * `holdMs` arrived with lag < 250 ms; null when there is none yet.
   */
  drainedAt(target: string, from: number, holdMs: number): number | null {
    const recv = this.recv.get(target)!;
    const n = this.sent.length;
    const good = (i: number) => recv[i] > 0 && recv[i] - this.sent[i] < LAG_OK_MS;
    for (let i = from; i < n; i++) {
      if (!good(i)) continue;
      let j = i + 1;
      while (j < n && this.sent[j] - this.sent[i] <= holdMs && good(j)) j++;
      if (j >= n) return null; // the hold window is not over yet
      if (this.sent[j] - this.sent[i] > holdMs) return recv[i]; // every probe of the window was good
      i = j; // probe j (inside the window) was late or is missing: try after it
    }
    return null;
  }

  /** CSV lines `<prefix>,target,db/partition,sent ms after the first of idx,lag ms (empty: not arrived)` of the probes `idx`. */
  csv(target: string, idx: number[], prefix: string): string {
    const recv = this.recv.get(target)!;
    const t0 = idx.length ? this.sent[idx[0]] : 0;
    return idx.map((i) => `${prefix},${target},${this.streamOf[i]},${(this.sent[i] - t0).toFixed(1)},${recv[i] > 0 ? (recv[i] - this.sent[i]).toFixed(1) : ''}\n`).join('');
  }

  /** Lag of the probes `idx`; one not arrived counts as `deadline − sent` (a lower bound). */
  stats(target: string, idx: number[], deadline: number): LagStats {
    const recv = this.recv.get(target)!;
    let missing = 0;
    const lags = idx.map((i) => {
      if (recv[i] > 0) return recv[i] - this.sent[i];
      missing++;
      return Math.max(0, deadline - this.sent[i]);
    });
    const sorted = (a: number[]) => Float64Array.from(a).sort();
    const all = sorted(lags);
    const q = Math.max(1, Math.floor(lags.length / 4));
    return {
      p50: percentile(all, 50), p99: percentile(all, 99), max: all.length ? all[all.length - 1] : NaN, missing,
      firstQuarterP50: percentile(sorted(lags.slice(0, q)), 50), lastQuarterP50: percentile(sorted(lags.slice(-q)), 50),
    };
  }

  close(): void {
    this.stopWriting();
    for (const s of this.subs) s.disconnect();
    for (const w of this.writers.values()) w.disconnect();
  }
}

// ----- the workload generator (a child process) ---------------------------------------------------

interface RunStats {
  issued: number;
  acked: number;
  errors: number;
  multiKey: number;
  crossDb: number;
  ms: number;
  errorsByCommand: Record<string, number>;
}

type GenMessage =
  | { type: 'ready' }
  | { type: 'filled'; keys: number }
  | { type: 'done'; stats: RunStats }
  | { type: 'error'; error: string };

/** The parent's handle of the generator child. */
export class Generator {
  private waiters: Array<(m: GenMessage) => void> = [];
  private constructor(private readonly child: ChildProcess) {
    child.on('message', (m: GenMessage) => {
      if (m.type === 'error') progress(`workload: ${m.error}`);
      const w = this.waiters.shift();
      w?.(m);
    });
  }

  static async start(port: number, seed: number, keys: number): Promise<Generator> {
    const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url)], {
      env: { ...process.env, [GEN_ENV]: JSON.stringify({ port, seed, keys }) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const g = new Generator(child);
    const m = await g.next();
    if (m.type !== 'ready') throw new Error('workload generator did not start');
    return g;
  }

  private next(): Promise<GenMessage> {
    return new Promise((resolve, reject) => {
      if (this.child.exitCode !== null) return reject(new Error(`workload generator exited (${this.child.exitCode})`));
      const onExit = (code: number | null) => reject(new Error(`workload generator exited (${code})`));
      this.child.once('exit', onExit);
      this.waiters.push((m) => {
        this.child.off('exit', onExit);
        if (m.type === 'error') reject(new Error(`workload generator: ${m.error}`));
        else resolve(m);
      });
    });
  }

  async fill(): Promise<number> {
    const p = this.next();
    this.child.send({ type: 'fill' });
    const m = await p;
    return m.type === 'filled' ? m.keys : 0;
  }

  /** Runs the workload at `rate` for `ms` (or until stop()); `flush`: one FLUSHDB on db 7 halfway. */
  async run(rate: number, ms: number, flush: boolean): Promise<RunStats> {
    const p = this.next();
    this.child.send({ type: 'run', rate, ms, flush });
    const m = await p;
    if (m.type !== 'done') throw new Error(`workload generator answered ${m.type}`);
    return m.stats;
  }

  stop(): void {
    if (this.child.connected) this.child.send({ type: 'stop' });
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGKILL');
    await exited;
  }
}

const VALUE_POOL = (() => {
  const r = prng(7);
  const abc = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
  let s = '';
  for (let i = 0; i < 4096; i++) s += abc[Math.floor(r() * abc.length)];
  return s;
})();

const EVAL_TWO_KEYS = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCR', KEYS[2])";
const COUNTERS = 100;

/** The workload: a deterministic sequence of commands (one PRNG), issued on one connection per db. */
/** One workload command (a MULTI/EXEC or a script counts as one), as the commands to write. */
interface Op {
  kind: 'single' | 'multi' | 'cross';
  name: string;
  db: number;
  commands: RawArg[][];
}

class Workload {
  private readonly rnd: () => number;
  /** For the prefill and the FLUSHDB. */
  private readonly conns = new Map<number, Redis>();
  /** For the rate steps: see raw-redis.ts for why not ioredis. */
  private readonly raw = new Map<number, RawRedis>();
  private opIndex = 0;

  constructor(port: number, seed: number, private readonly keys: number) {
    this.rnd = prng(seed);
    for (const db of DBS) {
      const c = new Redis({ host: '127.0.0.1', port, db, maxRetriesPerRequest: 2, enableAutoPipelining: true });
      c.on('error', () => undefined);
      this.conns.set(db, c);
      this.raw.set(db, new RawRedis(port, db));
    }
  }

  async connected(): Promise<void> {
    await Promise.all([...this.raw.values()].map((r) => r.ready));
  }

  send(op: Op, done: (failed: boolean) => void): void {
    this.raw.get(op.db)!.send(op.commands, done);
  }

  private int(n: number): number {
    return Math.floor(this.rnd() * n);
  }
  private key(type: string): string {
    return `${type}:${this.int(this.keys)}`;
  }
  /** Three distinct keys of one type (they fall in different slots, hence partitions, mostly). */
  private keys3(type: string): [string, string, string] {
    const a = this.int(this.keys);
    const b = (a + 1 + this.int(this.keys - 1)) % this.keys;
    let c = this.int(this.keys);
    while (c === a || c === b) c = (c + 1) % this.keys;
    return [`${type}:${a}`, `${type}:${b}`, `${type}:${c}`];
  }
  private val(): string {
    const len = 16 + this.int(48);
    const off = this.int(VALUE_POOL.length - len);
    return VALUE_POOL.slice(off, off + len);
  }
  private db(): number {
    const r = this.rnd();
    return r < 0.45 ? 0 : r < 0.8 ? 1 : 7;
  }

  async fill(): Promise<number> {
    let n = 0;
    for (const db of DBS) {
      const c = this.conns.get(db)!;
      for (let from = 0; from < this.keys; from += 500) {
        const p = c.pipeline();
        for (let i = from; i < Math.min(this.keys, from + 500); i++) {
          p.set(`str:${i}`, this.val());
          p.hset(`hash:${i}`, 'f0', this.val(), 'f1', this.val(), 'n0', '0');
          p.rpush(`list:${i}`, this.val(), this.val(), this.val());
          p.sadd(`set:${i}`, `m${this.int(50)}`, `m${this.int(50)}`, `m${this.int(50)}`);
          p.zadd(`zset:${i}`, this.int(100), `m${this.int(50)}`, this.int(100), `m${this.int(50)}`);
          p.pfadd(`hll:${i}`, `e${this.int(10_000)}`, `e${this.int(10_000)}`);
          p.setbit(`bits:${i}`, this.int(1024), 1);
          n += 7;
          if (i < COUNTERS) {
            p.set(`ctr:${i}`, '0');
            n++;
          }
        }
        await p.exec();
      }
    }
    return n;
  }

  /**
   * The next command (a MULTI/EXEC or a script counts as one). `rate` scales the rare cross-db
   * commands so that they stay rare in time too.
   */
  next(rate: number): Op {
    const i = this.opIndex++;
    const moveEvery = Math.max(500, Math.round(rate / 2));
    const swapEvery = Math.max(2500, Math.round(rate * 5));
    if (i % swapEvery === swapEvery - 1) return { kind: 'cross', name: 'swapdb', db: 0, commands: [['SWAPDB', 0, 1]] };
    if (i % moveEvery === Math.floor(moveEvery / 2)) {
      const from = this.int(2);
      const type = ['str', 'list', 'hash', 'set', 'zset', 'ctr'][this.int(6)];
      const k = type === 'ctr' ? `ctr:${this.int(COUNTERS)}` : this.key(type);
      return { kind: 'cross', name: 'move', db: from, commands: [['MOVE', k, 7]] };
    }
    const db = this.db();
    const ctr = () => `ctr:${this.int(COUNTERS)}`;
    let r = this.int(1000);
    // multi-key: 200 in 1000
    if ((r -= 40) < 0) {
      const [a, b, d] = this.keys3('str');
      return { kind: 'multi', name: 'mset', db, commands: [['MSET', a, this.val(), b, this.val(), d, this.val()]] };
    }
    if ((r -= 20) < 0) {
      const a = this.key('str');
      const b = this.key('hash');
      return { kind: 'multi', name: 'del', db, commands: [['DEL', a, b]] };
    }
    if ((r -= 20) < 0) {
      const [a, b] = this.keys3(['str', 'list', 'hash', 'set', 'zset'][this.int(5)]);
      return { kind: 'multi', name: 'rename', db, commands: [['RENAME', a, b]] };
    }
    if ((r -= 20) < 0) {
      const [a, b] = this.keys3('set');
      const m = `m${this.int(50)}`;
      return { kind: 'multi', name: 'smove', db, commands: [['SMOVE', a, b, m]] };
    }
    if ((r -= 15) < 0) {
      const [a, b, d] = this.keys3('set');
      return { kind: 'multi', name: 'sunionstore', db, commands: [['SUNIONSTORE', d, a, b]] };
    }
    if ((r -= 15) < 0) {
      const [a, b, d] = this.keys3('zset');
      return { kind: 'multi', name: 'zunionstore', db, commands: [['ZUNIONSTORE', d, 2, a, b]] };
    }
    if ((r -= 10) < 0) {
      const [a, b, d] = this.keys3('bits');
      return { kind: 'multi', name: 'bitop', db, commands: [['BITOP', 'OR', d, a, b]] };
    }
    if ((r -= 10) < 0) {
      const [a, b, d] = this.keys3('hll');
      return { kind: 'multi', name: 'pfmerge', db, commands: [['PFMERGE', d, a, b]] };
    }
    if ((r -= 30) < 0) {
      const s = this.key('str');
      const n = ctr();
      const l = this.key('list');
      const h = this.key('hash');
      const [v1, v2, v3] = [this.val(), this.val(), this.val()];
      const f = `f${this.int(20)}`;
      return { kind: 'multi', name: 'multi', db, commands: [['MULTI'], ['SET', s, v1], ['INCR', n], ['LPUSH', l, v2], ['HSET', h, f, v3], ['EXEC']] };
    }
    if ((r -= 20) < 0) {
      const s = this.key('str');
      const n = ctr();
      const v = this.val();
      return { kind: 'multi', name: 'eval', db, commands: [['EVAL', EVAL_TWO_KEYS, 2, s, n, v]] };
    }
    // the counter stream: 100 in 1000
    if ((r -= 100) < 0) {
      const n = ctr();
      return { kind: 'single', name: 'incr', db, commands: [['INCR', n]] };
    }
    // single-key: 700 in 1000
    const k = (type: string) => this.key(type);
    if ((r -= 180) < 0) {
      const [a, v] = [k('str'), this.val()];
      return { kind: 'single', name: 'set', db, commands: [['SET', a, v]] };
    }
    if ((r -= 20) < 0) {
      const [a, v] = [k('str'), this.val()];
      return { kind: 'single', name: 'set-ex', db, commands: [['SET', a, v, 'EX', 3600]] };
    }
    if ((r -= 100) < 0) {
      const [a, v] = [k('list'), this.val()];
      return { kind: 'single', name: 'lpush', db, commands: [['LPUSH', a, v]] };
    }
    if ((r -= 30) < 0) {
      const a = k('list');
      return { kind: 'single', name: 'rpop', db, commands: [['RPOP', a]] };
    }
    if ((r -= 20) < 0) {
      const a = k('list');
      return { kind: 'single', name: 'ltrim', db, commands: [['LTRIM', a, 0, 49]] };
    }
    if ((r -= 120) < 0) {
      const [a, fl, v] = [k('hash'), `f${this.int(20)}`, this.val()];
      return { kind: 'single', name: 'hset', db, commands: [['HSET', a, fl, v]] };
    }
    if ((r -= 30) < 0) {
      const [a, fl] = [k('hash'), `n${this.int(5)}`];
      return { kind: 'single', name: 'hincrby', db, commands: [['HINCRBY', a, fl, 1]] };
    }
    if ((r -= 80) < 0) {
      const [a, m] = [k('set'), `m${this.int(50)}`];
      return { kind: 'single', name: 'sadd', db, commands: [['SADD', a, m]] };
    }
    if ((r -= 20) < 0) {
      const [a, m] = [k('set'), `m${this.int(50)}`];
      return { kind: 'single', name: 'srem', db, commands: [['SREM', a, m]] };
    }
    if ((r -= 60) < 0) {
      const [a, s, m] = [k('zset'), this.int(1000) / 10, `m${this.int(50)}`];
      return { kind: 'single', name: 'zadd', db, commands: [['ZADD', a, s, m]] };
    }
    if ((r -= 20) < 0) {
      const [a, m] = [k('zset'), `m${this.int(50)}`];
      return { kind: 'single', name: 'zincrby', db, commands: [['ZINCRBY', a, 1, m]] };
    }
    if ((r -= 10) < 0) {
      const [a, e] = [k('hll'), `e${this.int(10_000)}`];
      return { kind: 'single', name: 'pfadd', db, commands: [['PFADD', a, e]] };
    }
    const [a, off] = [k('bits'), this.int(1024)];
    return { kind: 'single', name: 'setbit', db, commands: [['SETBIT', a, off, this.int(2)]] };
  }

  flushDb7(): Promise<unknown> {
    return this.conns.get(7)!.flushdb();
  }

  close(): void {
    for (const c of this.conns.values()) c.disconnect();
    for (const r of this.raw.values()) r.close();
  }
}

const MAX_IN_FLIGHT = 20_000;

async function genMain(cfg: { port: number; seed: number; keys: number }): Promise<void> {
  const w = new Workload(cfg.port, cfg.seed, cfg.keys);
  await w.connected();
  let stopRequested = false;
  let running: Promise<RunStats> | null = null;
  const send = (m: GenMessage) => process.send!(m);

  const run = async (rate: number, ms: number, flush: boolean): Promise<RunStats> => {
    const st: RunStats = { issued: 0, acked: 0, errors: 0, multiKey: 0, crossDb: 0, ms: 0, errorsByCommand: {} };
    let inFlight = 0;
    const total = Math.round((rate * ms) / 1000);
    let flushed = !flush;
    const t0 = performance.now();
    await new Promise<void>((resolve) => {
      const tick = () => {
        const elapsed = performance.now() - t0;
        const due = Math.min(total, Math.floor((elapsed / 1000) * rate) + 1);
        while (st.issued < due && inFlight < MAX_IN_FLIGHT) {
          if (!flushed && st.issued >= total / 2) {
            flushed = true;
            st.crossDb++;
            st.issued++;
            inFlight++;
            w.flushDb7().then(() => st.acked++, () => st.errors++).finally(() => inFlight--);
            continue;
          }
          const op = w.next(rate);
          st.issued++;
          if (op.kind === 'multi') st.multiKey++;
          else if (op.kind === 'cross') st.crossDb++;
          inFlight++;
          w.send(op, (failed) => {
            inFlight--;
            if (!failed) st.acked++;
            else {
              st.errors++;
              st.errorsByCommand[op.name] = (st.errorsByCommand[op.name] ?? 0) + 1;
            }
          });
        }
        if (st.issued >= total || elapsed >= ms || stopRequested) {
          st.ms = performance.now() - t0;
          resolve();
        } else setTimeout(tick, 1);
      };
      tick();
    });
    const deadline = performance.now() + 30_000;
    while (inFlight > 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    return st;
  };

  process.on('message', (m: { type: string; rate?: number; ms?: number; flush?: boolean }) => {
    if (m.type === 'stop') {
      stopRequested = true;
      return;
    }
    if (m.type === 'fill') {
      w.fill().then((keys) => send({ type: 'filled', keys }), (e: Error) => send({ type: 'error', error: e.message }));
      return;
    }
    if (m.type === 'run') {
      if (running) return send({ type: 'error', error: 'a run is already going' });
      stopRequested = false;
      running = run(m.rate!, m.ms!, !!m.flush);
      running.then(
        (stats) => {
          running = null;
          send({ type: 'done', stats });
        },
        (e: Error) => {
          running = null;
          send({ type: 'error', error: e.message });
        },
      );
    }
  });
  process.once('disconnect', () => {
    w.close();
    process.exit(0);
  });
  send({ type: 'ready' });
}

if (process.env[GEN_ENV] && process.argv[1] === fileURLToPath(import.meta.url) && process.send) {
  genMain(JSON.parse(process.env[GEN_ENV]!) as { port: number; seed: number; keys: number }).catch((e: Error) => {
    process.stderr.write(`workload generator: ${e.stack}\n`);
    process.exit(1);
  });
}

// ----- output ------------------------------------------------------------------------------------

/** CPU milliseconds per 1,000 commands sent during a step. */
function cpuPerK(sec: number, s: StepResult): string {
  return s.cpuSec.commands > 0 ? ((sec * 1000) / (s.cpuSec.commands / 1000)).toFixed(1) : '—';
}

function report(r: PipelineResult, partitions: number): void {
  const m = machine();
  const lagCell = (l: LagStats, v: number) => (l.missing > 0 ? `≥${Math.round(v).toLocaleString('en-US')}` : v);
  const rr = (c: CounterDelta) => ratio(c.reread, c.applied);
  const title = `mixed bench — ${r.appliers} applier process(es), 1 capture process, dbs ${DBS.join(', ')}, ${partitions} partitions, ${m.cpus} CPUs, load ${r.loadBefore} → ${m.loadavg1}`;
  const steps = r.steps.map((s) => [
    s.rate, s.sentOpsPerSec,
    lagCell(s.lag, s.lag.p50), lagCell(s.lag, s.lag.p99), lagCell(s.lag, s.lag.max),
    s.native.p50, s.native.p99,
    times(s.lag.p50, s.native.p50), times(s.lag.p99, s.native.p99),
    s.hbLagMaxMs, s.caughtUpSec ?? 'no',
    s.counters.reread, s.counters.applied, rr(s.counters) === null ? null : rr(s.counters)!.toFixed(3),
    cpuPerK(s.cpuSec.capture, s), cpuPerK(s.cpuSec.appliers, s), s.load1, s.verdict,
  ]);
  const stepNotes = [
    'lag: probe SETs (timestamped, on every db × partition stream) → keyspace notification at the destination / native replica, ms;',
    '  "hb max": the largest heartbeat-based lagMs of the appliers\' /status during the step (sampled every second; the heartbeat',
    '  is written once a second, so it reads up to 1 s more than the lag itself);',
    '  ≥: some probes had not arrived when the catch-up wait ended (their lag counts as that wait, a lower bound).',
    'caught up: step end → the destination has every probe of the step and one more on every stream (s).',
    'cpu ms/1k: CPU time (user + system) of capture and of all appliers during the step, per 1,000 workload commands sent.',
    `re-read = applier.rereadRecords + writer.duplicates${r.rereadField ? '' : ' (applier.rereadRecords absent from /status: duplicates only)'}, applied = writer.applied, deltas over the step.`,
    `full sync of the prefilled keys ${r.fullSyncSec === null ? '—' : `${r.fullSyncSec.toFixed(1)} s`}; drain after the steps: ${r.drainAfterStepsSec === null ? 'NOT within the cap' : `${r.drainAfterStepsSec.toFixed(1)} s`}.`,
  ];
  if (r.steps.length) {
    const mk = r.steps.reduce((a, s) => a + s.multiKeyShare, 0) / r.steps.length;
    const errors = r.steps.reduce((a, s) => a + s.errors, 0);
    stepNotes.push(`workload: ${(mk * 100).toFixed(1)} % multi-key commands, ${r.steps.reduce((a, s) => a + s.crossDb, 0)} cross-db (MOVE, SWAPDB 0 1, FLUSHDB on 7), ${errors} commands refused by the source (e.g. RENAME of a missing key).`);
  }
  printGrid(
    `${title}: rate steps`,
    ['ops/s target', 'sent', 'lag p50', 'p99', 'max', 'native p50', 'p99', 'p50 ×', 'p99 ×', 'hb max', 'caught up s', 're-read', 'applied', 're-read/applied', 'capture cpu ms/1k', 'appliers cpu ms/1k', 'load1', 'result'],
    steps,
    stepNotes,
  );
  if (r.backlog.length) {
    const rows = r.backlog.map((b) => [
      `${b.variant} stopped`, b.sentOpsPerSec, b.lagBefore.p99, b.buildUpSec, b.backlogAppliedSec ?? never(b), b.drainSec ?? never(b),
      b.drainSec === null ? null : (b.drainSec / b.buildUpSec).toFixed(3), b.nativeDrainSec, b.nativeDrainSec === null ? null : (b.nativeDrainSec / b.buildUpSec).toFixed(4),
      b.counters.reread, b.counters.applied, rr(b.counters) === null ? null : rr(b.counters)!.toFixed(3), b.counters.resumeSkippedRecords,
      b.restart.upSec, b.restart.joinedSec, b.restart.workingSec, b.restartCpuSec === null ? null : b.restartCpuSec.toFixed(2), b.load1,
    ]);
    printGrid(
      `${title}: backlog`,
      ['variant', 'ops/s', 'lag p99 before', 'build-up s', 'backlog applied s', 'drain s', 'drain/build-up', 'native drain s', 'native ratio', 're-read', 'applied', 're-read/applied', 'skipped on resume', 'up s', 'joined s', 'working s', 'cpu s', 'load1'],
      rows,
      [
        'build-up: the time the capture (SIGTERM, then started again) or every applier of the group was stopped; the native replica is stopped as long by DEBUG SLEEP.',
        `backlog applied: restart → every write sent before the restart is at the destination. drain: restart → lag back under ${LAG_OK_MS} ms (every probe of the next second).`,
        'Both include the service\'s start (node and module load, Kafka group join / PSYNC). "behind before": lag p99 was over 1 s before the stop',
        '(the pipeline does not keep up with this load at all), so the drain was not waited for beyond the build-up time.',
        'skipped on resume: records a newly assigned partition dropped without decoding them, because the destination\'s position says',
        '  they are applied (the group\'s commit was behind it; Kafka records, not events).',
        'up / joined / working: the restart\'s timeline from the restarted processes\' logs, s after the restart, the slowest process of each:',
        '  its first log line; the group\'s final assignment (the last "consumer group joined"; appliers only); stream resumed (capture) or first write (applier).',
        'cpu s: CPU time (user + system) of the restarted processes together, from their start until the backlog was applied.',
      ],
    );
  }
  const verdict = r.verify === null ? 'NOT CHECKED' : r.verify.equal ? `destination EQUALS source (${r.verify.compared.toLocaleString('en-US')} keys compared, ${r.verify.sec.toFixed(1)} s)` : `!!! DESTINATION DIFFERS FROM SOURCE: ${r.verify.differenceCount > 1000 ? 'over 1,000' : r.verify.differenceCount} differences, e.g. ${JSON.stringify(r.verify.differences.slice(0, 3))}`;
  process.stdout.write(`  convergence (verify dbs ${DBS.join(', ')}): ${verdict}; native replica ${r.nativeEqual === null ? 'not checked' : r.nativeEqual ? 'equal' : 'DIFFERENT'}\n`);
  for (const d of r.diagnosis) process.stdout.write(`  !!! ${d}\n`);
  if (r.error) process.stdout.write(`  !!! run stopped on an error: ${r.error.split('\n')[0]}\n`);
}

function never(b: BacklogResult): string {
  return b.behindBefore ? 'never (behind before)' : 'not within cap';
}

function times(a: number, b: number): string | null {
  const r = ratio(a, b);
  return r === null ? null : `${fmt(r, r >= 10 ? 0 : 1)}×`;
}
