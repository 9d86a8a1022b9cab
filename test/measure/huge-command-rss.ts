/**
 * Peak resident memory (RSS) of capture and of an applier, each a process of the CLI, while one
 * huge command streamed from the source (not in the snapshot) goes through them: a 100 MB SET and
 * an HSET of 1,000,000 fields, sent back to back (`both`, the default), or one of them
 * alone (`set`, `hset`). The source is empty at the start, so the snapshot adds nothing.
 *
 *   npx tsx test/measure/huge-command-rss.ts [both|set|hset] [--runs N]
 *
 * needs the local stack (`npm run stack -- up`) and runs dist/ (built first when stale). The peak
 * is the kernel's high-water mark of each process (VmHWM in /proc/<pid>/status), read once the
 * destination holds the commands whole; the RSS sampled every 20 ms is printed beside it, with
 * each service's RSS before the commands (its idle start). Node flags for the services go in
 * REPLISTREAM_NODE_ARGS (e.g. `--heapsnapshot-signal=SIGUSR2`); RSS_TRACE=<file> writes the sampled
 * RSS of both services over time into <file>.<run> (ms since the first command, MB).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { startService, waitForLog, type ServiceProcess } from '../helpers/processes.js';
import { startRedis } from '../helpers/redis-server.js';
import { uniqueName } from '../helpers/stack-env.js';

const MB = 1024 * 1024;
const FIELDS = 1_000_000;

function status(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

function client(url: string): Redis {
  const c = new Redis(url, { protocol: 2, maxRetriesPerRequest: 2 } as never);
  c.on('error', () => undefined);
  return c;
}

async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

interface Figures {
  idle: number;
  sampled: number;
  hwm: number;
}

async function run(mode: string, index: number): Promise<{ capture: Figures; applier: Figures; seconds: number }> {
  const source = await startRedis({});
  const dest = await startRedis({});
  const procs: ServiceProcess[] = [];
  try {
    const prefix = uniqueName('t').replace(/-/g, '_');
    const common = ['--source-id', 's1', '--topic-prefix', prefix];
    const capture = startService(['capture', '--source', source.url, ...common, '--dbs', '0', '--partitions', '2', '--no-heartbeat']);
    procs.push(capture);
    await waitForLog(capture, /full sync captured/, 60_000);
    const applier = startService(['apply', '--destination', dest.url, '--group', uniqueName('g'), ...common]);
    procs.push(applier);
    const d = client(dest.url);
    const s = client(source.url);
    try {
      await s.set('ready', '1');
      await until(async () => (await d.get('ready')) === '1', 60_000, 'the applier to start');
      const pids = { capture: capture.child.pid!, applier: applier.child.pid! };
      const idle = { capture: status(pids.capture, 'VmRSS'), applier: status(pids.applier, 'VmRSS') };
      const sampled = { ...idle };
      const t0 = Date.now();
      const trace: string[] = [];
      const timer = setInterval(() => {
        const line = [String(Date.now() - t0)];
        for (const k of ['capture', 'applier'] as const) {
          try {
            const rss = status(pids[k], 'VmRSS');
            sampled[k] = Math.max(sampled[k], rss);
            line.push(`${k}=${Math.round(rss / MB)}`);
          } catch {
            // exited: the run fails below
          }
        }
        trace.push(line.join(' '));
      }, 20);
      const big = Buffer.alloc(100 * MB);
      for (let i = 0; i < big.length; i += 4096) big.write(`block ${i} `, i, 'latin1');
      const fields = Array.from({ length: FIELDS }, (_, i) => [`f${i}`, `v-${i}`]).flat();
      if (mode !== 'hset') await s.set('bigstring', big);
      if (mode !== 'set') await s.call('HSET', ['bighash', ...fields]);
      await s.set('after', 'done');
      await until(
        async () =>
          (await d.get('after')) === 'done' &&
          (mode === 'hset' || (await d.strlen('bigstring')) === big.length) &&
          (mode === 'set' || (await d.hlen('bighash')) === FIELDS),
        300_000,
        'the destination to hold the commands',
      );
      const seconds = (Date.now() - t0) / 1000;
      clearInterval(timer);
      if (process.env.RSS_TRACE) writeFileSync(`${process.env.RSS_TRACE}.${index}`, `${trace.join('\n')}\n`);
      if (mode !== 'hset' && !(await d.getBuffer('bigstring'))!.equals(big)) throw new Error('bigstring differs');
      if (mode !== 'set' && (await d.hget('bighash', `f${FIELDS - 1}`)) !== `v-${FIELDS - 1}`) throw new Error('bighash differs');
      const fig = (k: 'capture' | 'applier'): Figures => ({ idle: idle[k], sampled: sampled[k], hwm: status(pids[k], 'VmHWM') });
      return { capture: fig('capture'), applier: fig('applier'), seconds };
    } finally {
      s.disconnect();
      d.disconnect();
    }
  } finally {
    for (const p of procs) await p.term();
    await source.stop();
    await dest.stop();
  }
}

const args = process.argv.slice(2);
const mode = args.find((a) => !a.startsWith('--') && !/^\d+$/.test(a)) ?? 'both';
const runsAt = args.indexOf('--runs');
const runs = runsAt >= 0 ? Number(args[runsAt + 1]) : 1;
if (!['both', 'set', 'hset'].includes(mode)) {
  process.stderr.write('usage: npx tsx test/measure/huge-command-rss.ts [both|set|hset] [--runs N]\n');
  process.exit(2);
}
const mb = (n: number) => `${(n / MB).toFixed(0)} MB`;
for (let i = 0; i < runs; i++) {
  const r = await run(mode, i + 1);
  for (const k of ['capture', 'applier'] as const) {
    const f = r[k];
    process.stdout.write(`${mode} run ${i + 1}: ${k.padEnd(7)} peak ${mb(f.hwm)} (sampled ${mb(f.sampled)}, idle ${mb(f.idle)})\n`);
  }
  process.stdout.write(`${mode} run ${i + 1}: applied in ${r.seconds.toFixed(1)} s\n`);
}
process.exit(0);
