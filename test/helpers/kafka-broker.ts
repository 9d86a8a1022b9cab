/**
 * A private Kafka broker (KRaft, one node, PLAINTEXT on loopback) for a test that takes Kafka away:
 * its own ports and directory, so killing it never disturbs the shared stack's broker. It runs the
 * stack's Kafka jars (already cached by `npm run stack -- up`). `kill9()` and `restart()` keep the
 * log directory, so what was committed before a kill is there after the restart.
 *
 * With `proxied: true` the broker sits behind a fault proxy (fault-proxy.ts) and advertises the
 * proxy's port in its metadata: clients learn the broker's address from that metadata and would
 * otherwise connect around the proxy after their first request.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kafkaAnswers, kafkaLibs, singleNodeKraftProperties, stackLayout } from '../../services/stack/stack.js';
import { startFaultProxy, type FaultProxy } from './fault-proxy.js';
import { freePort } from './redis-server.js';

export interface KafkaBroker {
  /** `127.0.0.1:port`, for the `kafka` setting (the proxy's, when proxied). */
  brokers: string;
  port: number;
  /** The proxy every client goes through (`proxied: true`), else null. */
  proxy: FaultProxy | null;
  kill9(): Promise<void>;
  /** Starts it again on the same ports and data (after `kill9`). */
  restart(): Promise<void>;
  /** Kills it and removes its directory. */
  stop(): Promise<void>;
  log(): string;
}

export async function startKafkaBroker(timeoutMs = 120_000, opts: { proxied?: boolean } = {}): Promise<KafkaBroker> {
  const port = await freePort();
  const controllerPort = await freePort();
  const proxy = opts.proxied ? await startFaultProxy(`127.0.0.1:${port}`) : null;
  const dir = mkdtempSync(join(tmpdir(), 'replistream-kafka-'));
  const props = join(dir, 'server.properties');
  let properties = singleNodeKraftProperties({ port, controllerPort, dataDir: join(dir, 'data'), offsetsPartitions: 2 });
  if (proxy) properties = properties.replace(/^advertised\.listeners=.*$/m, `advertised.listeners=PLAINTEXT://127.0.0.1:${proxy.port}`);
  writeFileSync(props, properties);
  const log4j = join(dir, 'log4j2.properties');
  writeFileSync(
    log4j,
    ['rootLogger.level=WARN', 'rootLogger.appenderRef.out.ref=out', 'appender.out.type=Console', 'appender.out.name=out',
      'appender.out.layout.type=PatternLayout', 'appender.out.layout.pattern=%p %m%n', ''].join('\n'),
  );
  // small and single-threaded GC: tests share two cores with the stack's own broker; snappy's
  // native library is unpacked into the broker's folder (a killed JVM leaves it behind otherwise)
  const jvm = ['-Xms128m', '-Xmx384m', '-XX:+UseSerialGC', '-XX:TieredStopAtLevel=1', `-Dlog4j2.configurationFile=${log4j}`, `-Dorg.xerial.snappy.tempdir=${dir}`, '-cp', `${kafkaLibs(stackLayout())}/*`];
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
    await proxy?.close();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    brokers: proxy ? proxy.address : `127.0.0.1:${port}`,
    port,
    proxy,
    kill9,
    restart: async () => {
      await kill9();
      await launch();
    },
    stop: async () => {
      await kill9();
      await proxy?.close();
      rmSync(dir, { recursive: true, force: true });
    },
    log: () => output,
  };
}
