/**
 * `npm run bench -- e2e [--keys N] [--dataset mixed|populate|big] [--rate OPS] [--duration S] [--burst N] [--sample N] …`
 *
 * The whole pipeline, source → capture → Kafka → applier → destination, run the way a user runs it
 * (`replistream capture` and `replistream apply` processes), against native replication and — when
 * `REDISSHAKE_BIN` names a RedisShake binary — RedisShake, on the same source data in one run. The
 * contenders run one after another, each on its own fresh destination, so none competes with
 * another for the CPUs:
 *
 * 1. full sync: the dataset in db 1 of a private source (`--dataset mixed`, the default: N keys,
 *    96 % small strings and 1 % each of small hashes, lists, sets and sorted sets; `--dataset
 *    populate`: N small strings plus keys/1000 collections of each type with 50 elements and 10 of
 *    each with 1000; `--dataset big`: N strings of 5 MB and one list of 1,000,000 elements, for
 *    the memory bound). The time from the contender's start (REPLICAOF; the two service processes
 *    spawned; the redis-shake process spawned) until the destination's DBSIZE of db 1 equals the
 *    source's, then `verify --sample`.
 * 2. incremental: after a warm-up (`--warmup` s at the same rate, default 2, its lags printed on a
 *    row of their own: a pipeline that has only run a full sync is still compiling its command
 *    path, which costs its first second at 100,000 SET/s ~0.3 s of lag), a paced writer (`--rate`
 *    ops/s for `--duration` s) SETs `lag:<contender>:<i>` to
 *    its send time in db 2; the destination publishes keyspace notifications, and a subscriber
 *    records when every key arrives. Writer and subscriber run in a child process of their own.
 *    Every write is measured, unless `--probe-every N`: then every Nth write (and the last) is, and
 *    the others SET `fill:lag:<contender>:<i mod --fill-keys>` (10,000 keys by default, as
 *    `redis-benchmark -r 10000`), which the subscriber's pattern does not match. Catch-up: the last
 *    write sent → every write arrived. The writer builds each 1 ms batch as one string and counts
 *    the replies (raw-redis.ts `RawSetWriter`): the generator shares the machine with what it
 *    measures, and its CPU while writing is printed.
 * 3. burst (`--burst N`, default 500,000; 0 skips it): `redis-benchmark -t set -P 16 -n N -r N` on
 *    db 3 as fast as the source takes it; the source's ops/s, and the time from the burst's last
 *    reply until the destination's DBSIZE of db 3 equals the source's (catch-up).
 *    Dbs 2 (the incremental writes, and capture's heartbeat key: capture runs with `--dbs 2,1,3`)
 *    and 3 are flushed on the source after each contender, so every contender's full sync reads
 *    the same data.
 * RSS of every process of a contender (capture, applier, redis-shake, the destination redis) is
 * sampled from /proc/<pid>/status (VmRSS) every 250 ms: the peak during the full sync and overall;
 * VmHWM (the kernel's own peak) is read before the process stops, as a cross-check.
 *
 * Every process started here is stopped at the end, on an error and on Ctrl-C.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { verifyDatabases, type VerifyResult } from '../../services/destination/verify.js';
import { pipelineNames, redisClient, type PipelineNames } from '../helpers/pipeline.js';
import { startService, type ServiceProcess } from '../helpers/processes.js';
import { freePort, startRedis, type RedisServer } from '../helpers/redis-server.js';
import { uniqueName } from '../helpers/stack-env.js';
import { RawSetWriter } from './raw-redis.js';
import {
  MB, ProcRssSampler, cleanupAll, cleanupOnSignalUntilDone, deleteTopics, fillSource, fillSourceBig, fillSourceMixed, fmt, load1, machine, now, once, parseFlags, percentile, printGrid,
  printJson, procStats, progress, ratio, redisBenchmarkSet, serverPid, sleep, startNativeReplica, startSource, waitFor, type SourceFill,
} from './common.js';

/** The dataset's db. */
const DB = 1;
/** The incremental writes and capture's heartbeat key: flushed on the source between contenders. */
const PROBE_DB = 2;
/** The burst phase's keys (nothing else is written there): flushed on the source between contenders. */
const BURST_DB = 3;
const TIMEOUT_MS = 20 * 60_000;
const PROBE_ENV = 'REPLISTREAM_BENCH_E2E_PROBE';

type Name = 'native' | 'replistream' | 'redisshake';
const LABEL: Record<Name, string> = { native: 'native replica', replistream: 'replistream', redisshake: 'RedisShake' };

/** One way of synchronizing a fresh destination from the source. */
interface Contender {
  name: Name;
  dest: RedisServer;
  /** Starts the synchronization (the clock runs from just before). */
  start(): Promise<void>;
  /** Throws when a process of the contender died. */
  check(): void;
  /** The contender's own processes (name → pid): their RSS and CPU are its figures. */
  procs(): Record<string, number>;
  /** Pid of the destination redis-server when it is not one of procs(). */
  destPid: number | null;
  /** Extra figures, by row label (replistream: link start, capture done). */
  extra(): Record<string, number | null>;
  stop(): Promise<void>;
}

interface ProcFigures {
  /** VmRSS samples (every 250 ms): the peak until equal DBSIZE, and overall. */
  peakFull: number | null;
  peak: number | null;
  /** VmHWM (the kernel's peak RSS) at equal DBSIZE, and before the stop. */
  hwmFull: number | null;
  hwm: number | null;
  cpuFull: number;
  cpu: number;
}

interface Result {
  name: Name;
  fullSyncSec: number;
  extra: Record<string, number | null>;
  verify: VerifyResult & { ttlRetries: number };
  verifySec: number;
  probe: ProbeResult;
  lag: ProbeTarget;
  /** The warm-up's lags (null without one). */
  warmup: ProbeTarget | null;
  verifyAfter: VerifyResult & { ttlRetries: number };
  /** The burst phase: source ops/s while redis-benchmark ran, and the burst's end → destination has every key. */
  burst: { sourceOpsPerSec: number; catchUpSec: number; keys: number } | null;
  procs: Record<string, ProcFigures>;
  dest: ProcFigures | null;
  load1: number;
}

export async function benchE2e(args: string[]): Promise<void> {
  const f = parseFlags('e2e', args, {
    keys: { default: 1_000_000, help: 'keys of the dataset (mixed: all of them; populate: the small strings, plus keys/1000 collections of each type)' },
    dataset: { default: 'mixed', help: 'mixed (96 % small strings, 4 % small hashes/lists/sets/zsets), populate (the older shape: strings plus 50- and 1000-element collections) or big (--keys strings of 5 MB and one list of 1,000,000 elements: the memory bound)' },
    sample: { default: 10_000, help: 'keys compared by verify --sample (each direction)' },
    rate: { default: 5_000, help: 'writes per second of the incremental phase' },
    'fill-keys': { default: 10_000, help: 'the untimed writes (see --probe-every) cycle over this many keys, as `redis-benchmark -r N` does; 0: every one a new key (the source and destination then grow by --rate keys a second, which cost the two servers ~2 CPU-s more per 10 s at 100,000 SET/s)' },
    'probe-every': { default: 1, help: 'time every Nth write of the incremental phase (and the last); the others go to keys nobody listens to. Above ~20,000 writes/s one subscriber cannot take a notification per write (the destination drops a pub/sub client that falls 32 MB behind), so e.g. --rate 100000 --probe-every 100' },
    duration: { default: 20, help: 'seconds of the incremental phase' },
    warmup: { default: 2, help: 'seconds at --rate just before the incremental phase, timed and printed apart (a pipeline that ran only a full sync has not yet compiled its command path: its first second at 100,000 SET/s lags ~0.3 s); 0: none' },
    burst: { default: 500_000, help: 'SETs of the burst phase (redis-benchmark -P 16 on BURST_DB as fast as the source takes them); 0 skips it' },
    sync: { default: 'diskless', help: 'source full-sync transfer: diskless (Redis 7 default, delay 0) or disk' },
    partitions: { default: 4, help: 'partitions of the capture topic' },
    appliers: { default: 1, help: 'replistream applier processes in the group (they share the partitions out); their RSS on rows of their own, their CPU in the sums' },
    compression: { default: 'snappy', help: 'Kafka record compression of the capture: snappy (default of the service), gzip or none' },
    'write-mode': { default: 'restore', help: 'applier full-sync writes: restore or commands' },
    only: { default: '', help: 'comma-separated subset of native,replistream,redisshake (default: all; redisshake when REDISSHAKE_BIN is set)' },
    'keep-topics': { default: false, help: 'keep the Kafka topics of the run' },
    'lag-csv': { default: '', help: 'write every write\'s send time and lag to CSV files: this path with .<contender> before the extension' },
  });
  if (f.sync !== 'diskless' && f.sync !== 'disk') throw new Error('--sync is diskless or disk');
  if (f['write-mode'] !== 'restore' && f['write-mode'] !== 'commands') throw new Error('--write-mode is restore or commands');
  if (f.dataset !== 'mixed' && f.dataset !== 'populate' && f.dataset !== 'big') throw new Error('--dataset is mixed, populate or big');
  if (f.dataset === 'big' && f.keys > 200) throw new Error('--dataset big: --keys is the number of 5 MB strings (at most 200)');
  const sync = f.sync as 'diskless' | 'disk';
  if (!['snappy', 'gzip', 'none'].includes(f.compression)) throw new Error('--compression is snappy, gzip or none');
  const compression = f.compression as 'snappy' | 'gzip' | 'none';
  const shakeBin = process.env.REDISSHAKE_BIN || null;
  if (shakeBin && !existsSync(shakeBin)) throw new Error(`REDISSHAKE_BIN=${shakeBin}: no such file`);
  const wanted = f.only ? f.only.split(',').map((s) => s.trim()).filter(Boolean) : ['native', 'replistream', 'redisshake'];
  for (const w of wanted) if (!(w in LABEL)) throw new Error(`--only: ${w} is not native, replistream or redisshake`);
  if (f.only && wanted.includes('redisshake') && !shakeBin) throw new Error('--only redisshake needs REDISSHAKE_BIN');
  const order = (['native', 'replistream', 'redisshake'] as Name[]).filter((n) => wanted.includes(n) && (n !== 'redisshake' || shakeBin));
  const loadBefore = load1();

  let src: RedisServer | null = null;
  let srcProbe: Redis | null = null;
  let current: Contender | null = null;
  const rss = new ProcRssSampler(250);
  const results: Result[] = [];
  const cleanup = once(() => {
    rss.stop();
    return cleanupAll([
      current ? () => current!.stop() : null,
      srcProbe ? () => srcProbe!.disconnect() : null,
      src ? () => src!.stop() : null,
    ]);
  });
  const offSignals = cleanupOnSignalUntilDone(cleanup);
  try {
    progress(`source: filling ${f.keys.toLocaleString('en-US')} keys (${f.dataset}) in db ${DB}`);
    src = await startSource(sync);
    const fill: SourceFill =
      f.dataset === 'mixed' ? await fillSourceMixed(src, DB, f.keys) : f.dataset === 'big' ? await fillSourceBig(src, DB, f.keys) : await fillSource(src, DB, f.keys, 0);
    srcProbe = redisClient(src.url, PROBE_DB);
    const keys = fill.dbsize;
    progress(`source: ${keys.toLocaleString('en-US')} keys, used_memory ${(fill.usedMemory / MB).toFixed(1)} MB (${fill.fillSec.toFixed(1)} s)`);
    const srcPid = await serverPid(srcProbe);

    for (const name of order) {
      progress(`${LABEL[name]}: full sync`);
      if (name === 'native') current = await nativeContender(src.port);
      else if (name === 'replistream') current = await replistreamContender(src, { partitions: f.partitions, compression, writeMode: f['write-mode'], keepTopics: f['keep-topics'], appliers: Math.max(1, Math.floor(f.appliers)) });
      else current = await redisShakeContender(shakeBin!, src, sync);
      const r = await runContender(current, { src, srcPid, keys, rss, f, sync });
      results.push(r);
      const c = current;
      current = null;
      for (const p of [...Object.keys(c.procs()), 'dest']) rss.remove(`${name}:${p}`);
      await c.stop();
      await srcProbe.flushdb();
      await srcProbe.select(BURST_DB);
      await srcProbe.flushdb();
      await srcProbe.select(PROBE_DB);
      await sleep(2000);
    }
    rss.stop();

    report(results, { keys, fill, f, sync, compression, loadBefore, shakeBin });
    for (const r of results) {
      for (const [what, v] of [['', r.verify], [' after', r.verifyAfter]] as const) {
        if (!v.equal) progress(`verify ${r.name}${what}: ${JSON.stringify(v.differences.slice(0, 5))}`);
      }
    }
  } finally {
    offSignals();
    await cleanup();
  }
}

// ----- one contender: full sync, incremental, figures --------------------------------------------

async function runContender(
  c: Contender,
  ctx: { src: RedisServer; srcPid: number; keys: number; rss: ProcRssSampler; f: { sample: number; rate: number; 'probe-every': number; 'fill-keys': number; duration: number; warmup: number; burst: number; 'lag-csv': string }; sync: string },
): Promise<Result> {
  const { rss, f, keys } = ctx;
  const cpuOf = (pid: number) => {
    try {
      return procStats(pid).cpuSec;
    } catch {
      return NaN;
    }
  };
  const hwmOf = (pid: number): number | null => {
    try {
      return procStats(pid).hwm;
    } catch {
      return null;
    }
  };
  rss.phase = 'full';
  // CPU from the start on: processes already running (the native replica, a destination) count from here
  const cpuBase = new Map<number, number>();
  for (const pid of [...Object.values(c.procs()), c.destPid ?? 0]) if (pid) cpuBase.set(pid, cpuOf(pid));
  const destDb = redisClient(c.dest.url, DB);
  try {
    const t0 = now();
    await c.start();
    const procs = c.procs();
    for (const pid of Object.values(procs)) if (!cpuBase.has(pid)) cpuBase.set(pid, 0);
    for (const [n, pid] of Object.entries(procs)) rss.add(`${c.name}:${n}`, pid);
    if (c.destPid) rss.add(`${c.name}:dest`, c.destPid);
    const t1 = await waitFor(async () => {
      c.check();
      return (await destDb.dbsize().catch(() => -1)) === keys;
    }, `the ${LABEL[c.name]} destination's DBSIZE`, TIMEOUT_MS, 20);
    const fullSyncSec = (t1 - t0) / 1000;
    const cpuFull = new Map<number, number>();
    const hwmFull = new Map<number, number>();
    for (const pid of [...Object.values(procs), ...(c.destPid ? [c.destPid] : [])]) {
      cpuFull.set(pid, cpuOf(pid) - (cpuBase.get(pid) ?? 0));
      const h = hwmOf(pid);
      if (h !== null) hwmFull.set(pid, h);
    }
    const peakFull = (n: string) => rss.peak(`${c.name}:${n}`, 'full');
    rss.phase = 'incremental';
    progress(`${LABEL[c.name]}: ${keys.toLocaleString('en-US')} keys in ${fullSyncSec.toFixed(2)} s; verify --sample ${f.sample}`);
    const v0 = now();
    const verify = await verifySettled(ctx.src.url, c.dest.url, [DB], f.sample);
    const verifySec = (now() - v0) / 1000;
    c.check();
    await sleep(1000);

    const csv = f['lag-csv'] ? f['lag-csv'].replace(/(\.[^./]*)?$/, (ext) => `.${c.name}${ext}`) : null;
    const paced = (prefix: string, seconds: number, csvFile: string | null) =>
      runProbe({
        source: { port: ctx.src.port, db: PROBE_DB },
        targets: [{ name: c.name, port: c.dest.port }],
        prefix,
        rate: f.rate,
        total: Math.round(f.rate * seconds),
        every: Math.max(1, Math.floor(f['probe-every'])),
        fillKeys: Math.max(0, Math.floor(f['fill-keys'])),
        drainMs: 120_000,
        csv: csvFile,
        check: () => {
          try {
            c.check();
            return null;
          } catch (e) {
            return e as Error;
          }
        },
      });
    let warmup: ProbeTarget | null = null;
    if (f.warmup > 0) {
      progress(`${LABEL[c.name]}: warm-up, ${f.rate.toLocaleString('en-US')} SET/s for ${f.warmup} s`);
      warmup = (await paced(`warm:${c.name}:`, f.warmup, csv && csv.replace(/(\.[^./]*)?$/, (ext) => `.warmup${ext}`))).targets[0];
    }
    progress(`${LABEL[c.name]}: incremental, ${f.rate.toLocaleString('en-US')} SET/s for ${f.duration} s`);
    const probe = await paced(`lag:${c.name}:`, f.duration, csv);
    const verifyAfter = await verifySettled(ctx.src.url, c.dest.url, [DB, PROBE_DB], f.sample);
    let burst: Result['burst'] = null;
    if (f.burst > 0) {
      progress(`${LABEL[c.name]}: burst, redis-benchmark -t set -P 16 -n ${f.burst.toLocaleString('en-US')} on db ${BURST_DB}`);
      const b = await redisBenchmarkSet(ctx.src.port, { requests: f.burst, keyspace: f.burst, db: BURST_DB, pipeline: 16 });
      const ended = now();
      const srcBurst = redisClient(ctx.src.url, BURST_DB);
      const destBurst = redisClient(c.dest.url, BURST_DB);
      try {
        const want = await srcBurst.dbsize();
        const t = await waitFor(async () => {
          c.check();
          return (await destBurst.dbsize().catch(() => -1)) === want;
        }, `the ${LABEL[c.name]} destination's DBSIZE of db ${BURST_DB}`, TIMEOUT_MS, 10);
        burst = { sourceOpsPerSec: b.opsPerSec, catchUpSec: (t - ended) / 1000, keys: want };
      } finally {
        srcBurst.disconnect();
        destBurst.disconnect();
      }
      progress(`${LABEL[c.name]}: burst of ${f.burst.toLocaleString('en-US')} SETs at ${fmt(b.opsPerSec)} ops/s, caught up ${fmt(burst.catchUpSec)} s after it`);
    }
    rss.sample();
    const figures = (n: string, pid: number): ProcFigures => ({
      peakFull: peakFull(n), peak: rss.peak(`${c.name}:${n}`), hwmFull: hwmFull.get(pid) ?? null, hwm: hwmOf(pid),
      cpuFull: cpuFull.get(pid) ?? NaN, cpu: cpuOf(pid) - (cpuBase.get(pid) ?? 0),
    });
    const procFigures: Record<string, ProcFigures> = {};
    for (const [n, pid] of Object.entries(procs)) procFigures[n] = figures(n, pid);
    const lag = probe.targets[0];
    progress(`${LABEL[c.name]}: lag p50 ${fmt(lag.p50)} p99 ${fmt(lag.p99)} max ${fmt(lag.max)} ms, catch-up ${fmt(lag.catchUpMs)} ms, ${lag.missing} not seen`);
    return {
      name: c.name, fullSyncSec, extra: c.extra(), verify, verifySec, probe, lag, warmup, verifyAfter, burst,
      procs: procFigures, dest: c.destPid ? figures('dest', c.destPid) : null, load1: load1(),
    };
  } finally {
    destDb.disconnect();
  }
}

/** A private redis-server made a replica of the source by REPLICAOF: the destination is the replica. */
async function nativeContender(srcPort: number): Promise<Contender> {
  const native = await startNativeReplica();
  return {
    name: 'native',
    dest: native.server,
    destPid: null,
    async start() {
      await native.replicate(srcPort);
    },
    check() {},
    procs: () => ({ replica: native.pid }),
    extra: () => ({}),
    stop: () => native.stop(),
  };
}

/** `replistream capture` + `replistream apply`, as processes with their /status. */
async function replistreamContender(src: RedisServer, o: { partitions: number; compression: string; writeMode: string; keepTopics: boolean; appliers: number }): Promise<Contender> {
  const dest = await startRedis();
  const destClient = redisClient(dest.url);
  const destPid = await serverPid(destClient);
  destClient.disconnect();
  const names: PipelineNames = pipelineNames();
  const group = uniqueName('g');
  const capPort = await freePort();
  const appPorts: number[] = [];
  for (let i = 0; i < o.appliers; i++) appPorts.push(await freePort());
  let cap: ServiceProcess | null = null;
  let apps: ServiceProcess[] = [];
  let poller: NodeJS.Timeout | null = null;
  let t0Wall = 0;
  let t0 = 0;
  let linkStartedAt: number | null = null;
  let snapshotEndAt: number | null = null;
  const common = ['--source-id', names.sourceId, '--topic-prefix', names.topicPrefix];
  const alive = (p: ServiceProcess | null, what: string) => {
    if (p && (p.child.exitCode !== null || p.child.signalCode !== null)) {
      throw new Error(`${what} exited (${p.child.exitCode ?? p.child.signalCode}):\n${p.log().split('\n').slice(-15).join('\n')}`);
    }
  };
  const killOnExit = () => {
    for (const p of [cap, ...apps]) if (p && p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  };
  return {
    name: 'replistream',
    dest,
    destPid,
    async start() {
      t0Wall = Date.now();
      t0 = now();
      process.once('exit', killOnExit);
      cap = startService(['capture', '--source', src.url, '--dbs', `${PROBE_DB},${DB},${BURST_DB}`, '--partitions', String(o.partitions), '--compression', o.compression, '--http-port', String(capPort), ...common]);
      // one group: with --appliers N the partitions are shared out among N processes
      apps = appPorts.map((port) => startService(['apply', '--destination', dest.url, '--group', group, '--write-mode', o.writeMode, '--http-port', String(port), ...common]));
      poller = setInterval(() => {
        if (snapshotEndAt !== null) return;
        void fetch(`http://127.0.0.1:${capPort}/status`, { signal: AbortSignal.timeout(1000) })
          .then((r) => (r.ok ? (r.json() as Promise<Record<string, unknown>>) : null))
          .then((st) => {
            if (!st) return;
            if (typeof st.linkStartedAt === 'number') linkStartedAt ??= st.linkStartedAt;
            if (Number(st.fullSyncs) >= 1 && st.state === 'synchronizing') snapshotEndAt ??= now();
          })
          .catch(() => undefined);
      }, 200);
    },
    check() {
      alive(cap, 'capture');
      apps.forEach((a, i) => alive(a, i === 0 ? 'applier' : `applier ${i + 1}`));
    },
    procs: () => Object.fromEntries([['capture', cap?.child.pid ?? 0], ...apps.map((a, i) => [i === 0 ? 'applier' : `applier${i + 1}`, a.child.pid ?? 0])]),
    extra() {
      // called at the end of the incremental phase: the link start relative to the process start
      return {
        linkStartSec: linkStartedAt === null ? null : (linkStartedAt - t0Wall) / 1000,
        captureDoneSec: snapshotEndAt === null ? null : (snapshotEndAt - t0) / 1000,
      };
    },
    async stop() {
      if (poller) clearInterval(poller);
      await cleanupAll([
        ...[...apps, cap].map((p) => (p ? async () => {
          const killer = setTimeout(() => void p.kill9(), 10_000);
          await p.term();
          clearTimeout(killer);
        } : null)),
        () => dest.stop(),
        !o.keepTopics ? () => deleteTopics(names.topicPrefix, [group]) : null,
      ]);
      process.off('exit', killOnExit);
    },
  };
}

/** A RedisShake process (sync_reader → redis_writer), its TOML written here; its work dir removed at the end. */
async function redisShakeContender(bin: string, src: RedisServer, sync: 'diskless' | 'disk'): Promise<Contender> {
  const dest = await startRedis();
  const destClient = redisClient(dest.url);
  const destPid = await serverPid(destClient);
  destClient.disconnect();
  const dir = mkdtempSync(join(tmpdir(), 'replistream-bench-shake-'));
  const config = join(dir, 'shake.toml');
  writeFileSync(config, [
    '[sync_reader]',
    `address = "127.0.0.1:${src.port}"`,
    'sync_rdb = true',
    'sync_aof = true',
    `try_diskless = ${sync === 'diskless'}`,
    '',
    '[redis_writer]',
    `address = "127.0.0.1:${dest.port}"`,
    '',
    '[advanced]',
    `dir = "${join(dir, 'data')}"`,
    'log_file = "shake.log"',
    'log_level = "info"',
    'log_interval = 5',
    'rdb_restore_command_behavior = "panic"',
    '',
  ].join('\n'));
  let child: ChildProcess | null = null;
  let out = '';
  const killOnExit = () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  const tail = () => {
    const log = join(dir, 'data', 'shake.log');
    return `${out.split('\n').slice(-10).join('\n')}${existsSync(log) ? `\n${readFileSync(log, 'utf8').split('\n').slice(-10).join('\n')}` : ''}`;
  };
  return {
    name: 'redisshake',
    dest,
    destPid,
    async start() {
      process.once('exit', killOnExit);
      child = spawn(bin, [config], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
      const keep = (d: Buffer) => {
        out += d.toString();
        if (out.length > 200_000) out = out.slice(-100_000);
      };
      child.stdout!.on('data', keep);
      child.stderr!.on('data', keep);
      child.on('error', (e) => (out += `\nspawn: ${e.message}`));
    },
    check() {
      if (child && (child.exitCode !== null || child.signalCode !== null)) throw new Error(`redis-shake exited (${child.exitCode ?? child.signalCode}):\n${tail()}`);
    },
    procs: () => ({ 'redis-shake': child?.pid ?? 0 }),
    extra: () => ({}),
    async stop() {
      await cleanupAll([
        async () => {
          const p = child;
          if (!p || p.exitCode !== null || p.signalCode !== null) return;
          const exited = new Promise((r) => p.once('exit', r));
          p.kill('SIGINT'); // redis-shake stops on SIGINT (SIGTERM is only logged)
          const killer = setTimeout(() => p.kill('SIGKILL'), 5000);
          await exited;
          clearTimeout(killer);
        },
        () => dest.stop(),
        () => rmSync(dir, { recursive: true, force: true }),
      ]);
      process.off('exit', killOnExit);
    },
  };
}

/**
 * verifyDatabases, tried again (a new random sample) up to twice when every difference is a TTL off
 * by under 5 s: the source and the destination are read one after the other, and on a loaded
 * machine the two reads of one key can be more than the 1 s tolerance apart.
 */
async function verifySettled(src: string, dest: string, dbs: number[], sample: number): Promise<VerifyResult & { ttlRetries: number }> {
  let retries = 0;
  for (;;) {
    const v = await verifyDatabases(src, dest, dbs, new Map(), { sample });
    const timingOnly = !v.equal && v.differences.every((d) => {
      const m = /^ttl differs: source (\d+) ms, destination (\d+) ms$/.exec(d.reason);
      return m !== null && Math.abs(Number(m[1]) - Number(m[2])) < 5000;
    });
    if (!timingOnly || retries >= 2) return { ...v, ttlRetries: retries };
    progress(`verify: ${v.differences.length} TTLs differ by < 5 s (reads apart on a loaded machine): again with a new sample`);
    retries++;
  }
}

// ----- report ------------------------------------------------------------------------------------

function report(
  results: Result[],
  o: { keys: number; fill: SourceFill; f: { keys: number; dataset: string; partitions: number; appliers: number; 'write-mode': string; sample: number; rate: number; 'probe-every': number; duration: number; warmup: number; burst: number }; sync: string; compression: string; loadBefore: number; shakeBin: string | null },
): void {
  const by = (n: Name) => results.find((r) => r.name === n) ?? null;
  const nat = by('native');
  const rs = by('replistream');
  const sh = by('redisshake');
  const cols = [rs, sh].filter((r): r is Result => r !== null);
  const head = ['', ...(nat ? ['native'] : []), ...cols.flatMap((r) => (nat ? [LABEL[r.name], `${r.name === 'replistream' ? 'rs' : 'shake'}/native`] : [LABEL[r.name]]))];
  type Cell = number | string | null | undefined;
  const times = (a: number | null | undefined, b: number | null | undefined): string | null => {
    const x = ratio(a, b);
    return x === null ? null : `${fmt(x, x >= 100 ? 0 : 2)}×`;
  };
  const row = (label: string, get: (r: Result) => Cell, withRatio = true): Cell[] => {
    const n = nat ? get(nat) : null;
    return [label, ...(nat ? [n] : []), ...cols.flatMap((r) => {
      const v = get(r);
      return nat ? [v, withRatio && typeof v === 'number' && typeof n === 'number' ? times(v, n) : null] : [v];
    })];
  };
  const verdict = (v: VerifyResult & { ttlRetries: number }) => (v.equal ? `equal (${v.compared.toLocaleString('en-US')}${v.ttlRetries ? `, try ${v.ttlRetries + 1}` : ''})` : `DIFFERENT: ${v.differences.length}`);
  const mb = (x: number | null | undefined) => (x === null || x === undefined ? null : x / MB);
  const sumProcs = (r: Result, k: keyof ProcFigures) => Object.values(r.procs).reduce((a, p) => a + (p[k] ?? NaN), 0);
  const proc = (r: Result, n: string) => r.procs[n] ?? null;
  const top = (a: number | null, b: number | null) => Math.max(a ?? 0, b ?? 0);
  const rssCell = (p: ProcFigures | null) => (p ? `${Math.round(top(p.peakFull, p.hwmFull) / MB)} / ${Math.round(top(p.peak, p.hwm) / MB)}` : null);
  const rows: Cell[][] = [
    row('full sync: start → equal DBSIZE (s)', (r) => r.fullSyncSec),
    row('  keys/s', (r) => o.keys / r.fullSyncSec),
    row('  of which: start → replication link started (s)', (r) => r.extra.linkStartSec ?? null, false),
    row('  start → snapshot in Kafka (capture done) (s)', (r) => r.extra.captureDoneSec ?? null, false),
    row('  CPU s of the sync process(es)', (r) => sumProcs(r, 'cpuFull')),
    row('  CPU s of the destination redis', (r) => r.dest?.cpuFull ?? (r.name === 'native' ? 'the replica' : null), false),
    row(`  verify --sample ${o.f.sample}`, (r) => verdict(r.verify), false),
    ...(o.f.warmup > 0
      ? [row(`warm-up: ${o.f.rate.toLocaleString('en-US')} SET/s × ${o.f.warmup} s, lag p50 / p99 / max (ms)`, (r) => (r.warmup ? `${fmt(r.warmup.p50)} / ${fmt(r.warmup.p99)} / ${fmt(r.warmup.max)}` : null), false)]
      : []),
    row(`incremental: ${o.f.rate.toLocaleString('en-US')} SET/s × ${o.f.duration} s${o.f.warmup > 0 ? ' after it' : ''}, writer achieved ops/s`, (r) => r.probe.writerOpsPerSec, false),
    row('  CPU s of the load generator (writer and subscriber) while writing', (r) => r.probe.writerCpuSec, false),
    row('  ops/s delivered', (r) => r.lag.deliveredOpsPerSec),
    row('  lag p50 (ms)', (r) => r.lag.p50),
    row('  lag p90 (ms)', (r) => r.lag.p90),
    row('  lag p99 (ms)', (r) => r.lag.p99),
    row('  lag p99.9 (ms)', (r) => r.lag.p999),
    row('  lag max (ms)', (r) => r.lag.max),
    row('  catch-up after the load stops (ms)', (r) => r.lag.catchUpMs),
    row(o.f['probe-every'] > 1 ? `  timed writes (every ${o.f['probe-every']}th) not seen` : '  writes not seen', (r) => r.lag.missing, false),
    row(`  verify --sample ${o.f.sample} after (dbs ${DB}, ${PROBE_DB})`, (r) => verdict(r.verifyAfter), false),
    ...(o.f.burst > 0
      ? [
          row(`burst: ${o.f.burst.toLocaleString('en-US')} SETs, redis-benchmark -P 16, source ops/s`, (r) => r.burst?.sourceOpsPerSec ?? null, false),
          row('  caught up after the burst ends (s)', (r) => r.burst?.catchUpSec ?? null),
        ]
      : []),
    row('peak RSS, capture: full sync / overall (MB)', (r) => rssCell(proc(r, 'capture')), false),
    row('peak RSS, applier: full sync / overall (MB)', (r) => rssCell(proc(r, 'applier')), false),
    ...Array.from({ length: Math.max(0, o.f.appliers - 1) }, (_, i) => row(`peak RSS, applier ${i + 2}: full sync / overall (MB)`, (r) => rssCell(proc(r, `applier${i + 2}`)), false)),
    row('peak RSS, redis-shake: full sync / overall (MB)', (r) => rssCell(proc(r, 'redis-shake')), false),
    row('peak RSS of the sync process(es), sum of the peaks (MB)', (r) => (r.name === 'native' ? null : mb(Object.values(r.procs).reduce((a, p) => a + top(p.peak, p.hwm), 0)))),
    row('peak RSS of the destination redis (MB)', (r) => {
      const d = r.name === 'native' ? r.procs.replica : r.dest;
      return d ? mb(top(d.peak, d.hwm)) : null;
    }),
    row('CPU s of the sync process(es), both phases', (r) => sumProcs(r, 'cpu')),
    row('load1 after', (r) => r.load1, false),
  ];
  const shown = rows.filter((r) => r.slice(1).some((c) => c !== null && c !== undefined));
  const m = machine();
  const sampled = results.flatMap((r) => Object.entries(r.procs).map(([n, p]) => `${n} ${Math.round((p.peakFull ?? NaN) / MB)} / ${Math.round((p.peak ?? NaN) / MB)}`)).join(', ');
  printGrid(
    `e2e bench — ${o.keys.toLocaleString('en-US')} keys in db ${DB} (${o.f.dataset === 'big' ? `big: ${o.fill.smallKeys} strings of 5 MB, a list of 1,000,000 elements` : `${o.f.dataset}: ${o.fill.smallKeys.toLocaleString('en-US')} small strings, ${o.fill.collections.toLocaleString('en-US')} collections`}; source used_memory ${fmt(o.fill.usedMemory / MB, 0)} MB), ${o.sync} sync, ${o.f.partitions} partitions, ${o.compression}, write mode ${o.f['write-mode']}, ${m.cpus} CPUs, load ${o.loadBefore} → ${m.loadavg1}`,
    head,
    shown,
    [
      'Each contender on its own fresh destination, one after another, on the same source data (db 2, the incremental writes and the capture\'s',
      'heartbeat key, is flushed on the source between contenders). Full sync: from REPLICAOF / the processes spawned (`replistream capture` and',
      '`replistream apply` together, process start, topics, group join included; redis-shake) until DBSIZE of db 1 equals the source\'s.',
      'Lag = keyspace notification at the destination − SET sent on the source, every write (a child process writes and listens).',
      '"equal (…, try N)": the first sample(s) differed only in TTLs off by < 5 s (the two reads apart on a loaded machine); a new sample was equal.',
      'Catch-up: the last write sent → the last write arrived. Peak RSS: the larger of VmRSS sampled every 250 ms (/proc/<pid>/status) and',
      'VmHWM (the kernel\'s peak), "full sync" until equal DBSIZE, "overall" with the incremental phase. The native replica is the',
      `destination itself (its RSS holds the data). VmRSS samples alone, full sync / overall (MB): ${sampled}.`,
      `redis-shake: ${o.shakeBin ?? 'not run (set REDISSHAKE_BIN to a RedisShake binary)'}.`,
    ],
  );
  const lagJson = (t: ProbeTarget) => ({ deliveredOpsPerSec: t.deliveredOpsPerSec, p50: t.p50, p90: t.p90, p99: t.p99, p999: t.p999, max: t.max, mean: t.mean, catchUpMs: t.catchUpMs, seen: t.seen, missing: t.missing });
  const json = (r: Result) => ({
    fullSyncSec: r.fullSyncSec, ...r.extra, verify: { equal: r.verify.equal, compared: r.verify.compared, sec: r.verifySec }, verifyAfter: r.verifyAfter.equal,
    writerOpsPerSec: r.probe.writerOpsPerSec, ackP99: r.probe.ackP99, writerCpuSec: r.probe.writerCpuSec, lag: lagJson(r.lag), procs: r.procs, dest: r.dest, load1: r.load1,
  });
  printJson({
    bench: 'e2e', machine: m, loadBefore: o.loadBefore, dataset: o.f.dataset, keys: o.keys, smallKeys: o.fill.smallKeys, collections: o.fill.collections, usedMemory: o.fill.usedMemory,
    sync: o.sync, partitions: o.f.partitions, appliers: o.f.appliers, compression: o.compression, writeMode: o.f['write-mode'], sample: o.f.sample, rate: o.f.rate, probeEvery: o.f['probe-every'], durationSec: o.f.duration, warmupSec: o.f.warmup,
    redisShakeBin: o.shakeBin,
    ...Object.fromEntries(results.map((r) => [r.name, json(r)])),
    ratio: Object.fromEntries(cols.map((r) => [r.name, {
      fullSyncTime: ratio(r.fullSyncSec, nat?.fullSyncSec), lagP50: ratio(r.lag.p50, nat?.lag.p50), lagP99: ratio(r.lag.p99, nat?.lag.p99),
      deliveredOpsPerSec: ratio(r.lag.deliveredOpsPerSec, nat?.lag.deliveredOpsPerSec),
    }])),
  });
}

// ----- the lag probe (a child process) -----------------------------------------------------------

interface ProbeConfig {
  source: { port: number; db: number };
  targets: Array<{ name: string; port: number }>;
  prefix: string;
  rate: number;
  total: number;
  /** Every `every`th write (and the last) is timed; the others go to `fill:<prefix><i>`. */
  every: number;
  /** The untimed writes cycle over this many keys (0: a key each). */
  fillKeys: number;
  drainMs: number;
  /** When set, the probe writes `i,sent_epoch_ms,sent_ms,<target>_lag_ms…` (sent_ms: from the first send) there. */
  csv: string | null;
}

interface ProbeTarget {
  name: string;
  seen: number;
  missing: number;
  deliveredOpsPerSec: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
  /** The last write sent → every write seen (ms); NaN when some were never seen. */
  catchUpMs: number;
}

interface ProbeResult {
  sent: number;
  acked: number;
  writerOpsPerSec: number;
  ackP99: number;
  /** CPU of the probe process (writer and subscriber) while it wrote. */
  writerCpuSec: number;
  targets: ProbeTarget[];
}

/** Starts this file as a child process in probe mode, hands it `cfg`, and waits for its result. */
async function runProbe(cfg: ProbeConfig & { check: () => Error | null }): Promise<ProbeResult> {
  const { check, ...config } = cfg;
  const child: ChildProcess = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url)], {
    env: { ...process.env, [PROBE_ENV]: '1' },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  try {
    return await new Promise<ProbeResult>((resolve, reject) => {
      const watch = setInterval(() => {
        const e = check();
        if (e) reject(e);
      }, 200);
      const done = (fn: () => void) => {
        clearInterval(watch);
        fn();
      };
      child.on('message', (msg: { type: string; result?: ProbeResult; error?: string }) => {
        if (msg.type === 'ready') child.send(config);
        else if (msg.type === 'result') done(() => resolve(msg.result!));
        else if (msg.type === 'error') done(() => reject(new Error(`lag probe: ${msg.error}`)));
      });
      child.on('exit', (code) => done(() => reject(new Error(`lag probe exited (${code}) without a result`))));
      child.on('error', (e) => done(() => reject(e)));
    });
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

/** In the child: subscribe on every target, write at the paced rate, wait for every key, report. */
async function probeMain(cfg: ProbeConfig): Promise<ProbeResult> {
  const conn = (port: number, db = 0) => {
    const c = new Redis({ host: '127.0.0.1', port, db, maxRetriesPerRequest: 2 });
    c.on('error', () => undefined);
    return c;
  };
  const { total, prefix } = cfg;
  const every = cfg.every ?? 1;
  const timed = (k: number) => k % every === 0 || k === total - 1;
  let probes = 0;
  for (let k = 0; k < total; k++) if (timed(k)) probes++;
  const fillPrefix = `fill:${prefix}`;
  const subs = await Promise.all(cfg.targets.map(async (t) => {
    const admin = conn(t.port);
    await admin.config('SET', 'notify-keyspace-events', 'KA');
    admin.disconnect();
    const sub = conn(t.port);
    const recv = new Float64Array(total);
    const state = { name: t.name, sub, recv, seen: 0, last: 0 };
    const channelPrefix = `__keyspace@${cfg.source.db}__:${prefix}`;
    sub.on('pmessage', (_pattern: string, channel: string) => {
      const at = performance.now();
      const i = Number(channel.slice(channelPrefix.length));
      if (Number.isInteger(i) && i >= 0 && i < total && recv[i] === 0) {
        recv[i] = at;
        state.seen++;
        state.last = at;
      }
    });
    await sub.psubscribe(`${channelPrefix}*`);
    return state;
  }));

  // raw-redis.ts: at 100,000 writes/s ioredis alone took more than a core of this machine, and a
  // command object per SET most of a third of one (RawSetWriter)
  const w = new RawSetWriter(cfg.source.port, cfg.source.db);
  await w.ready;
  const sent = new Float64Array(total);
  const ackLat = new Float64Array(total);
  let acked = 0;
  w.onReply = (k, failed) => {
    if (failed || k >= total) return;
    ackLat[k] = performance.now() - sent[k];
    acked++;
  };
  const cpu0 = process.cpuUsage();
  let i = 0;
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * cfg.rate) + 1);
      // one send time for the batch: it is written at once
      const at = performance.now();
      const value = String(Date.now());
      let batch = '';
      while (i < due) {
        const k = i++;
        sent[k] = at;
        batch = RawSetWriter.set(batch, timed(k) ? `${prefix}${k}` : `${fillPrefix}${cfg.fillKeys > 0 ? k % cfg.fillKeys : k}`, value);
      }
      w.write(batch);
      if (i >= total) resolve();
      else setTimeout(tick, 1);
    };
    tick();
  });
  const tLastSent = sent[total - 1];
  const cpu = process.cpuUsage(cpu0);
  const writerOpsPerSec = total > 1 ? (total - 1) / ((tLastSent - sent[0]) / 1000) : NaN;
  const deadline = performance.now() + cfg.drainMs;
  while (performance.now() < deadline && (acked < total || subs.some((s) => s.seen < probes))) await new Promise((r) => setTimeout(r, 20));

  const targets: ProbeTarget[] = subs.map((s) => {
    const lags: number[] = [];
    for (let k = 0; k < total; k++) if (s.recv[k] > 0) lags.push(s.recv[k] - sent[k]);
    const sorted = Float64Array.from(lags).sort();
    const sum = lags.reduce((a, b) => a + b, 0);
    return {
      name: s.name,
      seen: s.seen,
      missing: probes - s.seen,
      // writes, not probes: the last write is a probe, so the writes up to the last seen probe are in
      deliveredOpsPerSec: s.seen > 1 ? (s.seen === probes ? total : s.seen * every) / ((s.last - sent[0]) / 1000) : NaN,
      p50: percentile(sorted, 50),
      p90: percentile(sorted, 90),
      p99: percentile(sorted, 99),
      p999: percentile(sorted, 99.9),
      max: sorted.length ? sorted[sorted.length - 1] : NaN,
      mean: lags.length ? sum / lags.length : NaN,
      catchUpMs: s.seen === probes ? Math.max(0, s.last - tLastSent) : NaN,
    };
  });
  if (cfg.csv) {
    const lines = [`i,sent_epoch_ms,sent_ms,${subs.map((s) => `${s.name}_lag_ms`).join(',')}`];
    for (let k = 0; k < total; k++) {
      if (!timed(k)) continue;
      const lags = subs.map((s) => (s.recv[k] > 0 ? (s.recv[k] - sent[k]).toFixed(3) : ''));
      lines.push(`${k},${(performance.timeOrigin + sent[k]).toFixed(3)},${(sent[k] - sent[0]).toFixed(3)},${lags.join(',')}`);
    }
    writeFileSync(cfg.csv, `${lines.join('\n')}\n`);
  }
  for (const s of subs) s.sub.disconnect();
  w.close();
  const ackSorted = ackLat.slice(0, total).filter((x) => x > 0).sort();
  return { sent: total, acked, writerOpsPerSec, ackP99: percentile(ackSorted, 99), writerCpuSec: (cpu.user + cpu.system) / 1e6, targets };
}

if (process.env[PROBE_ENV] === '1' && process.argv[1] === fileURLToPath(import.meta.url) && process.send) {
  process.once('disconnect', () => process.exit(1)); // the bench went away
  process.once('message', (cfg: ProbeConfig) => {
    probeMain(cfg).then(
      (result) => process.send!({ type: 'result', result }, () => process.exit(0)),
      (err: Error) => process.send!({ type: 'error', error: err.stack ?? err.message }, () => process.exit(1)),
    );
  });
  process.send({ type: 'ready' });
}
