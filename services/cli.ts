/**
 * `replistream`: one command, the subcommands of docs/guarantees.md. Each parses its flags, resolves the
 * settings (flags > environment > --config file > defaults, see config/options.ts) and hands them
 * to its service. Exit codes: 0 success, 1 runtime failure, 2 bad usage or configuration.
 */
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { ReplistreamError, describeError } from './common/errors.js';
import { createLogger } from './common/log.js';
import { configureConnections } from './common/connection-settings.js';
import { loadConfig } from './config/load.js';
import { optionsFor, type CommandName } from './config/options.js';

function addOptions(cmd: Command, name: CommandName): Command {
  for (const o of optionsFor(name)) {
    if (o.boolean) cmd.addOption(new Option(`--${o.name}`, o.description));
    else if (o.repeatable) cmd.addOption(new Option(`--${o.name} <value>`, o.description).argParser((v: string, prev: string[] = []) => [...prev, v]));
    else cmd.addOption(new Option(`--${o.name} <value>`, o.description));
  }
  return cmd;
}

/** Commander gives camelCase keys; the config loader wants the flag names. */
function flagsOf(cmd: Command, name: CommandName): Record<string, string | string[] | boolean | undefined> {
  const opts = cmd.opts();
  const out: Record<string, string | string[] | boolean | undefined> = {};
  for (const o of optionsFor(name)) {
    const key = o.name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    // commander maps --no-heartbeat to `heartbeat: false`
    const v = o.name.startsWith('no-') ? (opts[key.replace(/^no([A-Z])/, (_, c: string) => c.toLowerCase())] === false ? true : undefined) : opts[key];
    if (v !== undefined) out[o.name] = v as string | string[] | boolean;
  }
  return out;
}

/**
 * `rdb inspect FILE` given something that is not an RDB file at all (missing, a directory, empty,
 * text) is a usage error, exit 2. A file that starts as an RDB file but is truncated or corrupt is
 * a data error the parser reports with its offset, exit 1.
 */
function checkRdbFile(file: string): void {
  const usage = (why: string) => new ReplistreamError('CONFIG', `rdb inspect: ${file}: ${why}`);
  let fd: number;
  try {
    if (statSync(file).isDirectory()) throw usage('is a directory; give an RDB file (e.g. dump.rdb)');
    fd = openSync(file, 'r');
  } catch (err) {
    if (err instanceof ReplistreamError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw usage(code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message);
  }
  try {
    const head = Buffer.alloc(9);
    const n = readSync(fd, head, 0, head.length, 0);
    if (n === 0) throw usage('is empty (0 bytes), not an RDB file');
    if (!head.subarray(0, Math.min(n, 5)).equals(Buffer.from('REDIS').subarray(0, Math.min(n, 5)))) {
      throw usage(`is not an RDB file: it starts with ${JSON.stringify(head.subarray(0, n).toString('latin1'))}, an RDB file with "REDIS"`);
    }
  } finally {
    closeSync(fd);
  }
}

export function buildProgram(): Command {
  const program = new Command('replistream')
    .description('One-way Redis → Redis synchronization through Apache Kafka')
    .exitOverride()
    .showHelpAfterError();

  const run = (name: CommandName, body: (config: Record<string, unknown>) => Promise<number | void>) =>
    async function (this: Command) {
      const config = loadConfig(name, flagsOf(this, name));
      // TLS files are read and credentials checked before any connection is made
      configureConnections(config, (warning) => createLogger(String(config.logLevel), 'config').warn(warning));
      const code = await body(config);
      process.exitCode = typeof code === 'number' ? code : 0;
    };

  addOptions(program.command('capture').description('Join the source as a replica and publish change events to Kafka'), 'capture').action(
    run('capture', async (c) => (await import('./capture/service.js')).runCapture(c, createLogger(String(c.logLevel), 'capture'))),
  );
  addOptions(program.command('apply').description('Consume change events and write a destination'), 'apply').action(
    run('apply', async (c) => (await import('./applier/service.js')).runApplier(c, createLogger(String(c.logLevel), 'applier'))),
  );
  addOptions(program.command('precheck').description('Check source and destination before a synchronization'), 'precheck').action(
    run('precheck', async (c) => (await import('./commands/precheck.js')).precheckCommand(c)),
  );
  addOptions(program.command('verify').description('Compare source and destination contents key by key'), 'verify').action(
    run('verify', async (c) => (await import('./commands/verify.js')).verifyCommand(c)),
  );
  addOptions(program.command('status').description("Show a running task's state, progress and lag"), 'status').action(
    run('status', async (c) => (await import('./commands/status.js')).statusCommand(c)),
  );
  for (const action of ['pause', 'resume'] as const) {
    const what = action === 'pause' ? 'Pause running appliers (they stop reading and keep their position)' : 'Resume paused appliers from their position';
    addOptions(program.command(action).description(what), action).action(
      run(action, async (c) => (await import('./commands/control.js')).controlCommand(action, c)),
    );
  }
  addOptions(program.command('limits').description("Show or change running services' rate limits (0 removes one)"), 'limits').action(
    run('limits', async (c) => (await import('./commands/control.js')).limitsCommand(c)),
  );
  const rdb = program.command('rdb').description('RDB file tools');
  addOptions(rdb.command('inspect').argument('<file>', 'RDB file').description('Print one JSON object per key'), 'rdb-inspect').action(
    async function (this: Command, file: string) {
      const c = loadConfig('rdb-inspect', flagsOf(this, 'rdb-inspect'));
      checkRdbFile(file);
      const { inspectRdb } = await import('./replication/rdb/inspect.js');
      try {
        await inspectRdb(file, process.stdout, c.format as 'jsonl');
      } catch (err) {
        // the parser's message says where in the file; say which file
        if (err instanceof ReplistreamError) throw new ReplistreamError(err.code, `rdb inspect: ${file}: ${err.message}`, { details: err.details });
        throw err;
      }
    },
  );
  return program;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    const code = err instanceof ReplistreamError ? err.exitCode : 1;
    process.stderr.write(`replistream: ${describeError(err)}\n`);
    return code;
  }
}

// Exit explicitly: a command that failed may still hold sockets or timers (a Kafka client
// retrying, a Redis connection reconnecting) that would otherwise keep the process alive after its
// error was printed. Output is not lost: stdout/stderr pipes and files are written synchronously
// and the logger flushes on exit.
main(process.argv.slice(2)).then((code) => process.exit(code));
