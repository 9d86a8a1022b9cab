/**
 * RDB parse benchmark: `npm run bench -- parse [--size-mb 500] [--value-size 100] [--runs 1]
 * [--no-payloads] [--no-verify] [--compression] [--file path] [--regenerate]`
 * (or `npx tsx test/bench/parse.ts …`).
 *
 * 1. Makes (once; cached under ~/.cache/replistream/bench) an RDB of about --size-mb with a real
 *    redis-server: DEBUG POPULATE string keys of --value-size bytes, plus about 10% of the size
 *    in collections (listpack and hashtable hashes, quicklists, intsets and sets, listpack and
 *    skiplist zsets, streams with a consumer group). `rdbcompression no` by default, so the size
 *    is predictable and the values are not the zero-padded strings LZF squeezes to nothing;
 *    --compression turns it on.
 * 2. Parses it with our streaming parser in a child process (so the peak RSS,
 *    process.resourceUsage().maxRSS, is the parser's alone): MB/s, keys/s.
 * 3. Runs `redis-check-rdb` on the same file and prints both and the throughput ratio.
 */
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, createReadStream, existsSync, mkdirSync, renameSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { startRedis } from '../helpers/redis-server.js';
import { parseRdbFile, RdbParser, type RdbItem, type RdbParserOptions } from '../../services/replication/rdb/index.js';

interface Args {
  sizeMb: number;
  valueSize: number;
  runs: number;
  payloads: boolean;
  verify: boolean;
  compression: boolean;
  file: string | null;
  regenerate: boolean;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { sizeMb: 500, valueSize: 100, runs: 1, payloads: true, verify: true, compression: false, file: null, regenerate: false };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const next = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${k} needs a value`);
      return v;
    };
    if (k === '--size-mb') a.sizeMb = Number(next());
    else if (k === '--value-size') a.valueSize = Number(next());
    else if (k === '--runs') a.runs = Number(next());
    else if (k === '--no-payloads') a.payloads = false;
    else if (k === '--no-verify') a.verify = false;
    else if (k === '--compression') a.compression = true;
    else if (k === '--file') a.file = next();
    else if (k === '--regenerate') a.regenerate = true;
    else throw new Error(`unknown argument ${k}`);
  }
  return a;
}

const MB = 1024 * 1024;

function log(msg: string): void {
  process.stderr.write(`${msg}\n`);
}

/** Fills a server with about `bytes` of RDB: strings by DEBUG POPULATE, ~10% collections. */
async function populate(c: Redis, bytes: number, valueSize: number): Promise<void> {
  const collectionBytes = Math.floor(bytes * 0.1);
  // Rough serialized sizes, used only to aim at the target.
  const perString = valueSize + 14;
  const strings = Math.max(1000, Math.floor((bytes - collectionBytes) / perString));
  log(`  DEBUG POPULATE ${strings} key ${valueSize}`);
  await c.call('DEBUG', 'POPULATE', strings, 'key', valueSize);

  // Collections, in rounds of ~1 MB until the budget is spent.
  let spent = 0;
  let round = 0;
  while (spent < collectionBytes) {
    const p = c.pipeline();
    const r = round++;
    // listpack hash (20 fields), hashtable hash (600 fields)
    for (let i = 0; i < 20; i++) {
      const args: string[] = [];
      for (let f = 0; f < 20; f++) args.push(`field:${f}`, `value:${r}:${i}:${f}`);
      p.hset(`hash:small:${r}:${i}`, ...args);
    }
    const big: string[] = [];
    for (let f = 0; f < 600; f++) big.push(`field:${f}`, `v${f}:${'x'.repeat(f % 40)}`);
    p.hset(`hash:big:${r}`, ...big);
    // lists: 50 and 2000 elements
    for (let i = 0; i < 10; i++) {
      const items: string[] = [];
      for (let e = 0; e < 50; e++) items.push(`item:${r}:${i}:${e}`);
      p.rpush(`list:small:${r}:${i}`, ...items);
    }
    const litems: string[] = [];
    for (let e = 0; e < 2000; e++) litems.push(`element-${e}-${'y'.repeat(e % 30)}`);
    p.rpush(`list:big:${r}`, ...litems);
    // sets: intset and hashtable
    const ints: string[] = [];
    for (let e = 0; e < 300; e++) ints.push(String(r * 1000 + e * 7));
    p.sadd(`set:ints:${r}`, ...ints);
    const members: string[] = [];
    for (let e = 0; e < 800; e++) members.push(`member:${r}:${e}`);
    p.sadd(`set:big:${r}`, ...members);
    // zsets: listpack (50) and skiplist (1000)
    const zs: string[] = [];
    for (let e = 0; e < 50; e++) zs.push(String(e * 1.5), `m:${e}`);
    p.zadd(`zset:small:${r}`, ...zs);
    const zb: string[] = [];
    for (let e = 0; e < 1000; e++) zb.push(String((e * 7919) % 10007), `member:${r}:${e}`);
    p.zadd(`zset:big:${r}`, ...zb);
    // a stream of 500 entries with a group and pending entries
    for (let e = 0; e < 500; e++) p.xadd(`stream:${r}`, `${1_700_000_000_000 + e}-0`, 'sensor', String(e % 17), 'reading', String(e * 3.25));
    p.xgroup('CREATE', `stream:${r}`, 'grp', '0');
    p.xreadgroup('GROUP', 'grp', 'consumer-1', 'COUNT', 100, 'STREAMS', `stream:${r}`, '>');
    await p.exec();
    spent += 20 * 20 * 30 + 600 * 45 + 10 * 50 * 20 + 2000 * 30 + 300 * 3 + 800 * 16 + 50 * 12 + 1000 * 25 + 500 * 20;
  }
  log(`  + ${round} rounds of collections`);
}

async function generate(path: string, a: Args): Promise<void> {
  log(`generating ${path} (~${a.sizeMb} MB) with ${spawnSync('redis-server', ['--version']).stdout.toString().trim()}`);
  const server = await startRedis({ rdbcompression: a.compression ? 'yes' : 'no' });
  const c = new Redis({ host: '127.0.0.1', port: server.port, protocol: 2, maxRetriesPerRequest: null });
  try {
    await populate(c, a.sizeMb * MB, a.valueSize);
    log(`  SAVE (dbsize ${await c.dbsize()})`);
    await c.save();
    const tmp = `${path}.tmp`;
    copyFileSync(join(server.dir, 'dump.rdb'), tmp);
    renameSync(tmp, path);
  } finally {
    c.disconnect();
    await server.stop();
  }
}

interface ParseResult {
  seconds: number;
  cpuSeconds: number;
  entries: number;
  keys: number;
  bytes: number;
  maxRssMb: number;
}

/**
 * Runs in the child: parses the file and reports. `push` mode feeds RdbParser.push() with 64 KiB
 * slices of 1 MiB file reads, the way the capture feeds it socket data; `generator` mode
 * consumes parseRdbFile() item by item (one async-generator step per item).
 */
async function parseOnce(path: string, opts: RdbParserOptions, mode: 'push' | 'generator'): Promise<ParseResult> {
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  let entries = 0;
  let keys = 0;
  let bytes = 0;
  const count = (item: RdbItem): void => {
    if (item.kind === 'entry') {
      entries++;
      if (!item.piece || item.piece.index === 0) keys++;
    } else if (item.kind === 'end') bytes = item.offset + 1 + (item.checksum === null ? 0 : 8);
  };
  if (mode === 'generator') {
    for await (const item of parseRdbFile(path, opts)) count(item);
  } else {
    const parser = new RdbParser(opts);
    for await (const chunk of createReadStream(path, { highWaterMark: MB })) {
      const buf = chunk as Buffer;
      for (let off = 0; off < buf.length; off += 65536) {
        const items = parser.push(buf.subarray(off, off + 65536));
        for (let i = 0; i < items.length; i++) count(items[i]);
      }
    }
    parser.finish();
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cu = process.cpuUsage(c0);
  return { seconds, cpuSeconds: (cu.user + cu.system) / 1e6, entries, keys, bytes, maxRssMb: process.resourceUsage().maxRSS / 1024 };
}

function runChild(path: string, opts: RdbParserOptions, mode: 'push' | 'generator'): Promise<ParseResult> {
  const self = fileURLToPath(import.meta.url);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, self, '--child', path, JSON.stringify(opts), mode], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`parse child exited with ${code}`));
      else resolve(JSON.parse(out) as ParseResult);
    });
  });
}

function checkRdb(path: string): { seconds: number; ok: boolean } {
  const t0 = process.hrtime.bigint();
  const r = spawnSync('redis-check-rdb', [path], { encoding: 'utf8', maxBuffer: 16 * MB });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { seconds, ok: r.status === 0 && /RDB looks OK/.test(r.stdout) };
}

const fmt = (n: number, d = 1): string => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });

export async function benchParse(argv: string[]): Promise<void> {
  const a = parseArgs(argv);
  let path = a.file;
  if (!path) {
    const dir = join(homedir(), '.cache', 'replistream', 'bench');
    mkdirSync(dir, { recursive: true });
    path = join(dir, `rdb-${a.sizeMb}mb-v${a.valueSize}${a.compression ? '-lzf' : ''}.rdb`);
    if (a.regenerate || !existsSync(path)) await generate(path, a);
  }
  const size = statSync(path).size;
  const opts: RdbParserOptions = { payloads: a.payloads, verifyChecksum: a.verify };
  log(`file ${path}: ${fmt(size / MB)} MB; parser options ${JSON.stringify(opts)}`);

  const bestOf = async (mode: 'push' | 'generator'): Promise<ParseResult> => {
    const results: ParseResult[] = [];
    for (let i = 0; i < a.runs; i++) results.push(await runChild(path!, opts, mode));
    const best = results.reduce((x, y) => (y.seconds < x.seconds ? y : x));
    if (best.bytes !== size) throw new Error(`parsed ${best.bytes} bytes of ${size}`);
    return best;
  };
  const push = await bestOf('push');
  const gen = await bestOf('generator');
  const checks = Array.from({ length: a.runs }, () => checkRdb(path!));
  const check = checks.reduce((x, y) => (y.seconds < x.seconds ? y : x));

  const line = (label: string, r: ParseResult): string =>
    `${label}: ${fmt(r.seconds, 2)} s  ${fmt(size / MB / r.seconds)} MB/s  ${fmt(r.keys / r.seconds / 1e6, 2)} M keys/s  ` +
    `(cpu ${fmt(r.cpuSeconds, 2)} s, peak RSS ${fmt(r.maxRssMb, 0)} MB)`;
  const checkMbs = size / MB / check.seconds;
  const lines = [
    `${push.keys} keys (${push.entries} entries), ${fmt(size / MB)} MB`,
    line('RdbParser.push     ', push),
    line('parseRdbFile (gen) ', gen),
    `redis-check-rdb    : ${fmt(check.seconds, 2)} s  ${fmt(checkMbs)} MB/s  ${check.ok ? 'OK' : 'FAILED'}`,
    `ratio (RdbParser.push throughput / redis-check-rdb): ${fmt(size / MB / push.seconds / checkMbs, 2)}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

async function childMain(path: string, optsJson: string, mode: string): Promise<void> {
  const r = await parseOnce(path, JSON.parse(optsJson) as RdbParserOptions, mode === 'generator' ? 'generator' : 'push');
  process.stdout.write(JSON.stringify(r));
}

const isMain = process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1];
if (isMain) {
  const argv = process.argv.slice(2);
  const job = argv[0] === '--child' ? childMain(argv[1], argv[2], argv[3]) : benchParse(argv);
  job.then(
    () => process.exit(0),
    (err) => {
      process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
      process.exit(1);
    },
  );
}
