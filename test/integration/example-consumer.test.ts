/**
 * The example consumer of examples/python-consumer (Python, confluent-kafka and its schema-registry
 * Avro deserializer) reads a topic written by capture through the local stack's Kafka and registry
 * and prints the changes as docs/consumers.md says a third-party consumer must: the snapshot keys,
 * the commands, a multi-partition MSET once (its other copy is a position marker), and nothing
 * twice although every record of the topic is on it twice (a capture that wrote them again).
 *
 * The Python environment lives in ~/.cache/replistream/example-consumer-venv, made from
 * requirements.txt on first use and kept while that file is unchanged.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { partitionOfKey } from '../../services/capture/routing.js';
import { createKafka } from '../../services/transport/kafka.js';
import { topicName } from '../../services/transport/topics.js';
import { pipelineNames, redisClient, runCapture, testLogger, until } from '../helpers/pipeline.js';
import { startRedis } from '../helpers/redis-server.js';
import { stack, uniqueName } from '../helpers/stack-env.js';

const ROOT = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..');
const EXAMPLE = join(ROOT, 'examples', 'python-consumer');
const VENV = join(homedir(), '.cache', 'replistream', 'example-consumer-venv');
const MARKER = '.requirements-sha256';
const CONSUME_TIMEOUT_MS = 90_000;

const running = new Set<ChildProcess>();
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const child of running) child.kill('SIGKILL');
  running.clear();
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

interface Ran {
  /** null: killed at the timeout */
  code: number | null;
  out: string;
  err: string;
}

/**
 * Runs a program to its end, killed after `timeoutMs` (then `code` is null). With `beforeKill`,
 * that signal goes first and the kill two seconds later: time for the program to say where it is.
 */
function run(cmd: string, args: string[], opts: { timeoutMs: number; cwd?: string; env?: NodeJS.ProcessEnv; beforeKill?: NodeJS.Signals }): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(child);
    let out = '';
    let err = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (err += d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      if (!opts.beforeKill) {
        child.kill('SIGKILL');
        return;
      }
      child.kill(opts.beforeKill);
      setTimeout(() => child.kill('SIGKILL'), 2_000);
    }, opts.timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      running.delete(child);
      reject(new Error(`${cmd}: ${e.message}`));
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      running.delete(child);
      resolve({ code: timedOut ? null : code, out, err });
    });
  });
}

/**
 * The venv's python, installing requirements.txt into a fresh venv when the cached one was made
 * from another version of it. Built beside the final place and renamed into it, so an interrupted
 * install never leaves a venv that looks ready.
 */
async function examplePython(): Promise<string> {
  const requirements = readFileSync(join(EXAMPLE, 'requirements.txt'));
  const digest = createHash('sha256').update(requirements).digest('hex');
  const python = join(VENV, 'bin', 'python');
  const marker = join(VENV, MARKER);
  if (existsSync(python) && existsSync(marker) && readFileSync(marker, 'utf8') === digest) return python;
  mkdirSync(join(VENV, '..'), { recursive: true });
  const tmp = `${VENV}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  try {
    const venv = await run('python3', ['-m', 'venv', tmp], { timeoutMs: 120_000 });
    if (venv.code !== 0) {
      throw new Error(`python3 -m venv failed (on Debian: apt-get install python3-venv python3-pip):\n${venv.err}${venv.out}`);
    }
    const pip = await run(join(tmp, 'bin', 'python'), ['-m', 'pip', 'install', '--disable-pip-version-check', '--no-input', '-q', '-r', join(EXAMPLE, 'requirements.txt')], {
      timeoutMs: 400_000,
    });
    if (pip.code !== 0) throw new Error(`pip install -r examples/python-consumer/requirements.txt failed (exit ${pip.code}):\n${pip.err.slice(-3000)}`);
    writeFileSync(join(tmp, MARKER), digest);
    rmSync(VENV, { recursive: true, force: true });
    renameSync(tmp, VENV);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return python;
}

/**
 * The example consumer run over `topic` to its end, and `detail`, its run for failure messages:
 * the exit, stdout, and stderr with its progress lines (the last one says where a stalled run
 * stopped) and, when it had to be killed, the stack of each of its threads.
 */
async function consumeToEnd(python: string, topic: string): Promise<Ran & { detail: string }> {
  const env = { ...process.env, REPLISTREAM_KAFKA: stack().kafka, REPLISTREAM_REGISTRY: stack().registry };
  // -u: unbuffered, so what it printed before a hang shows in the failure; SIGUSR1 before the kill:
  // it prints where each of its threads is (faulthandler), even when stuck in the client's C code
  const r = await run(python, ['-u', join(EXAMPLE, 'consume.py'), topic, '--to-end'], { timeoutMs: CONSUME_TIMEOUT_MS, env, cwd: EXAMPLE, beforeKill: 'SIGUSR1' });
  const ended = r.code === null ? `no exit in ${CONSUME_TIMEOUT_MS / 1000} s: killed (stacks at the end of stderr)` : `exit ${r.code}`;
  return { ...r, detail: `${ended}\n--- stdout\n${r.out}\n--- stderr\n${r.err}` };
}

/** Every record of `topic` once more at the end of its partition, as a capture that re-sent them would. */
async function writeEveryRecordAgain(topic: string): Promise<number> {
  const kafka = createKafka({ brokers: stack().kafka, clientId: 'example-consumer-test', logger: testLogger });
  const admin = kafka.admin();
  const consumer = kafka.consumer({ groupId: uniqueName('example-copy') });
  const producer = kafka.producer();
  try {
    await admin.connect();
    const ends = new Map((await admin.fetchTopicOffsets(topic)).map((o) => [o.partition, BigInt(o.high)]));
    const remaining = new Set([...ends].filter(([, high]) => high > 0n).map(([p]) => p));
    const records: Array<{ partition: number; offset: bigint; value: Buffer; headers: Record<string, Buffer> }> = [];
    if (remaining.size > 0) {
      await consumer.connect();
      await consumer.subscribe({ topics: [topic], fromBeginning: true });
      await new Promise<void>((resolve, reject) => {
        consumer
          .run({
            eachMessage: async ({ partition, message }) => {
              const offset = BigInt(message.offset);
              if (offset >= ends.get(partition)!) return;
              const headers: Record<string, Buffer> = {};
              for (const [k, v] of Object.entries(message.headers ?? {})) if (Buffer.isBuffer(v)) headers[k] = v;
              records.push({ partition, offset, value: message.value!, headers });
              if (offset + 1n >= ends.get(partition)!) {
                remaining.delete(partition);
                if (remaining.size === 0) resolve();
              }
            },
          })
          .catch(reject);
      });
    }
    records.sort((a, b) => a.partition - b.partition || (a.offset < b.offset ? -1 : 1));
    await producer.connect();
    await producer.send({ topic, messages: records.map((r) => ({ partition: r.partition, value: r.value, headers: r.headers })) });
    return records.length;
  } finally {
    await consumer.disconnect().catch(() => {});
    await producer.disconnect().catch(() => {});
    await admin.disconnect().catch(() => {});
  }
}

describe('the example consumer (Python, confluent-kafka)', () => {
  it('prints the snapshot keys and the commands of a topic once each, a multi-partition MSET once', async () => {
    const pythonReady = examplePython(); // meanwhile: the source, capture and the writes
    pythonReady.catch(() => {});

    const source = await startRedis({});
    cleanups.push(() => source.stop());
    const src = redisClient(source.url);
    cleanups.push(async () => src.disconnect());
    await src.set('snap:s', 'one');
    await src.hset('snap:h', 'f1', 'v1', 'f2', 'v2');
    await src.rpush('snap:l', 'x', 'y', 'z');

    const names = pipelineNames();
    // snapshot-format both: the example prints the typed values (element counts)
    const capture = await runCapture(source.url, names, { dbs: [0], partitions: 4, snapshotFormat: 'both' });
    let captureRunning = true;
    const stopCapture = async () => {
      if (captureRunning) await capture.stop();
      captureRunning = false;
    };
    cleanups.push(stopCapture);
    await until(() => capture.service.stats.state === 'synchronizing', 60_000, 'capture to finish its full sync');

    // a and b live in different partitions: MSET a 1 b 2 is written to both (a barrier)
    expect(partitionOfKey(Buffer.from('a'), 4)).not.toBe(partitionOfKey(Buffer.from('b'), 4));
    await src.set('cmd:s', 'hello world');
    await src.incr('cmd:n');
    await src.mset('a', '1', 'b', '2');
    await src.del('snap:s');
    const offset = Number(/master_repl_offset:(\d+)/.exec(await src.info('replication'))![1]);
    await until(() => capture.service.stats.durableOffset >= offset, 30_000, 'the writes durable in Kafka');
    await stopCapture();

    const topic = topicName(names.topicPrefix, names.sourceId, 0);
    const copied = await writeEveryRecordAgain(topic);
    expect(copied).toBeGreaterThan(4);

    const python = await pythonReady;
    const r = await consumeToEnd(python, topic);
    const detail = r.detail;
    expect(r.code, detail).toBe(0);
    const lines = r.out.trim().split('\n');
    const matching = (re: RegExp) => lines.filter((l) => re.test(l));

    expect(matching(/^snapshot-begin db=0 p=\d pos=1:\d+:0 epoch=1 .*\(new: replaces every earlier state\)$/), detail).toHaveLength(1);
    expect(matching(/^snapshot-key db=0 p=\d pos=1:\d+:\d+ key=snap:s type=string /), detail).toHaveLength(1);
    expect(matching(/^snapshot-key db=0 p=\d pos=1:\d+:\d+ key=snap:h type=hash .* elements=2$/), detail).toHaveLength(1);
    expect(matching(/^snapshot-key db=0 p=\d pos=1:\d+:\d+ key=snap:l type=list .* elements=3$/), detail).toHaveLength(1);
    expect(matching(/^snapshot-end db=0 p=\d pos=1:\d+:\d+ keys=\d+$/), detail).toHaveLength(1);
    expect(matching(/^command db=0 p=\d pos=1:\d+:0 SET cmd:s "hello world"$/i), detail).toHaveLength(1);
    expect(matching(/^command db=0 p=\d pos=1:\d+:0 INCR cmd:n$/i), detail).toHaveLength(1);
    expect(matching(/^command db=0 p=\d pos=1:\d+:0 DEL snap:s$/i), detail).toHaveLength(1);
    const mset = matching(/MSET/i); // the name as the client sent it (ioredis: lower case)
    expect(mset, detail).toHaveLength(1);
    const owner = Math.min(partitionOfKey(Buffer.from('a'), 4), partitionOfKey(Buffer.from('b'), 4));
    expect(mset[0]).toMatch(new RegExp(`^command db=0 p=${owner} pos=1:\\d+:0 barrier=0:\\d,0:\\d MSET a 1 b 2$`, 'i'));
    expect(matching(/^heartbeat/), detail).toHaveLength(0); // heartbeats are lag, not changes (shown with --heartbeats)
    // nothing else (capture's heartbeat key is in the snapshot when its first write came before the fork)
    const heartbeatKey = matching(/^snapshot-key .* key=REPLISTREAM_TIMESTAMP_HEARTBEAT /).length;
    expect(heartbeatKey).toBeLessThanOrEqual(1);
    expect(matching(new RegExp(`^snapshot-end .* keys=${3 + heartbeatKey}$`)), detail).toHaveLength(1);
    expect(lines, detail).toHaveLength(9 + heartbeatKey);
    // the copies written again were recognised by position, the MSET's second copy as a marker
    expect(r.err, detail).toMatch(/summary: .*duplicates=[1-9]\d* .*barrier-copies=1 pieces-discarded=0/);
  }, 600_000);

  it('rebuilds keys and commands split over records (pieces, one value bigger than a record) before printing them once', async () => {
    const pythonReady = examplePython();
    pythonReady.catch(() => {});
    const source = await startRedis({});
    cleanups.push(() => source.stop());
    const src = redisClient(source.url);
    cleanups.push(async () => src.disconnect());
    const items = Array.from({ length: 200 }, (_, i) => `item-${String(i).padStart(3, '0')}-${'x'.repeat(40)}`);
    await src.rpush('snap:big', ...items);
    await src.set('snap:huge', 'h'.repeat(10_000));

    const names = pipelineNames();
    // records of at most 4 kB: the 10 kB list and the 10 kB strings each take several
    const capture = await runCapture(source.url, names, { dbs: [0], partitions: 4, maxRecordBytes: 4096, noHeartbeat: true, snapshotFormat: 'both' });
    let captureRunning = true;
    const stopCapture = async () => {
      if (captureRunning) await capture.stop();
      captureRunning = false;
    };
    cleanups.push(stopCapture);
    await until(() => capture.service.stats.state === 'synchronizing', 60_000, 'capture to finish its full sync');
    await src.rpush('cmd:big', ...items);
    await src.set('cmd:huge', 'c'.repeat(10_000));
    const offset = Number(/master_repl_offset:(\d+)/.exec(await src.info('replication'))![1]);
    await until(() => capture.service.stats.durableOffset >= offset, 30_000, 'the writes durable in Kafka');
    await stopCapture();

    const topic = topicName(names.topicPrefix, names.sourceId, 0);
    const python = await pythonReady;
    const r = await consumeToEnd(python, topic);
    const detail = r.detail;
    expect(r.code, detail).toBe(0);
    const lines = r.out.trim().split('\n');
    const matching = (re: RegExp) => lines.filter((l) => re.test(l));
    expect(matching(/^snapshot-key .* key=snap:big type=list .* elements=200$/), detail).toHaveLength(1);
    expect(matching(/^snapshot-key .* key=snap:huge type=string .* bytes=10000$/), detail).toHaveLength(1);
    // 200 elements and the name and key, all of them: the first 12 shown
    expect(matching(new RegExp(`^command .* rpush cmd:big ${items.slice(0, 10).join(' ')} …\\(\\+190 args\\)$`, 'i')), detail).toHaveLength(1);
    // the 10,000-byte value, rebuilt from slices: the first 120 bytes shown
    expect(matching(new RegExp(`^command .* set cmd:huge ${'c'.repeat(120)}…\\(\\+9880B\\)$`, 'i')), detail).toHaveLength(1);
    expect(lines, detail).toHaveLength(6); // snapshot-begin, 2 keys, snapshot-end, 2 commands
    expect(r.err, detail).toMatch(/summary: .*duplicates=0 barrier-copies=0 pieces-discarded=0/);
    const events = Number(/events=(\d+)/.exec(r.err)![1]);
    expect(events, detail).toBeGreaterThan(4 * 2 + 2 + 2 + 4); // the pieces were events of their own
  }, 600_000);
});
