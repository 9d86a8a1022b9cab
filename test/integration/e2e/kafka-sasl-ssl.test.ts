/**
 * A Kafka cluster with a SASL_SSL listener — a private broker started here from the stack's
 * Kafka jars, its certificate signed by a CA made with openssl, SCRAM-SHA-512 and PLAIN users —
 * and a source Redis on TLS with a CA: capture (SCRAM) and an applier (PLAIN) sync through them,
 * configured by settings only. A wrong password stops the applier with an error that names the
 * settings and does not contain the password.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { kafkaLibs, stackLayout } from '../../../services/stack/stack.js';
import { pipelineNames, redisClient, until } from '../../helpers/pipeline.js';
import { killAll, startService } from '../../helpers/processes.js';
import { freePort, startRedis, type RedisServer } from '../../helpers/redis-server.js';
import { certDir } from '../../helpers/tls-certs.js';

const certs = certDir();
let broker: ChildProcess | null = null;
let saslPort = 0;
let source: RedisServer;
let sourceTls = 0;
let destination: RedisServer;

async function brokerAnswers(port: number): Promise<boolean> {
  const { Kafka, logLevel } = await import('kafkajs');
  const admin = new Kafka({
    brokers: [`127.0.0.1:${port}`],
    ssl: { ca: readFileSync(certs.file('ca.crt')) },
    sasl: { mechanism: 'scram-sha-512', username: 'alice', password: 'alice-secret' },
    logLevel: logLevel.NOTHING,
    retry: { retries: 0 },
    connectionTimeout: 2000,
  }).admin();
  try {
    await admin.connect();
    return (await admin.describeCluster()).controller !== null;
  } catch {
    return false;
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

beforeAll(async () => {
  certs.ca('ca');
  certs.cert('ca', 'broker');
  certs.cert('ca', 'redis');
  // Kafka reads a PEM key store: the private key and the certificate in one file.
  writeFileSync(certs.file('broker.pem'), readFileSync(certs.file('broker.key'), 'utf8') + readFileSync(certs.file('broker.crt'), 'utf8'));

  saslPort = await freePort();
  const plainPort = await freePort();
  const controllerPort = await freePort();
  const dir = join(certs.dir, 'kafka');
  mkdirSync(dir);
  const props = join(dir, 'server.properties');
  writeFileSync(
    props,
    [
      'process.roles=broker,controller',
      'node.id=1',
      `controller.quorum.voters=1@127.0.0.1:${controllerPort}`,
      // clients on SASL_SSL; the broker talks to itself in plain text on loopback
      `listeners=SASL_SSL://127.0.0.1:${saslPort},PLAINTEXT://127.0.0.1:${plainPort},CONTROLLER://127.0.0.1:${controllerPort}`,
      `advertised.listeners=SASL_SSL://127.0.0.1:${saslPort},PLAINTEXT://127.0.0.1:${plainPort}`,
      'inter.broker.listener.name=PLAINTEXT',
      'controller.listener.names=CONTROLLER',
      'listener.security.protocol.map=SASL_SSL:SASL_SSL,PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
      'sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN',
      'listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;',
      'listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_bob="bob-secret";',
      'ssl.keystore.type=PEM',
      `ssl.keystore.location=${certs.file('broker.pem')}`,
      `log.dirs=${join(dir, 'data')}`,
      'auto.create.topics.enable=false',
      'offsets.topic.replication.factor=1',
      'offsets.topic.num.partitions=2',
      'transaction.state.log.replication.factor=1',
      'transaction.state.log.min.isr=1',
      'group.initial.rebalance.delay.ms=0',
      '',
    ].join('\n'),
  );
  const log4j = join(dir, 'log4j2.properties');
  writeFileSync(log4j, ['rootLogger.level=WARN', 'rootLogger.appenderRef.out.ref=out', 'appender.out.type=Console', 'appender.out.name=out',
    'appender.out.layout.type=PatternLayout', 'appender.out.layout.pattern=%p %m%n', ''].join('\n'));
  // snappy's native library unpacked into the broker's folder (removed with it), not /tmp
  const jvm = ['-Xms128m', '-Xmx384m', '-XX:+UseSerialGC', `-Dlog4j2.configurationFile=${log4j}`, `-Dorg.xerial.snappy.tempdir=${dir}`, '-cp', `${kafkaLibs(stackLayout())}/*`];
  // the SCRAM user is created with the storage (KRaft keeps credentials in its metadata log)
  const format = spawnSync('java', [...jvm, 'kafka.tools.StorageTool', 'format', '-t', 'c2FzbC1zc2wtdGVzdC0xMg', '-c', props,
    '--add-scram', 'SCRAM-SHA-512=[name=alice,password=alice-secret]'], { encoding: 'utf8' });
  if (format.status !== 0) throw new Error(`kafka storage format failed: ${format.stdout}${format.stderr}`);
  let brokerLog = '';
  broker = spawn('java', [...jvm, 'kafka.Kafka', props], { stdio: ['ignore', 'pipe', 'pipe'] });
  broker.stdout!.on('data', (d: Buffer) => (brokerLog = (brokerLog + d.toString()).slice(-20_000)));
  broker.stderr!.on('data', (d: Buffer) => (brokerLog = (brokerLog + d.toString()).slice(-20_000)));
  await until(async () => {
    if (broker!.exitCode !== null) throw new Error(`the SASL_SSL broker exited:\n${brokerLog}`);
    return brokerAnswers(saslPort);
  }, 120_000, 'the SASL_SSL broker');

  sourceTls = await freePort();
  source = await startRedis({
    'tls-port': String(sourceTls),
    'tls-cert-file': certs.file('redis.crt'),
    'tls-key-file': certs.file('redis.key'),
    'tls-ca-cert-file': certs.file('ca.crt'),
    'tls-auth-clients': 'no',
  });
  destination = await startRedis();
}, 180_000);

afterEach(() => killAll());
afterAll(async () => {
  if (broker && broker.exitCode === null) {
    const exited = new Promise((r) => broker!.once('exit', r));
    broker.kill('SIGKILL');
    await exited;
  }
  await source?.stop();
  await destination?.stop();
  certs.remove();
});

describe('Kafka over SASL_SSL, Redis over TLS', () => {
  it('capture (SCRAM-SHA-512) and an applier (PLAIN) sync through a SASL_SSL listener with a CA file', async () => {
    const src = redisClient(source.url);
    await src.call('DEBUG', 'POPULATE', 1000, 'sasl:key', 16);
    const names = pipelineNames();
    const kafka = { REPLISTREAM_KAFKA: `127.0.0.1:${saslPort}`, REPLISTREAM_KAFKA_TLS_CA: certs.file('ca.crt') };
    const capture = startService(
      ['capture', '--source', `rediss://localhost:${sourceTls}`, '--source-tls-ca', certs.file('ca.crt'), '--source-id', names.sourceId,
        '--topic-prefix', names.topicPrefix, '--dbs', '0', '--partitions', '2'],
      { ...kafka, REPLISTREAM_KAFKA_SASL_MECHANISM: 'scram-sha-512', REPLISTREAM_KAFKA_SASL_USERNAME: 'alice', REPLISTREAM_KAFKA_SASL_PASSWORD: 'alice-secret' },
    );
    const applier = startService(
      ['apply', '--destination', destination.url, '--group', `${names.topicPrefix}-g`, '--source-id', names.sourceId, '--topic-prefix', names.topicPrefix],
      { ...kafka, REPLISTREAM_KAFKA_SASL_MECHANISM: 'plain', REPLISTREAM_KAFKA_SASL_USERNAME: 'bob', REPLISTREAM_KAFKA_SASL_PASSWORD: 'bob-secret' },
    );
    const dst = redisClient(destination.url);
    await until(async () => (await dst.dbsize()) >= 1000, 120_000, `the full sync (capture:\n${capture.log().slice(-1500)}\napplier:\n${applier.log().slice(-1500)})`);
    await src.set('sasl:after', 'streamed');
    await until(async () => (await dst.get('sasl:after')) === 'streamed', 60_000, 'a streamed write');
    expect(await dst.get('sasl:key:7')).toBe(await src.get('sasl:key:7'));
    for (const p of [capture, applier]) expect(p.log()).not.toMatch(/alice-secret|bob-secret/);
    await capture.term();
    await applier.term();
    src.disconnect();
    dst.disconnect();
  });

  it('a wrong SASL password stops the applier naming the settings, never the password', async () => {
    const names = pipelineNames();
    const applier = startService(
      ['apply', '--destination', destination.url, '--group', `${names.topicPrefix}-g`, '--source-id', names.sourceId, '--topic-prefix', names.topicPrefix],
      {
        REPLISTREAM_KAFKA: `127.0.0.1:${saslPort}`,
        REPLISTREAM_KAFKA_TLS_CA: certs.file('ca.crt'),
        REPLISTREAM_KAFKA_SASL_MECHANISM: 'scram-sha-512',
        REPLISTREAM_KAFKA_SASL_USERNAME: 'alice',
        REPLISTREAM_KAFKA_SASL_PASSWORD: 'not-the-password',
      },
    );
    expect(await applier.exited()).toBe(1);
    expect(applier.log()).toMatch(/kafka-sasl-mechanism, kafka-sasl-username and kafka-sasl-password/);
    expect(applier.log()).not.toContain('not-the-password');
  });
});
