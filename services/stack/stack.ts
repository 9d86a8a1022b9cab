/**
 * The local stack: Apache Kafka (KRaft, single node), a Confluent-API schema registry (Apicurio)
 * and Redis servers, all on loopback, all from package registries (Maven Central, Debian).
 *
 * Everything downloaded lives in a cache outside git (`~/.cache/replistream` by default);
 * everything started has a pid file in the stack's state directory, so `down` stops exactly what
 * `up` started and `up` is idempotent (a part that already answers is left alone).
 */
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync, closeSync } from 'node:fs';
import { connect } from 'node:net';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import { parseServerKind, serverArgs, serverBinary, type ServerKind } from './servers.js';

export const KAFKA_VERSION = '4.1.1';
const LOG4J_VERSION = '2.24.3';
const SLF4J_VERSION = '2.0.17';
/** Apicurio 3.x needs Java 21+; on a machine with only Java 17 the 2.6 line (Java 11+) is used. */
const APICURIO_MODERN = '3.3.3';
const APICURIO_JAVA17 = '2.6.13.Final';

export interface StackLayout {
  cacheDir: string;
  stateDir: string;
  kafkaPort: number;
  controllerPort: number;
  registryPort: number;
  sourcePort: number;
  destinationPort: number;
  clusterPorts: number[];
}

export function stackLayout(env = process.env): StackLayout {
  const cacheDir = env.REPLISTREAM_CACHE_DIR ?? join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'replistream');
  const base = Number(env.REPLISTREAM_STACK_PORT_BASE ?? 19000);
  return {
    cacheDir,
    stateDir: join(cacheDir, 'stack'),
    kafkaPort: base + 92,
    controllerPort: base + 93,
    registryPort: base + 81,
    sourcePort: base + 379,
    destinationPort: base + 380,
    clusterPorts: [base + 701, base + 702, base + 703],
  };
}

export interface Part {
  name: string;
  port: number;
  /** Starts the process (detached) and returns its pid. */
  start(): number;
  ready(): Promise<boolean>;
  logFile: string;
  /** Redis instances: the server asked for, and the one the running instance was started with. */
  server?: ServerKind;
  running?(): string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function run(cmd: string, args: string[], opts: { cwd?: string } = {}): void {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.status}):\n${(r.stdout + r.stderr).split('\n').slice(-30).join('\n')}`);
  }
}

function javaMajor(javaBin: string): number {
  const r = spawnSync(javaBin, ['-version'], { encoding: 'utf8' });
  const m = /version "(\d+)(?:\.(\d+))?/.exec(r.stderr ?? '');
  if (!m) return 0;
  return m[1] === '1' ? Number(m[2]) : Number(m[1]);
}

/** A Java for Apicurio 3 (21+), looked up in JAVA_HOME, REPLISTREAM_REGISTRY_JAVA and /usr/lib/jvm. */
function findModernJava(): string | null {
  const candidates: string[] = [];
  if (process.env.REPLISTREAM_REGISTRY_JAVA) candidates.push(process.env.REPLISTREAM_REGISTRY_JAVA);
  if (process.env.JAVA_HOME) candidates.push(join(process.env.JAVA_HOME, 'bin', 'java'));
  if (existsSync('/usr/lib/jvm')) {
    for (const d of readdirSync('/usr/lib/jvm').sort().reverse()) candidates.push(join('/usr/lib/jvm', d, 'bin', 'java'));
  }
  candidates.push('java');
  for (const c of candidates) {
    if ((c === 'java' || existsSync(c)) && javaMajor(c) >= 21) return c;
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Programs the stack runs, from Debian's archive

/** A program on PATH, or null. `command -v` semantics without a shell. */
export function onPath(program: string, pathEnv = process.env.PATH ?? ''): string | null {
  for (const dir of pathEnv.split(delimiter)) {
    if (!dir) continue;
    const file = join(dir, program);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      /* not here */
    }
  }
  return null;
}

/** The Debian packages missing for the programs `up` runs (Maven and Java only until Kafka is cached). */
export function missingPackages(layout: StackLayout, env: NodeJS.ProcessEnv = process.env): string[] {
  const path = env.PATH ?? '';
  const missing: string[] = [];
  if (!env.REPLISTREAM_REDIS_SERVER_BIN && !onPath('redis-server', path)) missing.push('redis-server');
  if (!onPath('redis-cli', path)) missing.push('redis-tools');
  const needMaven = !existsSync(join(layout.cacheDir, `kafka-${KAFKA_VERSION}`, 'libs', `kafka_2.13-${KAFKA_VERSION}.jar`)) && !onPath('mvn', path);
  if (needMaven) missing.push('maven'); // brings a Java runtime with it
  else if (!onPath('java', path)) missing.push('default-jre-headless');
  return missing;
}

/**
 * Installs what is missing with apt-get when it can (root on a Debian-like machine, where a fresh
 * checkout otherwise stops at the first redis-server it cannot start); anywhere else stops with
 * the exact command that would.
 */
export function ensurePrograms(
  layout: StackLayout,
  opts: { env?: NodeJS.ProcessEnv; root?: boolean; log?: (line: string) => void } = {},
): void {
  const env = opts.env ?? process.env;
  const missing = missingPackages(layout, env);
  if (missing.length === 0) return;
  const root = opts.root ?? process.getuid?.() === 0;
  const aptGet = onPath('apt-get', env.PATH ?? '');
  const command = `${root ? '' : 'sudo '}apt-get update && ${root ? '' : 'sudo '}apt-get install -y --no-install-recommends ${missing.join(' ')}`;
  if (!root || !aptGet || env.REPLISTREAM_STACK_NO_INSTALL === '1') {
    throw new Error(
      `stack: ${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not installed (needed to run the local stack). Install with:\n  ${command}` +
        (aptGet ? '' : '\n(or the same packages with your system\'s package manager)'),
    );
  }
  (opts.log ?? ((l) => process.stderr.write(l)))(`stack: installing ${missing.join(' ')} from the Debian archive (apt-get)\n`);
  const aptEnv = { ...env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [['update', '-qq'], ['install', '-y', '-qq', '--no-install-recommends', ...missing]]) {
    const r = spawnSync(aptGet, args, { env: aptEnv, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
    if (r.status !== 0) {
      throw new Error(`stack: apt-get ${args[0]} failed (exit ${r.status}); run it yourself:\n  ${command}\n${(r.stdout + r.stderr).split('\n').slice(-15).join('\n')}`);
    }
  }
  const still = missingPackages(layout, env);
  if (still.length) throw new Error(`stack: installed ${missing.join(' ')} but ${still.join(', ')} still not found on PATH (${env.PATH})`);
}

// ---------------------------------------------------------------------------------------------
// Downloads (cached)

export function kafkaLibs(layout: StackLayout): string {
  const home = join(layout.cacheDir, `kafka-${KAFKA_VERSION}`);
  const libs = join(home, 'libs');
  if (existsSync(join(libs, `kafka_2.13-${KAFKA_VERSION}.jar`))) return libs;
  mkdirSync(home, { recursive: true });
  // Only the broker and a log4j2 binding: the broker's own dependency tree, nothing else.
  writeFileSync(
    join(home, 'pom.xml'),
    `<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>local.replistream</groupId><artifactId>kafka-broker</artifactId><version>1</version>
<dependencies>
<dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>${KAFKA_VERSION}</version></dependency>
<dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>${SLF4J_VERSION}</version></dependency>
<dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>${LOG4J_VERSION}</version></dependency>
<dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>${LOG4J_VERSION}</version></dependency>
</dependencies></project>\n`,
  );
  process.stderr.write(`stack: fetching Apache Kafka ${KAFKA_VERSION} from Maven Central into ${libs}\n`);
  run('mvn', ['-q', '-B', 'dependency:copy-dependencies', '-DoutputDirectory=libs', '-DincludeScope=runtime'], { cwd: home });
  return libs;
}

export function registryHome(layout: StackLayout): { home: string; java: string; version: string } {
  const modern = findModernJava();
  const version = modern ? APICURIO_MODERN : APICURIO_JAVA17;
  const java = modern ?? 'java';
  const home = join(layout.cacheDir, `apicurio-${version}`);
  const runner = version.startsWith('2.') ? join(home, 'apicurio-registry-app-' + version + '-runner.jar') : join(home, 'quarkus-run.jar');
  if (existsSync(join(home, '.complete'))) return { home, java, version };
  rmSync(home, { recursive: true, force: true });
  mkdirSync(home, { recursive: true });
  process.stderr.write(`stack: fetching Apicurio Registry ${version} from Maven Central into ${home}\n`);
  run('mvn', ['-q', '-B', 'dependency:copy', `-Dartifact=io.apicurio:apicurio-registry-app:${version}:tar.gz:all`, `-DoutputDirectory=${home}`], {
    cwd: home,
  });
  const archive = readdirSync(home).find((f) => f.endsWith('.tar.gz'));
  if (!archive) throw new Error(`Apicurio archive not found in ${home}`);
  run('tar', ['xzf', archive], { cwd: home });
  rmSync(join(home, archive));
  if (!existsSync(runner) && !existsSync(join(home, 'quarkus-run.jar'))) {
    throw new Error(`Apicurio ${version}: no runnable jar found in ${home}`);
  }
  writeFileSync(join(home, '.complete'), version);
  return { home, java, version };
}

// ---------------------------------------------------------------------------------------------
// Readiness probes

function tcpExchange(port: number, send: string, timeoutMs = 1000): Promise<string | null> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    let got = '';
    const done = (v: string | null) => {
      sock.destroy();
      resolve(v);
    };
    sock.setTimeout(timeoutMs, () => done(null));
    sock.once('error', () => done(null));
    sock.once('connect', () => (send ? sock.write(send) : done('')));
    sock.on('data', (d) => {
      got += d.toString();
      if (got.includes('\r\n')) done(got);
    });
  });
}

export async function redisAnswers(port: number): Promise<boolean> {
  return (await tcpExchange(port, 'PING\r\n'))?.startsWith('+PONG') ?? false;
}

async function httpOk(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    return res.ok;
  } catch {
    return false;
  }
}

/** Kafka answers when a metadata request succeeds (not merely when the port is open). */
export async function kafkaAnswers(port: number): Promise<boolean> {
  // kafkajs is CommonJS: its exports object is the default export (also in the bundle, where a
  // dynamic import of CommonJS has no named exports)
  const { Kafka, logLevel } = (await import('kafkajs')).default;
  const kafka = new Kafka({ brokers: [`127.0.0.1:${port}`], logLevel: logLevel.NOTHING, retry: { retries: 0 }, connectionTimeout: 1000 });
  const admin = kafka.admin();
  try {
    await admin.connect();
    const cluster = await admin.describeCluster();
    return cluster.brokers.length > 0 && cluster.controller !== null;
  } catch {
    return false;
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------------
// Parts

function spawnDetached(name: string, layout: StackLayout, cmd: string, args: string[], cwd: string): number {
  const logFile = join(layout.stateDir, `${name}.log`);
  const fd = openSync(logFile, 'a');
  const child = spawn(cmd, args, { cwd, detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  child.unref();
  if (!child.pid) throw new Error(`${name}: could not start ${cmd}`);
  writeFileSync(join(layout.stateDir, `${name}.pid`), String(child.pid));
  return child.pid;
}

function redisPart(name: string, port: number, layout: StackLayout, extra: string[] = [], kind: ServerKind = 'redis-7.0'): Part {
  const dir = join(layout.stateDir, name);
  const kindFile = join(layout.stateDir, `${name}.server`);
  return {
    name,
    port,
    server: kind,
    logFile: join(layout.stateDir, `${name}.log`),
    start() {
      const bin = serverBinary(kind, layout.cacheDir); // fetched on first use (6.2, Valkey)
      mkdirSync(dir, { recursive: true });
      const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no',
        ...serverArgs(kind), '--daemonize', 'no', '--repl-backlog-size', '64mb', ...extra];
      writeFileSync(kindFile, kind);
      return spawnDetached(name, layout, bin, args, dir);
    },
    ready: () => redisAnswers(port),
    running: () => (existsSync(kindFile) ? readFileSync(kindFile, 'utf8').trim() : 'redis-7.0'),
  };
}

/** Which server each Redis instance of the stack runs: options first, then REPLISTREAM_<ROLE>_SERVER. */
export interface StackServers {
  source?: ServerKind;
  destination?: ServerKind;
  cluster?: ServerKind;
}

function serverFor(role: keyof StackServers, servers: StackServers, env = process.env): ServerKind {
  const name = `REPLISTREAM_${role.toUpperCase()}_SERVER`;
  return servers[role] ?? parseServerKind(env[name], name);
}

/**
 * server.properties of a one-node KRaft broker on loopback (the stack's, and tests' private ones).
 * The services create their topics with the partitions and retention they need: no auto-creation.
 */
export function singleNodeKraftProperties(o: { port: number; controllerPort: number; dataDir: string; offsetsPartitions: number }): string {
  return [
    'process.roles=broker,controller',
    'node.id=1',
    `controller.quorum.voters=1@127.0.0.1:${o.controllerPort}`,
    `listeners=PLAINTEXT://127.0.0.1:${o.port},CONTROLLER://127.0.0.1:${o.controllerPort}`,
    `advertised.listeners=PLAINTEXT://127.0.0.1:${o.port}`,
    'controller.listener.names=CONTROLLER',
    'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    `log.dirs=${o.dataDir}`,
    'auto.create.topics.enable=false',
    `offsets.topic.replication.factor=1`,
    `offsets.topic.num.partitions=${o.offsetsPartitions}`,
    'transaction.state.log.replication.factor=1',
    'transaction.state.log.min.isr=1',
    'group.initial.rebalance.delay.ms=0',
    'num.partitions=1',
    // The log cleaner (the positions topics are compacted) keeps a dedupe buffer of this size on
    // the heap for the broker's life: 128 MB by default, most of a small broker's old generation.
    // With it there, G1 kept starting concurrent marking cycles: in a 1M-SET burst they were
    // more than half of the broker's CPU. A positions topic holds a few keys per partition.
    'log.cleaner.dedupe.buffer.size=16777216',
    '',
  ].join('\n');
}

function kafkaPart(layout: StackLayout): Part {
  const dir = join(layout.stateDir, 'kafka');
  return {
    name: 'kafka',
    port: layout.kafkaPort,
    logFile: join(layout.stateDir, 'kafka.log'),
    start() {
      const libs = kafkaLibs(layout);
      mkdirSync(dir, { recursive: true });
      const props = join(dir, 'server.properties');
      writeFileSync(
        props,
        singleNodeKraftProperties({ port: layout.kafkaPort, controllerPort: layout.controllerPort, dataDir: join(dir, 'data'), offsetsPartitions: 4 }),
      );
      const log4j = join(dir, 'log4j2.properties');
      writeFileSync(
        log4j,
        ['rootLogger.level=WARN', 'rootLogger.appenderRef.out.ref=out', 'appender.out.type=Console', 'appender.out.name=out',
          'appender.out.layout.type=PatternLayout', 'appender.out.layout.pattern=[%d] %p %m (%c)%n',
          'logger.kafka.name=kafka', 'logger.kafka.level=INFO', ''].join('\n'),
      );
      const cp = `${libs}/*`;
      // snappy's native library is unpacked into the broker's folder, not the machine's /tmp
      const jvm = ['-Xms256m', '-Xmx768m', '-XX:+UseG1GC', `-Dlog4j2.configurationFile=${log4j}`, `-Dorg.xerial.snappy.tempdir=${dir}`, '-cp', cp];
      if (!existsSync(join(dir, 'data', 'meta.properties'))) {
        run('java', [...jvm, 'kafka.tools.StorageTool', 'format', '-t', 'cmVwbGlzdHJlYW0tbG9jYQ', '-c', props, '--ignore-formatted'], { cwd: dir });
      }
      return spawnDetached('kafka', layout, 'java', [...jvm, 'kafka.Kafka', props], dir);
    },
    ready: () => kafkaAnswers(layout.kafkaPort),
  };
}

function registryPart(layout: StackLayout): Part {
  return {
    name: 'registry',
    port: layout.registryPort,
    logFile: join(layout.stateDir, 'registry.log'),
    start() {
      const { home, java, version } = registryHome(layout);
      const jar = existsSync(join(home, 'quarkus-run.jar'))
        ? join(home, 'quarkus-run.jar')
        : join(home, `apicurio-registry-app-${version}-runner.jar`);
      // Quarkus also opens a management port (9000 by default): keep it on loopback, beside ours.
      const args = ['-Xms128m', '-Xmx512m', `-Dquarkus.http.port=${layout.registryPort}`, '-Dquarkus.http.host=127.0.0.1',
        `-Dquarkus.management.port=${layout.registryPort + 1}`, '-Dquarkus.management.host=127.0.0.1',
        '-Dquarkus.log.level=WARN', '-jar', jar];
      return spawnDetached('registry', layout, java, args, home);
    },
    ready: () => registryAnswers(layout.registryPort),
  };
}

/**
 * The registry answers a read and a registration. Its first registration after a start is much
 * slower than later ones (Avro parsing and storage initialised on first use); made here, it does
 * not land in a service's start. Why: in one CI run a capture started next to the first tests got
 * no HTTP answer to its registration for 30 s. Registering the same schema again is a no-op.
 */
async function registryAnswers(port: number): Promise<boolean> {
  const base = `http://127.0.0.1:${port}/apis/ccompat/v7`;
  if (!(await httpOk(`${base}/subjects`))) return false;
  try {
    const schema = JSON.stringify({ type: 'record', name: 'StackReady', namespace: 'replistream.stack', fields: [{ name: 'at', type: 'long' }] });
    const res = await fetch(`${base}/subjects/replistream-stack-ready/versions`, {
      method: 'POST',
      headers: { 'content-type': 'application/vnd.schemaregistry.v1+json' },
      body: JSON.stringify({ schema }),
      signal: AbortSignal.timeout(10_000),
    });
    return res.ok;
  } catch {
    return false;
  }
}

export function stackParts(layout: StackLayout, opts: { cluster?: boolean; servers?: StackServers } = {}): Part[] {
  const servers = opts.servers ?? {};
  const parts = [
    kafkaPart(layout),
    registryPart(layout),
    redisPart('redis-source', layout.sourcePort, layout, [], serverFor('source', servers)),
    redisPart('redis-destination', layout.destinationPort, layout, [], serverFor('destination', servers)),
  ];
  const clusterMarker = join(layout.stateDir, 'cluster.enabled');
  if (opts.cluster || existsSync(clusterMarker)) {
    const kind = serverFor('cluster', servers);
    layout.clusterPorts.forEach((p, i) =>
      parts.push(redisPart(`redis-cluster-${i + 1}`, p, layout, ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf'], kind)),
    );
  }
  return parts;
}

export function pidOf(layout: StackLayout, name: string): number | null {
  const f = join(layout.stateDir, `${name}.pid`);
  if (!existsSync(f)) return null;
  const pid = Number(readFileSync(f, 'utf8').trim());
  return alive(pid) ? pid : null;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function tail(file: string, lines = 25): string {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n') : '(no log)';
}

export async function up(opts: { cluster?: boolean; timeoutMs?: number; servers?: StackServers } = {}): Promise<void> {
  const layout = stackLayout();
  mkdirSync(layout.stateDir, { recursive: true });
  if (opts.cluster) writeFileSync(join(layout.stateDir, 'cluster.enabled'), '1');
  const parts = stackParts(layout, opts);
  ensurePrograms(layout);
  // Downloads first (slow once, cached after), so the readiness clock measures startup only.
  kafkaLibs(layout);
  registryHome(layout);
  const started: Part[] = [];
  for (const part of parts) {
    if (await part.ready()) {
      // left alone: say so when it runs another server than the one asked for now
      const running = part.running?.();
      if (part.server && running && running !== part.server) {
        process.stderr.write(`stack: ${part.name} already runs ${running}, not ${part.server}: \`npm run stack -- down\` first to change it\n`);
      }
      continue;
    }
    if (pidOf(layout, part.name)) continue; // starting already (a previous `up` still waiting)
    part.start();
    started.push(part);
  }
  const deadline = Date.now() + (opts.timeoutMs ?? 90_000);
  for (const part of parts) {
    for (;;) {
      if (await part.ready()) break;
      const pid = pidOf(layout, part.name);
      if (!pid) throw new Error(`stack: ${part.name} (port ${part.port}) exited during start. Last lines of ${part.logFile}:\n${tail(part.logFile)}`);
      if (Date.now() > deadline) {
        throw new Error(`stack: ${part.name} (port ${part.port}) did not answer in time. Last lines of ${part.logFile}:\n${tail(part.logFile)}`);
      }
      await sleep(250);
    }
  }
  if (opts.cluster || existsSync(join(layout.stateDir, 'cluster.enabled'))) await ensureClusterFormed(layout);
  if (started.length) process.stderr.write(`stack: started ${started.map((p) => p.name).join(', ')}\n`);
}

async function ensureClusterFormed(layout: StackLayout): Promise<void> {
  const info = await tcpExchange(layout.clusterPorts[0], 'CLUSTER INFO\r\n', 2000);
  if (info && /cluster_state:ok/.test(info)) return;
  run('redis-cli', ['--cluster', 'create', ...layout.clusterPorts.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes']);
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const s = await tcpExchange(layout.clusterPorts[0], 'CLUSTER INFO\r\n', 2000);
    if (s && /cluster_state:ok/.test(s)) return;
    await sleep(200);
  }
  throw new Error('stack: redis cluster did not reach cluster_state:ok');
}

export async function down(): Promise<void> {
  const layout = stackLayout();
  if (!existsSync(layout.stateDir)) return;
  const pids: number[] = [];
  for (const f of readdirSync(layout.stateDir).filter((f) => f.endsWith('.pid'))) {
    const pid = Number(readFileSync(join(layout.stateDir, f), 'utf8').trim());
    if (alive(pid)) {
      try {
        process.kill(-pid, 'SIGTERM'); // the process group: the JVM and anything it forked
      } catch {
        try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ }
      }
      pids.push(pid);
    }
  }
  const deadline = Date.now() + 20_000;
  while (pids.some(alive) && Date.now() < deadline) await sleep(100);
  for (const pid of pids.filter(alive)) {
    try { process.kill(-pid, 'SIGKILL'); } catch { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
  }
  // State (topics, Redis data) goes with the stack: the next `up` starts clean.
  rmSync(layout.stateDir, { recursive: true, force: true });
}

export interface PartStatus { name: string; port: number; pid: number | null; answers: boolean; server?: string }

export async function status(): Promise<PartStatus[]> {
  const layout = stackLayout();
  const parts = stackParts(layout);
  return Promise.all(
    parts.map(async (p) => ({ name: p.name, port: p.port, pid: pidOf(layout, p.name), answers: await p.ready(), ...(p.running ? { server: p.running() } : {}) })),
  );
}

export function stackEnv(): Record<string, string> {
  const l = stackLayout();
  const env: Record<string, string> = {
    REPLISTREAM_KAFKA: `127.0.0.1:${l.kafkaPort}`,
    REPLISTREAM_REGISTRY: `http://127.0.0.1:${l.registryPort}/apis/ccompat/v7`,
    REPLISTREAM_SOURCE: `redis://127.0.0.1:${l.sourcePort}`,
    REPLISTREAM_DESTINATION: `redis://127.0.0.1:${l.destinationPort}`,
  };
  if (existsSync(join(l.stateDir, 'cluster.enabled'))) env.REPLISTREAM_CLUSTER = l.clusterPorts.map((p) => `redis://127.0.0.1:${p}`).join(',');
  return env;
}
