/**
 * Shared pieces of the capture and e2e benchmarks: flags, filling a private source, native replicas
 * (the baseline), process memory/CPU readings, percentiles, the Kafka topics of a run, and output
 * (an aligned table plus one JSON line).
 *
 * Benchmarks print; they never assert timings.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { createKafka } from '../../services/transport/kafka.js';
import { stackLayout } from '../../services/stack/stack.js';
import { redisClient, testLogger } from '../helpers/pipeline.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';
import { stack } from '../helpers/stack-env.js';

// ----- flags -------------------------------------------------------------------------------------

export type FlagSpec = Record<string, { default: number | string | boolean; help: string }>;
export type Flags<S extends FlagSpec> = { [K in keyof S]: S[K]['default'] };

/** `--name value` / `--name=value` / `--flag` (booleans); `--help` prints the spec and exits. */
export function parseFlags<S extends FlagSpec>(bench: string, args: string[], spec: S): Flags<S> {
  const out: Record<string, number | string | boolean> = {};
  for (const [k, v] of Object.entries(spec)) out[k] = v.default;
  const usage = (): string =>
    `usage: npm run bench -- ${bench} ${Object.entries(spec).map(([k, v]) => `[--${k}${typeof v.default === 'boolean' ? '' : ' X'}]`).join(' ')}\n` +
    Object.entries(spec).map(([k, v]) => `  --${k.padEnd(12)} ${v.help} (default ${String(v.default)})`).join('\n') + '\n';
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--help' || a === '-h') {
      process.stdout.write(usage());
      process.exit(0);
    }
    const m = /^--([a-z0-9-]+)(?:=(.*))?$/.exec(a);
    if (!m || !(m[1] in spec)) throw new Error(`unknown argument ${a}\n${usage()}`);
    const name = m[1];
    const def = spec[name].default;
    if (typeof def === 'boolean') {
      out[name] = m[2] === undefined ? true : m[2] !== 'false';
      continue;
    }
    const raw = m[2] ?? args[++i];
    if (raw === undefined) throw new Error(`--${name} needs a value\n${usage()}`);
    if (typeof def === 'number') {
      const n = Number(raw.replace(/_/g, ''));
      if (!Number.isFinite(n) || n < 0) throw new Error(`--${name}: ${raw} is not a number`);
      out[name] = n;
    } else out[name] = raw;
  }
  return out as Flags<S>;
}

// ----- small utilities ---------------------------------------------------------------------------

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
export const now = (): number => performance.now();

/** Polls `cond` every `everyMs` until it holds; returns the time (performance.now()) it first held. */
export async function waitFor(cond: () => Promise<boolean> | boolean, what: string, timeoutMs: number, everyMs = 10): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return now();
    if (Date.now() > deadline) throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** INFO `section` as a map. */
export async function info(c: Redis, section: string): Promise<Map<string, string>> {
  const text = await c.info(section);
  const m = new Map<string, string>();
  for (const line of text.split('\r\n')) {
    const i = line.indexOf(':');
    if (i > 0) m.set(line.slice(0, i), line.slice(i + 1));
  }
  return m;
}

export async function masterOffset(c: Redis): Promise<number> {
  return Number((await info(c, 'replication')).get('master_repl_offset'));
}

export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

export const MB = 1024 * 1024;
export const round = (x: number, d = 2): number => (Number.isFinite(x) ? Math.round(x * 10 ** d) / 10 ** d : x);

/** Machine context, printed with every result (these numbers mean little without it). */
export function machine(): { cpus: number; cpu: string; node: string; loadavg1: number } {
  return { cpus: cpus().length, cpu: cpus()[0]?.model ?? '?', node: process.version, loadavg1: round(loadavg()[0]) };
}

/** The 1-minute load average: the stack and the CPUs are shared, so a busy machine shows here. */
export function load1(): number {
  return round(loadavg()[0]);
}

// ----- processes: memory and CPU -----------------------------------------------------------------

/** Samples this process's RSS every `everyMs` (the capture and applier run in-process). */
export class RssSampler {
  peak = 0;
  peakHeap = 0;
  readonly start = process.memoryUsage().rss;
  private timer: NodeJS.Timeout;
  constructor(everyMs = 100) {
    this.peak = this.start;
    this.timer = setInterval(() => this.sample(), everyMs);
  }
  sample(): void {
    const m = process.memoryUsage();
    if (m.rss > this.peak) this.peak = m.rss;
    if (m.heapUsed > this.peakHeap) this.peakHeap = m.heapUsed;
  }
  stop(): void {
    this.sample();
    clearInterval(this.timer);
  }
}

/** Peak RSS (VmHWM) and CPU seconds (utime + stime) of another process, from /proc. */
export function procStats(pid: number): { hwm: number; rss: number; cpuSec: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = 100; // USER_HZ on Linux
  return { hwm: kb('VmHWM'), rss: kb('VmRSS'), cpuSec: (Number(fields[11]) + Number(fields[12])) / ticks };
}

/** Current RSS (VmRSS) of a process in bytes; NaN when it is gone. */
export function procRss(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN) * 1024;
  } catch {
    return NaN;
  }
}

/**
 * Samples VmRSS of other processes (by name) every `everyMs` from /proc: the latest value and the
 * peak per name and per phase (`phase` is a label the bench sets, e.g. 'full' then 'incremental').
 * A process that is gone simply stops being sampled.
 */
export class ProcRssSampler {
  private readonly pids = new Map<string, number>();
  private readonly peaks = new Map<string, number>();
  readonly last = new Map<string, number>();
  phase = '';
  private timer: NodeJS.Timeout;
  constructor(everyMs = 250) {
    this.timer = setInterval(() => this.sample(), everyMs);
    this.timer.unref();
  }
  add(name: string, pid: number | undefined): void {
    if (!pid) return;
    this.pids.set(name, pid);
    this.sample();
  }
  /** Samples once more and stops sampling `name` (call before stopping the process). */
  remove(name: string): void {
    this.sample();
    this.pids.delete(name);
  }
  sample(): void {
    for (const [name, pid] of this.pids) {
      const v = procRss(pid);
      if (!Number.isFinite(v)) continue;
      this.last.set(name, v);
      for (const k of [name, `${name}@${this.phase}`]) if (v > (this.peaks.get(k) ?? 0)) this.peaks.set(k, v);
    }
  }
  /** Peak RSS of `name` (bytes), over every phase or over one; null when never sampled. */
  peak(name: string, phase?: string): number | null {
    return this.peaks.get(phase === undefined ? name : `${name}@${phase}`) ?? null;
  }
  stop(): void {
    this.sample();
    clearInterval(this.timer);
  }
}

/** Least-squares line through (x, y): slope, intercept, the slope's standard error and t = slope / se. */
export function linearFit(xs: number[], ys: number[]): { slope: number; intercept: number; se: number; t: number; n: number } {
  const n = Math.min(xs.length, ys.length);
  if (n < 2) return { slope: NaN, intercept: NaN, se: NaN, t: NaN, n };
  let mx = 0;
  let my = 0;
  for (let i = 0; i < n; i++) {
    mx += xs[i] / n;
    my += ys[i] / n;
  }
  let sxx = 0;
  let sxy = 0;
  for (let i = 0; i < n; i++) {
    sxx += (xs[i] - mx) ** 2;
    sxy += (xs[i] - mx) * (ys[i] - my);
  }
  const slope = sxx > 0 ? sxy / sxx : NaN;
  const intercept = my - slope * mx;
  let sse = 0;
  for (let i = 0; i < n; i++) sse += (ys[i] - intercept - slope * xs[i]) ** 2;
  const se = n > 2 && sxx > 0 ? Math.sqrt(sse / (n - 2) / sxx) : NaN;
  const t = se > 0 ? slope / se : slope === 0 ? 0 : slope > 0 ? Infinity : -Infinity;
  return { slope, intercept, se, t, n };
}

export async function serverPid(c: Redis): Promise<number> {
  return Number((await info(c, 'server')).get('process_id'));
}

/** CPU seconds this process used since `from` (process.cpuUsage()). */
export function cpuSecSince(from: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(from);
  return (d.user + d.system) / 1e6;
}

// ----- the source --------------------------------------------------------------------------------

export interface SourceFill {
  /** Keys made by DEBUG POPULATE (`key:<n>`, 16-byte values). */
  smallKeys: number;
  /** Collections: hashes, lists, sets, sorted sets. */
  collections: number;
  /** Keys the incremental workload overwrites (`key:<12 digits>`, pre-written so the key set stays fixed). */
  workloadKeys: number;
  dbsize: number;
  usedMemory: number;
  fillSec: number;
}

/** A private source with fast full syncs: diskless (7.0's default) without the 5 s gathering delay, or disk-based. */
export async function startSource(sync: 'diskless' | 'disk'): Promise<RedisServer> {
  return startRedis({
    'repl-diskless-sync': sync === 'diskless' ? 'yes' : 'no',
    'repl-diskless-sync-delay': 0,
    'repl-backlog-size': '64mb',
  });
}

const COLLECTIONS_LUA = `
local n, m, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 1, n do
  local h, l, s, z = {}, {}, {}, {}
  for j = 1, m do
    h[#h + 1] = 'field:' .. j; h[#h + 1] = 'value:' .. i .. ':' .. j
    l[#l + 1] = 'element:' .. i .. ':' .. j
    s[#s + 1] = 'member:' .. j
    z[#z + 1] = j * 1.5; z[#z + 1] = 'member:' .. j
  end
  local p = ARGV[4] .. i
  redis.call('HSET', 'hash:' .. p, unpack(h))
  redis.call('RPUSH', 'list:' .. p, unpack(l))
  redis.call('SADD', 'set:' .. p, unpack(s))
  redis.call('ZADD', 'zset:' .. p, unpack(z))
  if ttl > 0 and i % 10 == 0 then
    redis.call('PEXPIRE', 'hash:' .. p, ttl)
    redis.call('PEXPIRE', 'list:' .. p, ttl)
  end
end
return n * 4
`;

/**
 * Fills db `db` of a source: `keys` small strings (DEBUG POPULATE key:<n>, 16 bytes), collections
 * (keys/1000 of each of 4 types with 50 elements — listpack encodings — plus 10 of each with 1000
 * elements — hashtable/quicklist/skiplist), 10 % of them with a 1 h TTL, and the `workloadKeys`
 * keys that `redis-benchmark -r workloadKeys -d 16` overwrites, so an incremental phase changes
 * values but not the key set (two full syncs of one run see the same data).
 */
export async function fillSource(src: RedisServer, db: number, keys: number, workloadKeys: number): Promise<SourceFill> {
  const t0 = now();
  const c = redisClient(src.url, db);
  try {
    await c.call('DEBUG', 'POPULATE', String(keys), 'key', '16');
    const small = Math.max(10, Math.floor(keys / 1000));
    const a = Number(await c.eval(COLLECTIONS_LUA, 0, String(small), '50', '3600000', 's'));
    const b = Number(await c.eval(COLLECTIONS_LUA, 0, '10', '1000', '3600000', 'b'));
    if (workloadKeys > 0) await redisBenchmarkSet(src.port, { requests: Math.max(workloadKeys * 20, 200_000), keyspace: workloadKeys, db });
    const dbsize = await c.dbsize();
    const used = Number((await info(c, 'memory')).get('used_memory'));
    return { smallKeys: keys, collections: a + b, workloadKeys, dbsize, usedMemory: used, fillSec: (now() - t0) / 1000 };
  } finally {
    c.disconnect();
  }
}

const SMALL_COLLECTIONS_LUA = `
local from, to, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for i = from, to - 1 do
  redis.call('HSET', 'hash:' .. i, 'name', 'user-' .. i, 'email', 'u' .. i .. '@example.com', 'visits', tostring(i % 97), 'plan', 'basic')
  redis.call('RPUSH', 'list:' .. i, 'evt:' .. i .. ':1', 'evt:' .. i .. ':2', 'evt:' .. i .. ':3', 'evt:' .. i .. ':4', 'evt:' .. i .. ':5')
  redis.call('SADD', 'set:' .. i, 'tag:' .. (i % 11), 'tag:' .. (i % 13), 'tag:' .. (i % 17), 'tag:' .. (i % 19), 'tag:' .. (i % 23))
  redis.call('ZADD', 'zset:' .. i, 1, 'm1:' .. i, 2.5, 'm2:' .. i, 4, 'm3:' .. i, 8.25, 'm4:' .. i, 16, 'm5:' .. i)
  if ttl > 0 and i % 10 == 0 then
    redis.call('PEXPIRE', 'hash:' .. i, ttl)
    redis.call('PEXPIRE', 'zset:' .. i, ttl)
  end
end
return (to - from) * 4
`;

/**
 * The issue's dataset in db `db`: `keys` keys in all, 96 % small strings (DEBUG POPULATE key:<n>,
 * 16-byte values) and 4 % small collections, 1 % of each: hashes of 4 fields, lists of 5 elements,
 * sets of 5 members, sorted sets of 5 members (all listpack/intset encodings), 10 % of the hashes
 * and sorted sets with a 1 h TTL. DBSIZE is exactly `keys`.
 */
export async function fillSourceMixed(src: RedisServer, db: number, keys: number): Promise<SourceFill> {
  const t0 = now();
  const c = redisClient(src.url, db);
  try {
    const each = Math.floor(keys * 0.01);
    const strings = keys - 4 * each;
    if (strings > 0) await c.call('DEBUG', 'POPULATE', String(strings), 'key', '16');
    let collections = 0;
    for (let from = 0; from < each; from += 2000) {
      collections += Number(await c.eval(SMALL_COLLECTIONS_LUA, 0, String(from), String(Math.min(each, from + 2000)), '3600000'));
    }
    const dbsize = await c.dbsize();
    const used = Number((await info(c, 'memory')).get('used_memory'));
    return { smallKeys: strings, collections, workloadKeys: 0, dbsize, usedMemory: used, fillSec: (now() - t0) / 1000 };
  } finally {
    c.disconnect();
  }
}

/**
 * Big keys, for the memory bound: `strings` strings of 5 MB (`big:str:<i>`, each a different
 * pattern) and one list of 1,000,000 elements (`big:list`, 8-byte elements pushed 10,000 at a time).
 */
export async function fillSourceBig(src: RedisServer, db: number, strings: number): Promise<SourceFill> {
  const t0 = now();
  const c = redisClient(src.url, db);
  try {
    for (let i = 0; i < strings; i++) await c.set(`big:str:${i}`, Buffer.alloc(5 * MB, `${i}:0123456789abcdef`));
    for (let from = 0; from < 1_000_000; from += 10_000) {
      await c.rpush('big:list', ...Array.from({ length: 10_000 }, (_, j) => String(from + j).padStart(8, '0')));
    }
    const dbsize = await c.dbsize();
    const used = Number((await info(c, 'memory')).get('used_memory'));
    return { smallKeys: strings, collections: 1, workloadKeys: 0, dbsize, usedMemory: used, fillSec: (now() - t0) / 1000 };
  } finally {
    c.disconnect();
  }
}

/**
 * `redis-benchmark -t set -n requests -P pipeline -r keyspace -d 16`: SET key:<12 digits> (16-byte
 * values) as fast as the server takes them, from 50 connections. Resolves when every reply came back.
 */
export async function redisBenchmarkSet(port: number, o: { requests: number; keyspace: number; db?: number; pipeline?: number; clients?: number }): Promise<{ sec: number; opsPerSec: number }> {
  const args = ['-h', '127.0.0.1', '-p', String(port), '-t', 'set', '-n', String(o.requests), '-P', String(o.pipeline ?? 32), '-r', String(o.keyspace), '-d', '16', '-c', String(o.clients ?? 50), '-q', '--dbnum', String(o.db ?? 0)];
  const t0 = now();
  await new Promise<void>((resolve, reject) => {
    const child = spawn('redis-benchmark', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`redis-benchmark exited ${code}: ${err.slice(-500)}`))));
  });
  const sec = (now() - t0) / 1000;
  return { sec, opsPerSec: o.requests / sec };
}

// ----- the native baseline -----------------------------------------------------------------------

export interface NativeReplica {
  server: RedisServer;
  client: Redis;
  pid: number;
  /** Replication offset the replica has processed. */
  offset(): Promise<number>;
  stop(): Promise<void>;
}

/** A private redis-server (empty), not yet replicating: call `replicate()` to start the full sync. */
export async function startNativeReplica(): Promise<NativeReplica & { replicate(masterPort: number): Promise<void> }> {
  const server = await startRedis();
  const client = redisClient(server.url);
  const pid = await serverPid(client);
  return {
    server,
    client,
    pid,
    async replicate(masterPort: number) {
      await client.call('REPLICAOF', '127.0.0.1', String(masterPort));
    },
    async offset() {
      const i = await info(client, 'replication');
      return i.get('master_link_status') === 'up' ? Number(i.get('slave_repl_offset') ?? i.get('master_repl_offset')) : -1;
    },
    async stop() {
      client.disconnect();
      await server.stop();
    },
  };
}

// ----- Kafka -------------------------------------------------------------------------------------

/** Bytes the broker stores for the topics of `prefix` (its log directories), or null when not found. */
export function kafkaTopicBytes(prefix: string): number | null {
  const dir = join(stackLayout().stateDir, 'kafka', 'data');
  if (!existsSync(dir)) return null;
  let total = 0;
  for (const d of readdirSync(dir)) {
    if (!d.startsWith(`${prefix}.`) || d.includes('.positions')) continue;
    for (const f of readdirSync(join(dir, d))) if (f.endsWith('.log')) total += statSync(join(dir, d, f)).size;
  }
  return total;
}

/** Deletes the topics (unique prefix) and consumer groups of one run, so benchmarks do not fill the shared broker. */
export async function deleteTopics(prefix: string, groups: string[] = []): Promise<void> {
  const kafka = createKafka({ brokers: stack().kafka, clientId: 'replistream-bench', logger: testLogger });
  const admin = kafka.admin();
  await admin.connect();
  try {
    const names = (await admin.listTopics()).filter((t) => t.startsWith(`${prefix}.`));
    if (names.length) await admin.deleteTopics({ topics: names, timeout: 30_000 });
    if (groups.length) await admin.deleteGroups(groups).catch(() => undefined);
  } finally {
    await admin.disconnect();
  }
}

// ----- output ------------------------------------------------------------------------------------

export type Row = [label: string, replistream: number | string | null, native: number | string | null, ratio?: number | string | null];

export function fmt(x: number | string | null | undefined, digits = 2): string {
  if (x === null || x === undefined) return '—';
  if (typeof x === 'string') return x;
  if (!Number.isFinite(x)) return String(x);
  const abs = Math.abs(x);
  const d = abs >= 1000 || Number.isInteger(x) ? 0 : abs >= 100 ? 1 : digits;
  return x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
}

/** `a / b` as "3.21×", or — when either is missing. */
export function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a === null || a === undefined || b === null || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return null;
  return a / b;
}

export function printTable(title: string, head: [string, string, string, string], rows: Row[], notes: string[] = []): void {
  const cells = rows.map(([l, a, b, r]) => [l, fmt(a), fmt(b), r === undefined ? '' : typeof r === 'number' ? `${fmt(r)}×` : fmt(r)]);
  const w = [0, 1, 2, 3].map((i) => Math.max(head[i].length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => `${c[0].padEnd(w[0])}  ${c[1].padStart(w[1])}  ${c[2].padStart(w[2])}  ${c[3].padStart(w[3])}`.trimEnd();
  const out = [``, title, line(head), line(w.map((n) => '-'.repeat(n))), ...cells.map(line)];
  for (const n of notes) out.push(`  ${n}`);
  process.stdout.write(`${out.join('\n')}\n`);
}

/**
 * A table of any number of columns (printTable's layout for wider results): the first column
 * left-aligned, the others right-aligned, numbers through `fmt`, a `null` cell as —.
 */
export function printGrid(title: string, head: string[], rows: Array<Array<number | string | null | undefined>>, notes: string[] = []): void {
  const cells = rows.map((r) => head.map((_, i) => (typeof r[i] === 'string' ? (r[i] as string) : fmt(r[i] as number | null | undefined))));
  const w = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => c.map((x, i) => (i === 0 ? x.padEnd(w[i]) : x.padStart(w[i]))).join('  ').trimEnd();
  const out = [``, title, line(head), line(w.map((n) => '-'.repeat(n))), ...cells.map(line)];
  for (const n of notes) out.push(`  ${n}`);
  process.stdout.write(`${out.join('\n')}\n`);
}

export function printJson(obj: unknown): void {
  process.stdout.write(`${JSON.stringify(obj, (_k, v) => (typeof v === 'number' ? round(v, 4) : v))}\n`);
}

export function progress(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

/**
 * Runs `cleanup` (once) on SIGINT/SIGTERM, then exits 130, so an interrupted bench does not leave
 * redis-servers, services or topics behind. Returns the function that removes the handlers.
 */
export function cleanupOnSignal(cleanup: () => Promise<void>): () => void {
  const handler = (sig: NodeJS.Signals) => {
    progress(`${sig}: stopping everything this bench started`);
    cleanup().catch((err: Error) => progress(`cleanup: ${err.message}`)).finally(() => process.exit(130));
  };
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}

/**
 * Like cleanupOnSignal, but the handlers stay installed while `cleanup` runs: a repeated signal is
 * ignored for the first 3 s (tsx relays a Ctrl-C to its child once more when the child is slow to
 * acknowledge it, as on a loaded machine, and that second signal would otherwise end the process in
 * the middle of the cleanup: services, servers or topics left behind); one after that forces the exit.
 */
export function cleanupOnSignalUntilDone(cleanup: () => Promise<void>): () => void {
  let first = 0;
  const handler = (sig: NodeJS.Signals) => {
    if (first) {
      if (Date.now() - first < 3000) return;
      progress(`${sig} again: exiting without finishing the cleanup`);
      process.exit(130);
    }
    first = Date.now();
    progress(`${sig}: stopping everything this bench started`);
    cleanup().catch((err: Error) => progress(`cleanup: ${err.message}`)).finally(() => process.exit(130));
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    if (first) return; // a signal's cleanup is running: keep guarding it
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}

/** `fn` run at most once; later calls return the first call's promise. */
export function once(fn: () => Promise<void>): () => Promise<void> {
  let p: Promise<void> | null = null;
  return () => (p ??= fn());
}

/** Runs every cleanup, in order, even when one throws; rethrows the first error. */
export async function cleanupAll(steps: Array<(() => Promise<void> | void) | null | undefined>): Promise<void> {
  let first: unknown = null;
  for (const s of steps) {
    if (!s) continue;
    try {
      await s();
    } catch (err) {
      first ??= err;
    }
  }
  if (first) throw first;
}
