/**
 * One task file runs the whole task: `replistream capture --config task.yaml` and
 * `replistream apply --config task.yaml --destination-name NAME` for two named destinations, each
 * taking its own settings from the file (port, group by default, a rate limit), and both
 * destinations end equal to the source; `replistream status --config` finds the three services
 * by their ports and shows the task.
 * A key the file should not hold stops every command with exit 2, naming the key and the file.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { scratchDir } from '../../helpers/scratch-dir.js';
import { envName, OPTIONS } from '../../../services/config/options.js';
import { pipelineNames, referenceWorkload, until, waitConverged } from '../../helpers/pipeline.js';
import { killAll, startService } from '../../helpers/processes.js';
import { freePort, startRedis, type RedisServer } from '../../helpers/redis-server.js';
import { stack } from '../../helpers/stack-env.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  await killAll();
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

async function server(): Promise<RedisServer> {
  const s = await startRedis();
  cleanups.push(() => s.stop());
  return s;
}

/**
 * Everything comes from the file: the stack's addresses the test runner has in its environment
 * (REPLISTREAM_SOURCE, _DESTINATION, _KAFKA, _REGISTRY) would win over it, so they are cleared.
 */
const FROM_FILE = Object.fromEntries(OPTIONS.map((o) => envName(o.name)).filter((k) => process.env[k] !== undefined || k === 'REPLISTREAM_KAFKA' || k === 'REPLISTREAM_REGISTRY').map((k) => [k, '']));

async function run(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const p = startService(args, FROM_FILE);
  let out = '';
  p.child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const code = await p.exited();
  return { code, out, err: p.log() };
}

describe('task file', () => {
  it('capture and two named destinations run from one YAML file; both destinations equal the source', async () => {
    const source = await server();
    const eu = await server();
    const us = await server();
    await referenceWorkload(source.url, 0);
    const names = pipelineNames();
    const [capPort, euPort, usPort] = [await freePort(), await freePort(), await freePort()];
    const dir = scratchDir('task');
    const task = join(dir, 'task.yaml');
    writeFileSync(
      task,
      `# the whole task in one file
source-id: ${names.sourceId}
topic-prefix: ${names.topicPrefix}
kafka: ${stack().kafka}
registry: ${stack().registry}
source: ${source.url}
capture:
  dbs: [0, 1, 2]
  http-port: ${capPort}
destinations:
  eu:
    destination: ${eu.url}
    http-port: ${euPort}
    max-ops-per-second: 50000
  us:
    destination: ${us.url}
    httpPort: ${usPort}
    group: ${names.topicPrefix}-us
`,
    );
    const capture = startService(['capture', '--config', task], FROM_FILE);
    const euApplier = startService(['apply', '--config', task, '--destination-name', 'eu'], FROM_FILE);
    const usApplier = startService(['apply', '--config', task, '--destination-name', 'us'], FROM_FILE);
    for (const p of [capture, euApplier, usApplier]) cleanups.push(async () => void (await p.term()));

    for (const [dst, name, p] of [[eu, 'eu', euApplier], [us, 'us', usApplier]] as const) {
      const result = await waitConverged(source.url, dst.url, [0, 1, 2], 90_000);
      expect(result.equal, `${name}: ${JSON.stringify(result.differences.slice(0, 3))}\n${p.log().slice(-3000)}`).toBe(true);
    }
    // writes after the full sync reach both
    await referenceWorkload(source.url, 1);
    for (const dst of [eu, us]) expect((await waitConverged(source.url, dst.url, [0, 1, 2], 60_000)).equal).toBe(true);

    // each applier took its own section: its port, its group (eu's by default), its limit
    const body = async (port: number) => (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    await until(async () => (await body(capPort)).state === 'synchronizing', 30_000, 'capture synchronizing');
    const [euBody, usBody] = [await body(euPort), await body(usPort)];
    expect(euBody).toMatchObject({ role: 'applier', name: `${names.sourceId}.eu`, limits: { maxOpsPerSecond: 50_000 } });
    expect(usBody).toMatchObject({ role: 'applier', name: `${names.topicPrefix}-us`, limits: { maxOpsPerSecond: null } });
    // the task's services found from the file's ports
    const status = await run(['status', '--config', task]);
    expect(status.code).toBe(0);
    expect(status.out).toMatch(/^task\s+synchronizing$/m);
    expect(status.out).toMatch(new RegExp(`^capture ${names.sourceId} \\(http://127\\.0\\.0\\.1:${capPort}\\)$`, 'm'));
    expect(status.out).toMatch(new RegExp(`^applier ${names.sourceId}\\.eu \\(http://127\\.0\\.0\\.1:${euPort}\\)$`, 'm'));
    expect(status.out).toMatch(new RegExp(`^applier ${names.topicPrefix}-us \\(http://127\\.0\\.0\\.1:${usPort}\\)$`, 'm'));
  }, 180_000);

  it('a key the file should not hold stops every command, naming the key and the file (exit 2)', async () => {
    const dir = scratchDir('task');
    const task = join(dir, 'task.yaml');
    writeFileSync(task, `source-id: s\nkafka: k:9092\nregistry: http://r:8081\nsource: redis://s:6379\ncapture:\n  max-ops-per-second: 10\ndestinations:\n  eu: { destination: "redis://d:6379" }\n`);
    for (const args of [['capture', '--config', task], ['apply', '--config', task, '--destination-name', 'eu']]) {
      const r = await run(args);
      expect(r.code).toBe(2);
      expect(r.err).toContain(`replistream: max-ops-per-second: unknown setting capture.max-ops-per-second in ${task}: the capture section takes settings of 'replistream capture'`);
    }
  }, 60_000);
});
