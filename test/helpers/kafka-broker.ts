/**
 * A private Kafka broker (KRaft, one node, PLAINTEXT on loopback) for a test that takes Kafka away:
 * its own ports and directory, so killing it never disturbs the shared stack's broker. It runs the
 * stack's Kafka jars (already cached by `npm run stack -- up`). `kill9()` and `restart()` keep the
 * log directory, so what was committed before a kill is there after the restart.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kafkaAnswers, kafkaLibs, singleNodeKraftProperties, stackLayout } from '../../services/stack/stack.js';
import { freePort } from './redis-server.js';

export interface KafkaBroker {
  /** `127.0.0.1:port`, for the `kafka` setting. */
  brokers: string;
  port: number;
  kill9(): Promise<void>;
  /** Starts it again on the same ports and data (after `kill9`). */
  restart(): Promise<void>;
  /** Kills it and removes its directory. */
  stop(): Promise<void>;
  log(): string;
}

export async function startKafkaBroker(timeoutMs = 120_000): Promise<KafkaBroker> {
  const port = await freePort();
  const controllerPort = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'replistream-kafka-'));
  const props = join(dir, 'server.properties');
  writeFileSync(
    props,
    singleNodeKraftProperties({ port, controllerPort, dataDir: join(dir, 'data'), offsetsPartitions: 2 }),
  );
  const log4j = join(dir, 'log4j2.properties');
  writeFileSync(
    log4j,
    ['rootLogger.level=WARN', 'rootLogger.appenderRef.out.ref=out', 'appender.out.type=Console', 'appender.out.name=out',
      'appender.out.layout.type=PatternLayout', 'appender.out.layout.pattern=%p %m%n', ''].join('\n'),
  );
  // small and single-threaded GC: tests share two cores with the stack's own broker
  const jvm = ['-Xms128m', '-Xmx384m', '-XX:+UseSerialGC', '-XX:TieredStopAtLevel=1', `-Dlog4j2.configurationFile=${log4j}`, '-cp', `${kafkaLibs(stackLayout())}/*`];
  mkdirSync(join(dir, 'data'));
  const format = spawnSync('java', [...jvm, 'kafka.tools.StorageTool', 'format', '-t', 'cmVwbGlzdHJlYW0tdGVzdDE', '-c', props], { encoding: 'utf8' });
  if (format.status !== 0) throw new Error(`kafka storage format failed: ${format.stdout}${format.stderr}`);

  let child: ChildProcess | null = null;
  let output = '';
  const launch = async () => {
    const c = spawn('java', [...jvm, 'kafka.Kafka', props], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    const keep = (d: Buffer) => (output = (output + d.toString()).slice(-20_000));
    c.stdout!.on('data', keep);
    c.stderr!.on('data', keep);
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (c.exitCode !== null) throw new Error(`the private Kafka broker exited (${c.exitCode}):\n${output}`);
      if (await kafkaAnswers(port)) return;
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`the private Kafka broker on port ${port} did not answer within ${timeoutMs / 1000} s:\n${output}`);
  };
  const kill9 = async () => {
    const c = child as ChildProcess | null;
    if (c && c.exitCode === null && c.signalCode === null) {
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGKILL');
      await exited;
    }
  };
  try {
    await launch();
  } catch (err) {
    await kill9();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    brokers: `127.0.0.1:${port}`,
    port,
    kill9,
    restart: async () => {
      await kill9();
      await launch();
    },
    stop: async () => {
      await kill9();
      rmSync(dir, { recursive: true, force: true });
    },
    log: () => output,
  };
}
