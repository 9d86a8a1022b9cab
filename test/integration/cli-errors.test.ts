/**
 * Bad input, fatal start-up errors and shutdown, through the real command: each error is one line
 * naming the setting or the server (host:port) and the cause, with exit code 2 for usage or
 * configuration and 1 at run time; a fatal start-up error ends the process; SIGTERM ends a
 * service within 2 s whatever is unreachable, with its position kept. Passwords never appear.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { scratchDir } from '../helpers/scratch-dir.js';
import { fetchGroupLag } from '../../services/transport/consumer.js';
import { createKafka } from '../../services/transport/kafka.js';
import { readLatestPositions } from '../../services/transport/producer.js';
import { positionsTopicName, topicName } from '../../services/transport/topics.js';
import { pipelineNames, redisClient, runCapture, testLogger, until, waitConverged } from '../helpers/pipeline.js';
import { killAll, startService, type ServiceProcess } from '../helpers/processes.js';
import { startKafkaBroker } from '../helpers/kafka-broker.js';
import { freePort, startRedis, type RedisServer } from '../helpers/redis-server.js';
import { stack, uniqueName } from '../helpers/stack-env.js';

const SECRET = 'pw-s3cret-9';
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  await killAll();
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

async function server(config: Record<string, string | number | string[]> = {}): Promise<RedisServer> {
  const s = await startRedis(config);
  cleanups.push(() => s.stop());
  return s;
}

interface Run {
  code: number | null;
  out: string;
  err: string;
  ms: number;
}

function collect(p: ServiceProcess): () => Promise<Run> {
  const t0 = Date.now();
  let out = '';
  p.child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  return async () => {
    const code = await p.exited();
    return { code, out, err: p.log(), ms: Date.now() - t0 };
  };
}

/** Runs the CLI to its end. Settings of the shell running the tests are blanked unless given. */
function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return collect(startService(args, { REPLISTREAM_SOURCE: '', REPLISTREAM_DESTINATION: '', ...env }))();
}

/** The line the CLI prints for an error (stderr also holds JSON log lines). */
function errorLine(r: Run): string {
  // (bin/replistream.mjs may add a note that it runs the sources: not an error)
  const lines = r.err.split('\n').filter((l) => l.startsWith('replistream: ') && !l.includes('running the TypeScript sources'));
  expect(lines, r.err).toHaveLength(1);
  return lines[0];
}

function expectNoSecret(r: Run): void {
  expect(r.err + r.out).not.toContain(SECRET);
  expect(r.err).not.toMatch(/Unhandled error event/);
  expect(r.err).not.toMatch(/\n\s+at /); // no stack trace
}

describe('bad input', () => {
  it('exits 2 naming the setting, in the same words on the source and destination side', async () => {
    const bad = `redis://user:${SECRET}@:6379`;
    const dir = scratchDir('cli-errors');
    const [src, dst, dup, bool, missing, from] = await Promise.all([
      cli(['capture', '--source', bad, '--source-id', 's']),
      cli(['apply', '--destination', bad, '--source-id', 's', '--group', 'g']),
      cli(['apply', '--destination', 'redis://127.0.0.1:1', '--source-id', 's', '--group', 'g', '--db-map', '0:1,0:2']),
      cli(['capture', '--source', 'redis://127.0.0.1:1', '--source-id', 's'], { REPLISTREAM_NO_HEARTBEAT: 'maybe' }),
      cli(['capture', '--config', join(dir, 'absent.json')]),
      cli(['apply', '--destination', 'redis://127.0.0.1:1', '--source-id', 's', '--group', 'g', '--from', 'offset:9']),
    ]);
    for (const r of [src, dst, dup, bool, missing, from]) {
      expect(r.code, r.err).toBe(2);
      expectNoSecret(r);
    }
    expect(errorLine(src)).toBe('replistream: source: invalid value redis://***@:6379 from --source: has no host name, e.g. redis://user:password@host:6379 (rediss:// for TLS)');
    expect(errorLine(dst)).toBe(errorLine(src).replace(/source/g, 'destination'));
    expect(errorLine(dup)).toMatch(/^replistream: db-map: invalid value "0:1,0:2" from --db-map: source db 0 is mapped twice/);
    expect(errorLine(bool)).toMatch(/^replistream: no-heartbeat: REPLISTREAM_NO_HEARTBEAT="maybe" is not a boolean/);
    expect(errorLine(missing)).toBe(`replistream: config: cannot read ${join(dir, 'absent.json')}: no such file`);
    expect(errorLine(from)).toMatch(/^replistream: from: invalid value "offset:9" from --from: must be committed, earliest/);
  });

  it('rdb inspect: not an RDB file is a usage error (2); a truncated one names the file and offset (1)', async () => {
    const dir = scratchDir('cli-errors');
    writeFileSync(join(dir, 'empty.rdb'), '');
    writeFileSync(join(dir, 'text.rdb'), 'hello, world\n');
    writeFileSync(join(dir, 'truncated.rdb'), readFileSync('test/fixtures/rdb/strings.rdb').subarray(0, 40));
    const [empty, text, dirRun, truncated] = await Promise.all(
      ['empty.rdb', 'text.rdb', '.', 'truncated.rdb'].map((f) => cli(['rdb', 'inspect', join(dir, f)])),
    );
    expect([empty.code, text.code, dirRun.code, truncated.code]).toEqual([2, 2, 2, 1]);
    expect(errorLine(empty)).toMatch(/empty\.rdb: is empty \(0 bytes\), not an RDB file$/);
    expect(errorLine(text)).toMatch(/text\.rdb: is not an RDB file: it starts with "hello, wo"/);
    expect(errorLine(dirRun)).toMatch(/: is a directory; give an RDB file/);
    expect(errorLine(truncated)).toMatch(/truncated\.rdb: RDB truncated at offset \d+/);
  });
});

describe('servers that refuse', () => {
  it('verify against a closed port, precheck with a wrong password or without replication rights: one line naming host:port and the cause', async () => {
    const locked = await server({ requirepass: 'right-pass' });
    const admin = redisClient(`redis://:right-pass@127.0.0.1:${locked.port}`);
    await admin.call('ACL', 'SETUSER', 'norepl', 'on', `>${SECRET}`, '~*', '&*', '+@all', '-psync', '-sync');
    await admin.call('ACL', 'SETUSER', 'noconf', 'on', `>${SECRET}`, '~*', '&*', '+@all', '-replconf');
    admin.disconnect();
    const dest = await server();
    const closed = await freePort();
    const at = `127.0.0.1:${locked.port}`;
    const [verify, wrong, norepl, noconf] = await Promise.all([
      cli(['verify', '--source', `redis://u:${SECRET}@127.0.0.1:${closed}`, '--destination', dest.url]),
      cli(['precheck', '--source', `redis://default:${SECRET}@${at}`, '--destination', dest.url]),
      cli(['precheck', '--source', `redis://norepl:${SECRET}@${at}`, '--destination', dest.url]),
      cli(['precheck', '--source', `redis://noconf:${SECRET}@${at}`, '--destination', dest.url]),
    ]);
    for (const r of [verify, wrong, norepl, noconf]) {
      expect(r.code, r.err).toBe(1);
      expectNoSecret(r);
    }
    expect(errorLine(verify)).toMatch(new RegExp(`^replistream: source 127\\.0\\.0\\.1:${closed}: unreachable: connection refused; check the source setting`));
    expect(errorLine(wrong)).toMatch(new RegExp(`^replistream: source ${at}: authentication failed for user "default": wrong user name or password`));
    expect(errorLine(norepl)).toMatch(new RegExp(`^replistream: source ${at}: missing rights for user "norepl": .*'psync'.*needs \\+psync`));
    expect(errorLine(noconf)).toMatch(new RegExp(`^replistream: source ${at}: missing rights for user "noconf": .*'replconf'.*needs \\+replconf`));
  });

  it('a db-map beyond the destination databases is refused (exit 2) by apply, precheck and verify, before anything is written', async () => {
    const source = await server();
    const dest = await server({ databases: 4 });
    const [apply, precheck, verify] = await Promise.all([
      cli(['apply', '--destination', dest.url, '--source-id', 's', '--group', uniqueName('g'), '--db-map', '0:0,1:5', '--topic-prefix', uniqueName('t')]),
      cli(['precheck', '--source', source.url, '--destination', dest.url, '--db-map', '0:5']),
      cli(['verify', '--source', source.url, '--destination', dest.url, '--db-map', '0:5']),
    ]);
    for (const r of [apply, precheck, verify]) {
      expect(r.code, r.err).toBe(2);
      expect(errorLine(r)).toBe(`replistream: db-map: destination 127.0.0.1:${dest.port} has 4 databases (0-3): db 5 does not exist; change db-map, or the destination's databases setting`);
    }
    const c = redisClient(dest.url);
    expect(await c.dbsize()).toBe(0);
    c.disconnect();
  });

  it('capture with a source user without +psync exits 1 naming the right', async () => {
    const source = await server();
    const admin = redisClient(source.url);
    await admin.call('ACL', 'SETUSER', 'norepl', 'on', `>${SECRET}`, '~*', '&*', '+@all', '-psync', '-sync');
    admin.disconnect();
    const names = pipelineNames();
    const r = await cli(['capture', '--source', `redis://norepl:${SECRET}@127.0.0.1:${source.port}`, '--source-id', names.sourceId, '--topic-prefix', names.topicPrefix, '--dbs', '0']);
    expect(r.code, r.err).toBe(1);
    expect(r.err).toMatch(/NOPERM.*'psync'/);
    expect(r.err).toMatch(/\+psync/);
    expect(r.err).not.toContain(SECRET);
  });
});

describe('fatal start-up errors end the process', () => {
  it('capture: Kafka unreachable (names kafka, within kafka-timeout-ms), registry unreachable (names registry)', async () => {
    const source = await server();
    const names = pipelineNames();
    const base = ['capture', '--source', source.url, '--source-id', names.sourceId, '--topic-prefix', names.topicPrefix, '--dbs', '0', '--kafka-timeout-ms', '2000'];
    const [kafkaPort, registryPort] = [await freePort(), await freePort()];
    const [kafka, registry] = await Promise.all([
      cli([...base, '--kafka', `127.0.0.1:${kafkaPort}`]),
      cli([...base, '--registry', `http://127.0.0.1:${registryPort}`]),
    ]);
    expect(kafka.code, kafka.err).toBe(1);
    expect(errorLine(kafka)).toMatch(new RegExp(`^replistream: kafka: no answer from the brokers 127\\.0\\.0\\.1:${kafkaPort} within 2 s .*connection refused.*check the kafka setting`));
    expect(kafka.ms).toBeLessThan(15_000);
    expect(registry.code, registry.err).toBe(1);
    expect(errorLine(registry)).toMatch(new RegExp(`^replistream: registry: .*127\\.0\\.0\\.1:${registryPort}.*connection refused.*check the registry setting`));
    expect(registry.ms).toBeLessThan(30_000);
  });

  it('--http-port already in use: exit 2 before any sync work starts', async () => {
    const source = await server();
    const busy: Server = createServer();
    const port = await freePort();
    await new Promise<void>((resolve) => busy.listen(port, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => busy.close(() => resolve())));
    const names = pipelineNames();
    const r = await cli(['capture', '--source', source.url, '--source-id', names.sourceId, '--topic-prefix', names.topicPrefix, '--dbs', '0', '--http-port', String(port)]);
    expect(r.code, r.err).toBe(2);
    expect(errorLine(r)).toMatch(new RegExp(`^replistream: http-port: port [\\d.]+:${port} is already in use`));
    const c = redisClient(source.url);
    expect(await c.info('stats')).toMatch(/sync_full:0\r?\n/); // the source was never asked for a sync
    c.disconnect();
  });

  it('apply --from offset:9@0 on a 4-partition topic: exit 2 naming from', async () => {
    const source = await server();
    const dest = await server();
    const names = pipelineNames();
    const capture = await runCapture(source.url, names, { dbs: [0] });
    cleanups.push(() => capture.stop());
    const r = await cli(['apply', '--destination', dest.url, '--source-id', names.sourceId, '--topic-prefix', names.topicPrefix, '--group', uniqueName('g'), '--from', 'offset:9@0']);
    expect(r.code, r.err).toBe(2);
    expect(errorLine(r)).toBe(`replistream: from: topic ${topicName(names.topicPrefix, names.sourceId, 0)} has no partition 9 (it has 4)`);
  });
});

describe('SIGTERM', () => {
  async function terminate(p: ServiceProcess): Promise<{ code: number | null; ms: number }> {
    const t0 = Date.now();
    const code = await p.term();
    const ms = Date.now() - t0;
    if (process.env.REPLISTREAM_TEST_TIMINGS) process.stderr.write(`[cli-errors] ${p.child.spawnargs[2]} ended ${ms} ms after SIGTERM\n`);
    return { code, ms };
  }

  it('capture ends within 2 s with its source gone, its stored position kept', async () => {
    const source = await server();
    const names = pipelineNames();
    const kafka = createKafka({ brokers: stack().kafka, logger: testLogger });
    const positions = () => readLatestPositions(kafka, positionsTopicName(names.topicPrefix, names.sourceId));
    const capture = startService(['capture', '--source', source.url, '--source-id', names.sourceId, '--topic-prefix', names.topicPrefix, '--dbs', '0', '--partitions', '2']);
    const c = redisClient(source.url);
    for (let i = 0; i < 100; i++) await c.set(`k${i}`, String(i));
    let before = 0;
    await until(async () => {
      const p = (await positions()).get('capture') as { state?: string; offset?: number } | undefined;
      before = p?.state === 'streaming' ? Number(p.offset) : 0;
      return before > 0;
    }, 60_000, 'a streaming position stored');
    c.disconnect();
    await source.stop();
    // let it meet the closed source (reconnecting with backoff) before it is told to stop
    await new Promise((r) => setTimeout(r, 1500));
    const { code, ms } = await terminate(capture);
    expect(code, capture.log().slice(-2000)).toBe(0);
    expect(ms).toBeLessThan(2000);
    const after = (await positions()).get('capture') as { offset: number; state: string };
    expect(after.state).toBe('streaming');
    expect(Number(after.offset)).toBeGreaterThanOrEqual(before);
  });

  it('apply ends within 2 s with its destination gone, its committed offsets kept', async () => {
    const source = await server();
    const dest = await server();
    const names = pipelineNames();
    const group = uniqueName('g');
    const capture = await runCapture(source.url, names, { dbs: [0] });
    cleanups.push(() => capture.stop());
    const c = redisClient(source.url);
    for (let i = 0; i < 100; i++) await c.incr(`ctr:${i % 10}`);
    c.disconnect();
    const apply = startService(['apply', '--destination', dest.url, '--source-id', names.sourceId, '--topic-prefix', names.topicPrefix, '--group', group]);
    expect((await waitConverged(source.url, dest.url, [0])).equal).toBe(true);
    const kafka = createKafka({ brokers: stack().kafka, logger: testLogger });
    const topic = topicName(names.topicPrefix, names.sourceId, 0);
    const before = await committedAtEnd(kafka, group, topic);
    await dest.stop();
    const more = redisClient(source.url);
    for (let i = 0; i < 20; i++) await more.incr(`ctr:${i % 10}`);
    more.disconnect();
    // let it meet the closed destination with writes pending before it is told to stop
    await new Promise((r) => setTimeout(r, 1500));
    const { code, ms } = await terminate(apply);
    expect(code, apply.log().slice(-2000)).toBe(0);
    expect(ms).toBeLessThan(2000);
    expectKept(before, await committedOffsets(kafka, group, topic));
  });

  it('capture and apply end within 2 s with Kafka gone; what they committed is there when it is back', async () => {
    const broker = await startKafkaBroker();
    cleanups.push(() => broker.stop());
    const source = await server();
    const dest = await server();
    const names = pipelineNames();
    const group = uniqueName('g');
    const env = { REPLISTREAM_KAFKA: broker.brokers };
    const capture = startService(['capture', '--source', source.url, '--source-id', names.sourceId, '--topic-prefix', names.topicPrefix, '--dbs', '0', '--partitions', '2'], env);
    const apply = startService(['apply', '--destination', dest.url, '--source-id', names.sourceId, '--topic-prefix', names.topicPrefix, '--group', group], env);
    const c = redisClient(source.url);
    for (let i = 0; i < 100; i++) await c.incr(`ctr:${i % 10}`);
    expect((await waitConverged(source.url, dest.url, [0])).equal).toBe(true);
    const kafka = createKafka({ brokers: broker.brokers, logger: testLogger });
    const topic = topicName(names.topicPrefix, names.sourceId, 0);
    const position = async () => Number(((await readLatestPositions(kafka, positionsTopicName(names.topicPrefix, names.sourceId))).get('capture') as { offset?: number } | undefined)?.offset ?? 0);
    const committedBefore = await committedAtEnd(kafka, group, topic);
    const positionBefore = await position();
    expect(positionBefore).toBeGreaterThan(0);

    await broker.kill9();
    for (let i = 0; i < 20; i++) await c.incr(`ctr:${i % 10}`); // work neither can finish now
    c.disconnect();
    // let both meet the missing broker (kafkajs reconnecting with backoff) before they are told to stop
    await new Promise((r) => setTimeout(r, 1500));
    const [cap, app] = await Promise.all([terminate(capture), terminate(apply)]);
    expect(cap.code, capture.log().slice(-2000)).toBe(0);
    expect(app.code, apply.log().slice(-2000)).toBe(0);
    expect(cap.ms).toBeLessThan(2000);
    expect(app.ms).toBeLessThan(2000);

    await broker.restart();
    expect(await position()).toBeGreaterThanOrEqual(positionBefore);
    expectKept(committedBefore, await committedOffsets(kafka, group, topic));
  });
});

/** The group's committed offset per partition ('none' without a commit). */
async function committedOffsets(kafka: ReturnType<typeof createKafka>, group: string, topic: string): Promise<Map<number, string>> {
  return new Map((await fetchGroupLag(kafka, group, [topic])).map((l) => [l.partition, l.committed ?? 'none']));
}

/** Waits until the group has committed up to the end of every partition, and returns its offsets. */
async function committedAtEnd(kafka: ReturnType<typeof createKafka>, group: string, topic: string): Promise<Map<number, string>> {
  await until(async () => {
    const lag = await fetchGroupLag(kafka, group, [topic]);
    return lag.length > 0 && lag.every((l) => l.lag === 0 && (l.committed !== null || l.high === l.low));
  }, 60_000, 'the group committed up to the end');
  return committedOffsets(kafka, group, topic);
}

/** Every partition's committed offset is where it was, or later (heartbeats keep flowing): none lost. */
function expectKept(before: Map<number, string>, after: Map<number, string>): void {
  for (const [p, offset] of before) {
    if (offset === 'none') continue;
    expect(after.get(p), `partition ${p}`).not.toBe('none');
    expect(BigInt(after.get(p)!) >= BigInt(offset), `partition ${p}: ${after.get(p)} < ${offset}`).toBe(true);
  }
}
