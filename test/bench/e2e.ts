/**
 * `npm run bench -- e2e [--keys N] [--rate OPS] [--duration S] [--sample N] …`
 *
 * The whole pipeline, source → capture → Kafka → applier → destination, against native replication
 * of the same source, in one run:
 * 1. full sync: N small keys (DEBUG POPULATE) plus collections in db 1 of a private source; the time
 *    until the destination's DBSIZE equals the source's, then `verify --sample`; beside a private
 *    native replica (REPLICAOF) timed the same way. (Data lives in db 1 so the destination's db 1
 *    holds only synchronized keys: the applier's position keys live in db 0.)
 * 2. incremental: a paced writer (`--rate` ops/s for `--duration` s) SETs `lag:<run>:<i>` to its
 *    send time; both the destination and the native replica (still attached) publish keyspace
 *    notifications, and a subscriber on each records when every key arrives. Writer and
 *    subscribers run in a child process of their own, so the capture and applier (in this process)
 *    cannot delay the clock that measures them. Every write is measured (no sampling).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import type { RunningApplier } from '../../services/applier/service.js';
import type { RunningCapture } from '../../services/capture/service.js';
import { verifyDatabases, type VerifyResult } from '../../services/destination/verify.js';
import { pipelineNames, redisClient, runApplier, runCapture } from '../helpers/pipeline.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { uniqueName } from '../helpers/stack-env.js';
import {
  MB, RssSampler, cleanupAll, cleanupOnSignal, cpuSecSince, deleteTopics, fillSource, load1, machine, now, once, parseFlags, percentile, printJson, printTable,
  procStats, progress, ratio, serverPid, startNativeReplica, startSource, waitFor, type Row,
} from './common.js';

const DB = 1;
const TIMEOUT_MS = 20 * 60_000;
const PROBE_ENV = 'REPLISTREAM_BENCH_E2E_PROBE';

export async function benchE2e(args: string[]): Promise<void> {
  const f = parseFlags('e2e', args, {
    keys: { default: 1_000_000, help: 'small keys in the source (DEBUG POPULATE), plus keys/1000 collections of each type' },
    sample: { default: 10_000, help: 'keys compared by verify --sample (each direction)' },
    rate: { default: 5_000, help: 'writes per second of the incremental phase' },
    duration: { default: 20, help: 'seconds of the incremental phase' },
    sync: { default: 'diskless', help: 'source full-sync transfer: diskless (Redis 7 default, delay 0) or disk' },
    partitions: { default: 4, help: 'partitions of the capture topic' },
    compression: { default: 'snappy', help: 'Kafka record compression of the capture: snappy (default of the service), gzip or none' },
    'write-mode': { default: 'restore', help: 'applier full-sync writes: restore or commands' },
    'keep-topics': { default: false, help: 'keep the Kafka topics of the run' },
    'lag-csv': { default: '', help: 'write every write\'s send time and lag per destination to this CSV file' },
  });
  if (f.sync !== 'diskless' && f.sync !== 'disk') throw new Error('--sync is diskless or disk');
  if (f['write-mode'] !== 'restore' && f['write-mode'] !== 'commands') throw new Error('--write-mode is restore or commands');
  const sync = f.sync as 'diskless' | 'disk';
  if (!['snappy', 'gzip', 'none'].includes(f.compression)) throw new Error('--compression is snappy, gzip or none');
  const compression = f.compression as 'snappy' | 'gzip' | 'none';
  const loadBefore = load1();

  let src: RedisServer | null = null;
  let dest: RedisServer | null = null;
  let srcClient: Redis | null = null;
  let destClient: Redis | null = null;
  let native: Awaited<ReturnType<typeof startNativeReplica>> | null = null;
  let capture: RunningCapture | null = null;
  let applier: RunningApplier | null = null;
  let rss: RssSampler | null = null;
  const names = pipelineNames();
  const group = uniqueName('g');
  let topicsCreated = false;
  const cleanup = once(() => {
    rss?.stop();
    return cleanupAll([
      applier ? () => applier!.stop() : null,
      capture ? () => capture!.stop() : null,
      native ? () => native!.stop() : null,
      srcClient ? () => srcClient!.disconnect() : null,
      destClient ? () => destClient!.disconnect() : null,
      dest ? () => dest!.stop() : null,
      src ? () => src!.stop() : null,
      topicsCreated && !f['keep-topics'] ? () => deleteTopics(names.topicPrefix, [group]) : null,
    ]);
  });
  const offSignals = cleanupOnSignal(cleanup);
  try {
    progress(`source: filling ${f.keys.toLocaleString('en-US')} keys + collections in db ${DB}`);
    src = await startSource(sync);
    const fill = await fillSource(src, DB, f.keys, 0);
    srcClient = redisClient(src.url, DB);
    const keys = fill.dbsize;
    progress(`source: ${keys.toLocaleString('en-US')} keys, used_memory ${(fill.usedMemory / MB).toFixed(1)} MB (${fill.fillSec.toFixed(1)} s)`);

    // ---- baseline: native replica, full sync ----------------------------------------------------
    progress('native replica: full sync');
    native = await startNativeReplica();
    const nat = native;
    const natDb = redisClient(nat.server.url, DB);
    const n0 = now();
    await nat.replicate(src.port);
    const n1 = await waitFor(async () => (await natDb.dbsize().catch(() => -1)) === keys, 'the native replica\'s DBSIZE', TIMEOUT_MS, 10);
    natDb.disconnect();
    const nativeFullSec = (n1 - n0) / 1000;
    const nativeCpuFull = procStats(nat.pid).cpuSec;
    const v0 = now();
    const nativeVerify = await verifyDatabases(src.url, nat.server.url, [DB], new Map(), { sample: f.sample });
    const nativeVerifySec = (now() - v0) / 1000;

    // ---- replistream, full sync -----------------------------------------------------------------
    progress('replistream: full sync (capture + applier)');
    dest = await startRedis();
    destClient = redisClient(dest.url, DB);
    const dc = destClient;
    const destPid = await serverPid(dc);
    rss = new RssSampler(100);
    const cpu0 = process.cpuUsage();
    const r0 = now();
    topicsCreated = true;
    capture = await runCapture(src.url, names, { dbs: [DB], partitions: f.partitions, compression });
    const cap = capture;
    const rCap = now();
    let snapshotEndAt: number | null = null;
    cap.service.once('snapshot-end', () => (snapshotEndAt = now()));
    const failure = { error: null as Error | null };
    void cap.service.failure().then((e) => (failure.error ??= e));
    applier = await runApplier(dest.url, names, group, { writeMode: f['write-mode'] as 'restore' | 'commands' });
    const app = applier;
    void app.consumer.done.catch((e: Error) => (failure.error ??= e));
    const rApp = now();
    const r1 = await waitFor(async () => {
      if (failure.error) throw failure.error;
      return (await dc.dbsize()) === keys;
    }, 'the destination\'s DBSIZE', TIMEOUT_MS, 20);
    const rsFullSec = (r1 - r0) / 1000;
    const rsSyncSec = (r1 - rCap) / 1000;
    const captureDoneSec = snapshotEndAt === null ? null : ((snapshotEndAt as number) - rCap) / 1000;
    const rsCpuFull = cpuSecSince(cpu0);
    const destCpuFull = procStats(destPid).cpuSec;
    const rssFull = rss.peak;
    const v1 = now();
    const rsVerify = await verifyDatabases(src.url, dest.url, [DB], new Map(), { sample: f.sample });
    const rsVerifySec = (now() - v1) / 1000;

    // ---- incremental: paced writes, lag per write -----------------------------------------------
    progress(`incremental: ${f.rate.toLocaleString('en-US')} SET/s for ${f.duration} s, lag measured on both`);
    const total = Math.round(f.rate * f.duration);
    const probe = await runProbe({
      source: { port: src.port, db: DB },
      targets: [{ name: 'replistream', port: dest.port }, { name: 'native', port: nat.server.port }],
      prefix: `lag:${names.topicPrefix}:`,
      rate: f.rate,
      total,
      drainMs: 120_000,
      csv: f['lag-csv'] || null,
      check: () => failure.error,
    });
    const rsLag = probe.targets.find((t) => t.name === 'replistream')!;
    const natLag = probe.targets.find((t) => t.name === 'native')!;
    const vr = await verifyDatabases(src.url, dest.url, [DB], new Map(), { sample: f.sample });
    const vn = await verifyDatabases(src.url, nat.server.url, [DB], new Map(), { sample: f.sample });
    rss.stop();
    const rsCpuTotal = cpuSecSince(cpu0);

    // ---- report ---------------------------------------------------------------------------------
    const verdict = (v: VerifyResult) => (v.equal ? `equal (${v.compared.toLocaleString('en-US')})` : `DIFFERENT: ${v.differences.length}`);
    const rows: Row[] = [
      ['full sync: link start → equal DBSIZE (s)', rsSyncSec, nativeFullSec, ratio(rsSyncSec, nativeFullSec)],
      ['  the same from service start (topics, group join) (s)', rsFullSec, nativeFullSec, ratio(rsFullSec, nativeFullSec)],
      ['  capture done: snapshot in Kafka (s)', captureDoneSec, null],
      ['  keys/s', keys / rsSyncSec, keys / nativeFullSec, ratio(nativeFullSec, rsSyncSec)],
      ['  CPU s (node: capture+applier / replica)', rsCpuFull, nativeCpuFull, ratio(rsCpuFull, nativeCpuFull)],
      ['  CPU s of the destination redis', destCpuFull, null],
      [`  verify --sample ${f.sample}`, verdict(rsVerify), verdict(nativeVerify)],
      ['  verify time (s)', rsVerifySec, nativeVerifySec],
      [`incremental: ${f.rate.toLocaleString('en-US')} SET/s × ${f.duration} s, writer achieved ops/s`, probe.writerOpsPerSec, probe.writerOpsPerSec],
      ['  ops/s delivered', rsLag.deliveredOpsPerSec, natLag.deliveredOpsPerSec, ratio(rsLag.deliveredOpsPerSec, natLag.deliveredOpsPerSec)],
      ['  lag p50 (ms)', rsLag.p50, natLag.p50, ratio(rsLag.p50, natLag.p50)],
      ['  lag p90 (ms)', rsLag.p90, natLag.p90, ratio(rsLag.p90, natLag.p90)],
      ['  lag p99 (ms)', rsLag.p99, natLag.p99, ratio(rsLag.p99, natLag.p99)],
      ['  lag p99.9 (ms)', rsLag.p999, natLag.p999, ratio(rsLag.p999, natLag.p999)],
      ['  lag max (ms)', rsLag.max, natLag.max, ratio(rsLag.max, natLag.max)],
      ['  writes not seen', rsLag.missing, natLag.missing],
      [`  verify --sample ${f.sample} after`, verdict(vr), verdict(vn)],
      ['peak RSS of the node process (MB)', rss.peak / MB, null],
    ];
    const m = machine();
    printTable(
      `e2e bench — ${keys.toLocaleString('en-US')} keys (${f.keys.toLocaleString('en-US')} small, ${fill.collections.toLocaleString('en-US')} collections) in db ${DB}, ${sync} sync, ${f.partitions} partitions, ${compression}, write mode ${f['write-mode']}, ${m.cpus} CPUs, load ${loadBefore} → ${m.loadavg1}`,
      ['', 'replistream', 'native replica', 'replistream/native'],
      rows,
      [
        'capture and applier run in this process (one node process; the stack\'s Kafka and registry are shared); the writer and the lag',
        'subscribers (keyspace notifications on each destination) run in a child process. Lag = notification received − SET sent, every write.',
        `writer: ${probe.sent.toLocaleString('en-US')} SETs sent, ${probe.acked.toLocaleString('en-US')} acked, source reply p99 ${probe.ackP99.toFixed(2)} ms; peak RSS after the full sync ${(rssFull / MB).toFixed(0)} MB, peak V8 heap used ${(rss.peakHeap / MB).toFixed(0)} MB; node CPU over both phases ${rsCpuTotal.toFixed(1)} s.`,
      ],
    );
    const lagJson = (t: ProbeTarget) => ({ deliveredOpsPerSec: t.deliveredOpsPerSec, p50: t.p50, p90: t.p90, p99: t.p99, p999: t.p999, max: t.max, mean: t.mean, seen: t.seen, missing: t.missing });
    printJson({
      bench: 'e2e', machine: m, loadBefore, compression, keys, smallKeys: f.keys, collections: fill.collections, sync, partitions: f.partitions, writeMode: f['write-mode'], sample: f.sample,
      rate: f.rate, durationSec: f.duration, writerOpsPerSec: probe.writerOpsPerSec,
      replistream: {
        fullSyncSec: rsSyncSec, fullSyncWithSetupSec: rsFullSec, setupSec: (rApp - r0) / 1000, captureDoneSec, cpuSecFull: rsCpuFull, destCpuSecFull: destCpuFull,
        verify: { equal: rsVerify.equal, compared: rsVerify.compared, sec: rsVerifySec }, verifyAfter: vr.equal, peakRssFull: rssFull, peakRss: rss.peak, peakHeapUsed: rss.peakHeap, lag: lagJson(rsLag),
      },
      native: { fullSyncSec: nativeFullSec, cpuSecFull: nativeCpuFull, verify: { equal: nativeVerify.equal, compared: nativeVerify.compared, sec: nativeVerifySec }, verifyAfter: vn.equal, lag: lagJson(natLag) },
      ratio: {
        fullSyncTime: ratio(rsSyncSec, nativeFullSec), fullSyncTimeWithSetup: ratio(rsFullSec, nativeFullSec),
        lagP50: ratio(rsLag.p50, natLag.p50), lagP99: ratio(rsLag.p99, natLag.p99), deliveredOpsPerSec: ratio(rsLag.deliveredOpsPerSec, natLag.deliveredOpsPerSec),
      },
    });
    for (const [what, v] of [['replistream', rsVerify], ['native', nativeVerify], ['replistream after', vr], ['native after', vn]] as const) {
      if (!v.equal) progress(`verify ${what}: ${JSON.stringify(v.differences.slice(0, 5))}`);
    }
  } finally {
    offSignals();
    await cleanup();
  }
}

// ----- the lag probe (a child process) -----------------------------------------------------------

interface ProbeConfig {
  source: { port: number; db: number };
  targets: Array<{ name: string; port: number }>;
  prefix: string;
  rate: number;
  total: number;
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
}

interface ProbeResult {
  sent: number;
  acked: number;
  writerOpsPerSec: number;
  ackP99: number;
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

  const w = conn(cfg.source.port, cfg.source.db);
  await w.ping();
  const sent = new Float64Array(total);
  const ackLat = new Float64Array(total);
  let acked = 0;
  let i = 0;
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * cfg.rate) + 1);
      while (i < due) {
        const k = i++;
        const at = performance.now();
        sent[k] = at;
        w.set(`${prefix}${k}`, String(Date.now())).then(() => {
          ackLat[k] = performance.now() - at;
          acked++;
        }, () => undefined);
      }
      if (i >= total) resolve();
      else setTimeout(tick, 1);
    };
    tick();
  });
  const tLastSent = sent[total - 1];
  const writerOpsPerSec = total > 1 ? (total - 1) / ((tLastSent - sent[0]) / 1000) : NaN;
  const deadline = performance.now() + cfg.drainMs;
  while (performance.now() < deadline && (acked < total || subs.some((s) => s.seen < total))) await new Promise((r) => setTimeout(r, 20));

  const targets: ProbeTarget[] = subs.map((s) => {
    const lags: number[] = [];
    for (let k = 0; k < total; k++) if (s.recv[k] > 0) lags.push(s.recv[k] - sent[k]);
    const sorted = Float64Array.from(lags).sort();
    const sum = lags.reduce((a, b) => a + b, 0);
    return {
      name: s.name,
      seen: s.seen,
      missing: total - s.seen,
      deliveredOpsPerSec: s.seen > 1 ? s.seen / ((s.last - sent[0]) / 1000) : NaN,
      p50: percentile(sorted, 50),
      p90: percentile(sorted, 90),
      p99: percentile(sorted, 99),
      p999: percentile(sorted, 99.9),
      max: sorted.length ? sorted[sorted.length - 1] : NaN,
      mean: lags.length ? sum / lags.length : NaN,
    };
  });
  if (cfg.csv) {
    const lines = [`i,sent_epoch_ms,sent_ms,${subs.map((s) => `${s.name}_lag_ms`).join(',')}`];
    for (let k = 0; k < total; k++) {
      const lags = subs.map((s) => (s.recv[k] > 0 ? (s.recv[k] - sent[k]).toFixed(3) : ''));
      lines.push(`${k},${(performance.timeOrigin + sent[k]).toFixed(3)},${(sent[k] - sent[0]).toFixed(3)},${lags.join(',')}`);
    }
    writeFileSync(cfg.csv, `${lines.join('\n')}\n`);
  }
  for (const s of subs) s.sub.disconnect();
  w.disconnect();
  const ackSorted = ackLat.slice(0, total).filter((x) => x > 0).sort();
  return { sent: total, acked, writerOpsPerSec, ackP99: percentile(ackSorted, 99), targets };
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
