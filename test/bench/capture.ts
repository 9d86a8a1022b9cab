/**
 * `npm run bench -- capture [--keys N] [--writes N] [--sync diskless|disk] …`
 *
 * The capture service against a native Redis replica, on the same source and the same data, in one
 * run:
 * 1. full sync: a private source filled with N small keys (DEBUG POPULATE) plus collections; the
 *    time from the start of the link (capture starts it before its Kafka set-up is complete: the
 *    set-up line is the time until then) until the whole snapshot is durable in Kafka ('snapshot-end'),
 *    beside the time a native replica (REPLICAOF) takes until its link is up and its offset equals
 *    the master's;
 * 2. incremental: a burst of SETs (redis-benchmark, pipelined) and the time until capture's durable
 *    offset (Kafka-acked, position recorded) reaches the master's offset after the burst, beside the
 *    native replica's processed offset.
 * Capture runs in this process, so its RSS is this process's (sampled every 100 ms; the bench's own
 * footprint is the "before" figure). After the burst, capture idles for a few seconds and its RSS
 * is read again (what a burst leaves behind). The native replica's figures are its VmHWM and CPU time.
 * The two phases run one after the other (the native replica is stopped before capture starts), so
 * neither competes with the other for the CPUs.
 */
import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import type { RunningCapture } from '../../services/capture/service.js';
import { pipelineNames, redisClient, runCapture } from '../helpers/pipeline.js';
import type { RedisServer } from '../helpers/redis-server.js';
import {
  MB, RssSampler, cleanupAll, cleanupOnSignal, cpuSecSince, deleteTopics, fillSource, kafkaTopicBytes, load1, machine, masterOffset, now, once, parseFlags,
  printJson, printTable, procStats, progress, ratio, redisBenchmarkSet, startNativeReplica, startSource, waitFor, type Row,
} from './common.js';

const WORKLOAD_KEYS = 10_000;
const IDLE_SEC = 5;
const TIMEOUT_MS = 20 * 60_000;

export async function benchCapture(args: string[]): Promise<void> {
  const f = parseFlags('capture', args, {
    keys: { default: 1_000_000, help: 'small keys in the source (DEBUG POPULATE), plus keys/1000 collections of each type' },
    writes: { default: 200_000, help: 'SETs of the incremental phase (redis-benchmark)' },
    pipeline: { default: 32, help: 'redis-benchmark pipeline depth (-P)' },
    sync: { default: 'diskless', help: 'source full-sync transfer: diskless (Redis 7 default, delay 0) or disk' },
    partitions: { default: 4, help: 'partitions of the capture topic' },
    compression: { default: 'snappy', help: 'Kafka record compression of the capture: snappy (default of the service), gzip or none' },
    'keep-topics': { default: false, help: 'keep the Kafka topics of the run' },
    'big-string-mb': { default: 0, help: 'add one string key of this many MB' },
    'big-list': { default: 0, help: 'add one list key of this many elements (16 bytes each)' },
    'linger-ms': { default: 5, help: 'capture\'s --linger-ms' },
  });
  if (f.sync !== 'diskless' && f.sync !== 'disk') throw new Error('--sync is diskless or disk');
  const sync = f.sync as 'diskless' | 'disk';
  if (!['snappy', 'gzip', 'none'].includes(f.compression)) throw new Error('--compression is snappy, gzip or none');
  const compression = f.compression as 'snappy' | 'gzip' | 'none';
  const loadBefore = load1();

  let src: RedisServer | null = null;
  let srcClient: Redis | null = null;
  let native: Awaited<ReturnType<typeof startNativeReplica>> | null = null;
  let capture: RunningCapture | null = null;
  let rss: RssSampler | null = null;
  const names = pipelineNames();
  let topicsCreated = false;
  const cleanup = once(() => {
    rss?.stop();
    return cleanupAll([
      capture ? () => capture!.stop() : null,
      native ? () => native!.stop() : null,
      srcClient ? () => srcClient!.disconnect() : null,
      src ? () => src!.stop() : null,
      topicsCreated && !f['keep-topics'] ? () => deleteTopics(names.topicPrefix) : null,
    ]);
  });
  const offSignals = cleanupOnSignal(cleanup);
  try {
    progress(`source: filling ${f.keys.toLocaleString('en-US')} keys + collections`);
    src = await startSource(sync);
    const fill = await fillSource(src, 0, f.keys, WORKLOAD_KEYS);
    srcClient = redisClient(src.url);
    const s = srcClient;
    const big = await addBigKeys(s, f['big-string-mb'], f['big-list']);
    fill.dbsize += big;
    progress(`source: ${fill.dbsize.toLocaleString('en-US')} keys, used_memory ${(fill.usedMemory / MB).toFixed(1)} MB (${fill.fillSec.toFixed(1)} s)`);

    // ---- baseline: native replica ---------------------------------------------------------------
    progress('native replica: full sync');
    native = await startNativeReplica();
    const nat = native;
    const n0 = now();
    await nat.replicate(src.port);
    const n1 = await waitFor(async () => {
      const o = await nat.offset();
      return o >= 0 && o >= (await masterOffset(s));
    }, 'the native replica to finish its full sync', TIMEOUT_MS);
    const nativeFullSec = (n1 - n0) / 1000;
    const nativeAfterFull = procStats(nat.pid);
    let rdbBytes: number | null = null;
    try {
      rdbBytes = statSync(join(nat.server.dir, 'dump.rdb')).size; // the replica keeps the RDB it received
    } catch {
      /* diskless load, or deleted */
    }

    progress(`native replica: ${f.writes.toLocaleString('en-US')} SETs`);
    const nativeInc = await incremental(s, src.port, f.writes, f.pipeline, () => nat.offset());
    const nativeAfterInc = procStats(nat.pid);
    await nat.stop();
    native = null;

    // ---- capture --------------------------------------------------------------------------------
    progress('capture: full sync');
    rss = new RssSampler(100);
    const cpu0 = process.cpuUsage();
    const c0 = now();
    const c0Wall = Date.now();
    topicsCreated = true;
    capture = await runCapture(src.url, names, { dbs: [0], partitions: f.partitions, compression, lingerMs: f['linger-ms'] });
    const cap = capture;
    // the link starts inside runCapture, before the Kafka set-up is complete: time from it
    const linkAt = cap.service.stats.linkStartedAt;
    const cReady = typeof linkAt === 'number' ? c0 + (linkAt - c0Wall) : now();
    const failure = { error: null as Error | null };
    void cap.service.failure().then((e) => (failure.error = e));
    if (cap.service.stats.fullSyncs > 0 && cap.service.stats.state === 'synchronizing') throw new Error('the full sync ended before it could be timed');
    const c1 = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('timed out waiting for capture to produce the full sync')), TIMEOUT_MS);
      cap.service.once('snapshot-end', () => {
        clearTimeout(timer);
        resolve(now());
      });
      void cap.service.failure().then((e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
    const capFullSec = (c1 - cReady) / 1000;
    const capCpuFull = cpuSecSince(cpu0);
    const stFull = { ...cap.service.stats };
    const rssFull = rss.peak;
    const kafkaBytes = kafkaTopicBytes(names.topicPrefix);
    rdbBytes ??= stFull.snapshotBytes;

    progress(`capture: ${f.writes.toLocaleString('en-US')} SETs`);
    const cmd0 = cap.service.stats.commands;
    const capInc = await incremental(s, src.port, f.writes, f.pipeline, () => {
      if (failure.error) throw failure.error;
      return cap.service.stats.durableOffset;
    }, 2);
    const capCommands = cap.service.stats.commands - cmd0;
    const capCpuTotal = cpuSecSince(cpu0);
    const rssCaughtUp = process.memoryUsage().rss;
    progress(`capture: idle ${IDLE_SEC} s after the burst`);
    await new Promise((r) => setTimeout(r, IDLE_SEC * 1000));
    const rssIdle = process.memoryUsage().rss;
    rss.stop();
    await cap.stop();
    capture = null;

    // ---- report ---------------------------------------------------------------------------------
    const capKeysPerSec = stFull.snapshotKeys / capFullSec;
    const natKeysPerSec = fill.dbsize / nativeFullSec;
    const rows: Row[] = [
      ['full sync: time (s)', capFullSec, nativeFullSec, ratio(capFullSec, nativeFullSec)],
      ['  keys/s', capKeysPerSec, natKeysPerSec, ratio(capKeysPerSec, natKeysPerSec)],
      ['  events/s produced', stFull.eventsProduced / capFullSec, null],
      ['  RDB MB/s', stFull.snapshotBytes / MB / capFullSec, rdbBytes / MB / nativeFullSec, ratio(stFull.snapshotBytes / capFullSec, rdbBytes / nativeFullSec)],
      ['  CPU s (capture process / replica)', capCpuFull, nativeAfterFull.cpuSec, ratio(capCpuFull, nativeAfterFull.cpuSec)],
      ['  capture setup before the link (s)', (cReady - c0) / 1000, null],
      [`incremental: ${f.writes.toLocaleString('en-US')} SET -P ${f.pipeline}, writer time (s)`, capInc.writerSec, nativeInc.writerSec],
      ['  caught up, from first write (s)', capInc.caughtUpSec, nativeInc.caughtUpSec, ratio(capInc.caughtUpSec, nativeInc.caughtUpSec)],
      ['  behind the last write (ms)', capInc.behindMs, nativeInc.behindMs, ratio(capInc.behindMs, nativeInc.behindMs)],
      ['  ops/s through', capInc.opsPerSec, nativeInc.opsPerSec, ratio(capInc.opsPerSec, nativeInc.opsPerSec)],
      ['  stream MB/s through', capInc.bytes / MB / capInc.caughtUpSec, nativeInc.bytes / MB / nativeInc.caughtUpSec, ratio(capInc.bytes / capInc.caughtUpSec, nativeInc.bytes / nativeInc.caughtUpSec)],
      ['peak RSS (MB)', rssFull / MB, nativeAfterFull.hwm / MB, ratio(rssFull, nativeAfterFull.hwm)],
      ['  peak RSS after incremental (MB)', rss.peak / MB, nativeAfterInc.hwm / MB, ratio(rss.peak, nativeAfterInc.hwm)],
      ['  RSS when caught up (MB)', rssCaughtUp / MB, null],
      [`  RSS after idling ${IDLE_SEC} s (MB)`, rssIdle / MB, null],
      ['  bench process before capture (MB)', rss.start / MB, null],
    ];
    const m = machine();
    printTable(
      `capture bench — ${fill.dbsize.toLocaleString('en-US')} keys (${f.keys.toLocaleString('en-US')} small, ${fill.collections.toLocaleString('en-US')} collections, ${WORKLOAD_KEYS.toLocaleString('en-US')} workload), RDB ${(rdbBytes / MB).toFixed(1)} MB, ${sync} sync, ${f.partitions} partitions, ${compression}, ${m.cpus} CPUs, load ${loadBefore} → ${m.loadavg1}`,
      ['', 'capture', 'native replica', 'capture/native'],
      rows,
      [
        `capture: ${stFull.snapshotKeys.toLocaleString('en-US')} keys, ${stFull.eventsProduced.toLocaleString('en-US')} events, ${capCommands.toLocaleString('en-US')} commands in the incremental phase; Kafka log bytes of the topics after the full sync: ${kafkaBytes === null ? 'n/a' : `${(kafkaBytes / MB).toFixed(1)} MB (${(kafkaBytes / stFull.snapshotBytes).toFixed(2)}× the RDB)`}`,
        `capture runs in this process: its RSS is this process's peak (sampled every 100 ms) and includes the bench itself (line "before"); peak V8 heap used ${(rss.peakHeap / MB).toFixed(0)} MB;`,
        'the native replica\'s is its VmHWM (it holds the whole dataset; capture holds none). Full sync time excludes capture\'s setup (topics, registry).',
        `"caught up": capture's durable offset (acked by Kafka, position recorded) / the replica's processed offset reaches the master's offset after the burst; CPU s of capture include the whole node process (${capCpuTotal.toFixed(1)} s over both phases).`,
      ],
    );
    printJson({
      bench: 'capture', machine: m, loadBefore, compression, keys: fill.dbsize, smallKeys: f.keys, collections: fill.collections, rdbBytes, sync, partitions: f.partitions, writes: f.writes,
      capture: {
        setupSec: (cReady - c0) / 1000, fullSyncSec: capFullSec, keysPerSec: capKeysPerSec, eventsPerSec: stFull.eventsProduced / capFullSec,
        rdbMBps: stFull.snapshotBytes / MB / capFullSec, snapshotKeys: stFull.snapshotKeys, snapshotBytes: stFull.snapshotBytes, eventsProduced: stFull.eventsProduced,
        kafkaLogBytes: kafkaBytes, cpuSecFull: capCpuFull, peakRssFull: rssFull, peakRss: rss.peak, rssBefore: rss.start, rssCaughtUp, rssIdle, peakHeapUsed: rss.peakHeap, incremental: capInc,
      },
      native: { fullSyncSec: nativeFullSec, keysPerSec: natKeysPerSec, rdbMBps: rdbBytes / MB / nativeFullSec, cpuSecFull: nativeAfterFull.cpuSec, peakRss: nativeAfterInc.hwm, incremental: nativeInc },
      ratio: {
        fullSyncTime: ratio(capFullSec, nativeFullSec), incrementalCaughtUp: ratio(capInc.caughtUpSec, nativeInc.caughtUpSec),
        incrementalOpsPerSec: ratio(capInc.opsPerSec, nativeInc.opsPerSec), peakRss: ratio(rss.peak, nativeAfterInc.hwm),
      },
    });
  } finally {
    offSignals();
    await cleanup();
  }
}

/**
 * One string of `stringMb` MB (random bytes: no LZF gain) and one list of `listItems` 16-byte
 * elements, when asked for; the list is built by the server (Lua) so that the bench's own memory
 * stays out of capture's figures. Returns the keys added.
 */
async function addBigKeys(c: Redis, stringMb: number, listItems: number): Promise<number> {
  let added = 0;
  if (stringMb > 0) {
    await c.set('big:string', randomBytes(Math.round(stringMb * MB)));
    added++;
  }
  if (listItems > 0) {
    const lua = `local n = tonumber(ARGV[1]); local i = 0
      while i < n do
        local batch = {}
        for k = 1, math.min(1000, n - i) do batch[k] = string.format('element:%08d', i + k - 1) end
        redis.call('RPUSH', KEYS[1], unpack(batch)); i = i + #batch
      end
      return n`;
    await c.eval(lua, 1, 'big:list', String(listItems));
    added++;
  }
  if (added) progress(`source: big keys added (${stringMb} MB string, ${listItems.toLocaleString('en-US')}-element list)`);
  return added;
}

interface Incremental {
  writerSec: number;
  caughtUpSec: number;
  behindMs: number;
  opsPerSec: number;
  /** Replication stream bytes of the burst (master offset difference). */
  bytes: number;
}

/**
 * A burst of `writes` SETs; the time until `offsetOf()` reaches the master's offset read right
 * after the last reply. (The master's PINGs every 10 s also move its offset; capture does not count
 * a trailing PING as progress until the next write, and its heartbeat key is written every second.)
 */
async function incremental(src: Redis, port: number, writes: number, pipeline: number, offsetOf: () => Promise<number> | number, everyMs = 10): Promise<Incremental> {
  const before = await masterOffset(src);
  const t0 = now();
  await redisBenchmarkSet(port, { requests: writes, keyspace: WORKLOAD_KEYS, pipeline });
  const tw = now();
  const target = await masterOffset(src);
  const t1 = await waitFor(async () => (await offsetOf()) >= target, 'the incremental writes to be caught up', TIMEOUT_MS, everyMs);
  const caughtUpSec = (t1 - t0) / 1000;
  return { writerSec: (tw - t0) / 1000, caughtUpSec, behindMs: t1 - tw, opsPerSec: writes / caughtUpSec, bytes: target - before };
}
