/**
 * `npm run demo`: the main job on the local stack, end to end. Brings the stack up, loads a
 * sample dataset into the stack's source Redis (its destination is emptied first), starts a
 * capture and an applier (the real CLI, as child processes), keeps a small write workload
 * running, and prints the task status and a source/destination comparison every 5 s. Start-up
 * ends once both services synchronize and the destination equals the source, with the status
 * page's URL and the commands to watch, verify and stop.
 * Ctrl-C stops what the demo started; the stack stays up (`npm run stack -- down` stops it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { verifyDatabases } from '../destination/verify.js';
import { formatStatus } from '../commands/status.js';
import { stackEnv, up } from './stack.js';

const BIN = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', 'bin', 'replistream.mjs');

async function loadSample(url: string): Promise<void> {
  const c = new Redis(url, { protocol: 2 } as never);
  await c.flushall();
  await c.call('DEBUG', 'POPULATE', 10_000, 'sample:string', 64);
  for (let i = 0; i < 100; i++) {
    await c.rpush(`sample:list:${i}`, ...Array.from({ length: 50 }, (_, j) => `item-${j}`));
    await c.sadd(`sample:set:${i}`, ...Array.from({ length: 20 }, (_, j) => `member-${j}`));
    await c.zadd(`sample:zset:${i}`, ...Array.from({ length: 20 }, (_, j) => [j * 1.5, `m${j}`]).flat());
    await c.hset(`sample:hash:${i}`, Object.fromEntries(Array.from({ length: 10 }, (_, j) => [`f${j}`, `v${j}`])));
    await c.xadd(`sample:stream:${i}`, '*', 'event', 'created', 'n', String(i));
  }
  await c.set('sample:ttl', 'expires in an hour', 'EX', 3600);
  c.disconnect();
}

function service(args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  child.on('exit', (code, signal) => {
    if (!stopping) {
      process.stderr.write(`demo: ${args[0]} exited (${code ?? signal})\n`);
      process.exitCode = 1;
    }
  });
  return child;
}

let stopping = false;
const children: ChildProcess[] = [];

/** Until capture and applier both report `synchronizing` on their status endpoints. */
async function waitSynchronizing(timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const states: Record<string, string> = {};
  for (;;) {
    for (const [name, port] of [['capture', 9464], ['applier', 9465]] as const) {
      try {
        const body = (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as { state?: string };
        states[name] = String(body.state);
      } catch {
        states[name] = 'starting';
      }
    }
    if (states.capture === 'synchronizing' && states.applier === 'synchronizing') return;
    if (process.exitCode) throw new Error('a service exited during start-up (its error is above)');
    if (Date.now() > deadline) throw new Error(`not synchronizing after ${timeoutMs / 1000} s: capture ${states.capture}, applier ${states.applier}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function main(): Promise<void> {
  process.stdout.write('demo: starting the local stack…\n');
  await up({ timeoutMs: 180_000 });
  const s = stackEnv();
  process.stdout.write('demo: loading the sample dataset into the source; emptying the destination\n');
  await loadSample(s.REPLISTREAM_SOURCE);
  const dst = new Redis(s.REPLISTREAM_DESTINATION, { protocol: 2 } as never);
  await dst.flushall();

  const prefix = `demo${Date.now().toString(36)}`;
  const env = { ...process.env, ...s, REPLISTREAM_TOPIC_PREFIX: prefix, REPLISTREAM_SOURCE_ID: 'stack', REPLISTREAM_LOG_LEVEL: 'warn' };
  const capture = service(['capture', '--dbs', '0', '--http-port', '9464'], env);
  const applier = service(['apply', '--group', `${prefix}-destination`, '--http-port', '9465'], env);

  // Start-up ends when both services synchronize and the destination holds the sample exactly
  // (compared before the write workload starts, so a write in flight cannot differ).
  await waitSynchronizing(180_000);
  // synchronizing means the snapshot is through capture; the applier may still be writing its
  // last records, so compare until equal (bounded)
  let full = await verifyDatabases(s.REPLISTREAM_SOURCE, s.REPLISTREAM_DESTINATION, [0], new Map());
  for (const deadline = Date.now() + 120_000; !full.equal && Date.now() < deadline; ) {
    await new Promise((r) => setTimeout(r, 1000));
    full = await verifyDatabases(s.REPLISTREAM_SOURCE, s.REPLISTREAM_DESTINATION, [0], new Map());
  }
  if (!full.equal) throw new Error(`the destination differs from the source after the full sync: ${full.differences.length} difference(s), e.g. ${full.differences[0]?.key}: ${full.differences[0]?.reason}`);
  const verifyCmd = `node bin/replistream.mjs verify --source ${s.REPLISTREAM_SOURCE} --destination ${s.REPLISTREAM_DESTINATION} --dbs 0`;
  process.stdout.write(
    [
      `demo: synchronizing — the destination equals the source (${full.compared} keys compared)`,
      '',
      `  status page   http://127.0.0.1:9465/  (applier)   http://127.0.0.1:9464/  (capture)`,
      '  watch         node bin/replistream.mjs status --http http://127.0.0.1:9464 --http http://127.0.0.1:9465',
      `  verify        ${verifyCmd}`,
      '  stop          Ctrl-C here (stops capture and applier), then: npm run stack -- down',
      '',
      'demo: a small write workload runs on the source now; status and a sampled comparison every 5 s',
      '',
    ].join('\n'),
  );

  const src = new Redis(s.REPLISTREAM_SOURCE, { protocol: 2 } as never);
  let n = 0;
  // The workload holds its writes while a comparison runs: a write still on its way through Kafka
  // would otherwise show as a difference that is only lag.
  let holdWrites = false;
  const workload = setInterval(() => {
    if (holdWrites) return;
    n++;
    src.multi().incr('demo:counter').lpush('demo:events', `event-${n}`).ltrim('demo:events', 0, 99).hset('demo:last', 'n', String(n), 'at', new Date().toISOString()).exec().catch(() => {});
  }, 100);

  const report = setInterval(async () => {
    for (const [name, port] of [['capture', 9464], ['applier', 9465]] as const) {
      try {
        const body = (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as Record<string, unknown>;
        const { state, lagMs, epoch, sourceOffset, durableOffset, snapshotKeys, offsetLag } = body as Record<string, unknown>;
        // each service reports its own fields: leave out the other's
        const shown = Object.fromEntries(Object.entries({ state, lagMs, epoch, sourceOffset, durableOffset, snapshotKeys, offsetLag }).filter(([, v]) => v !== undefined && v !== null));
        process.stdout.write(formatStatus({ [name]: shown }));
      } catch {
        process.stdout.write(`${name}: starting…\n`);
      }
    }
    try {
      holdWrites = true;
      await new Promise((r) => setTimeout(r, 1500)); // about three times the lag the status shows
      const v = await verifyDatabases(s.REPLISTREAM_SOURCE, s.REPLISTREAM_DESTINATION, [0], new Map(), { sample: 500 });
      if (!stopping) process.stdout.write(`verify (500 random keys): ${v.equal ? 'destination equals source' : `${v.differences.length} difference(s), e.g. ${v.differences[0]?.key}: ${v.differences[0]?.reason}`}\n\n`);
    } catch (err) {
      if (!stopping) process.stdout.write(`verify: ${(err as Error).message}\n\n`);
    } finally {
      holdWrites = false;
    }
  }, 5000);

  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  stopping = true;
  clearInterval(workload);
  clearInterval(report);
  capture.kill('SIGTERM');
  applier.kill('SIGTERM');
  src.disconnect();
  dst.disconnect();
  process.stdout.write('demo: stopped capture and applier; the stack is still up (npm run stack -- down)\n');
}

main().catch((err) => {
  process.stderr.write(`demo: ${err instanceof Error ? err.message : String(err)}\n`);
  stopping = true;
  for (const c of children) c.kill('SIGTERM'); // nothing the demo started outlives it
  process.exit(1);
});
