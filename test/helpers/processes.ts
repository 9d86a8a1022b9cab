/**
 * The services as real processes (the `replistream` CLI), for tests that `kill -9` them.
 * Every process started here is registered and killed by `killAll()` (call it in afterEach).
 * `bin/replistream.mjs` runs the compiled build in dist/ when it is current, else the sources
 * through tsx: `ensureBuild()` compiles it when it is missing or stale. The integration tests'
 * global setup calls it; outside vitest (the benches) importing this module calls it, so the
 * services a bench spawns run fresh compiled code and the build is done before anything is timed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { stack } from './stack-env.js';
import { APPLIER_NODE_FLAG } from '../../services/applier/young-generation.js';

const ROOT = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..');
const BIN = join(ROOT, 'bin', 'replistream.mjs');

/** Why dist/ is not current (the rule of bin/replistream.mjs), or null when it is. */
export function buildStaleness(): string | null {
  let built: number;
  try {
    built = statSync(join(ROOT, 'dist', '.built')).mtimeMs;
  } catch {
    return 'no complete build in dist/';
  }
  if (!existsSync(join(ROOT, 'dist', 'services', 'cli.js'))) return 'no build in dist/';
  const sources = join(ROOT, 'services');
  const inputs = readdirSync(sources, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .map((f) => join(sources, f))
    .concat([join(ROOT, 'tsconfig.json'), join(ROOT, 'tsconfig.build.json')]);
  for (const f of inputs) {
    try {
      if (statSync(f).mtimeMs > built) return `${f.slice(ROOT.length + 1)} is newer than dist/`;
    } catch {
      // deleted meanwhile
    }
  }
  return null;
}

/**
 * `npm run build` when dist/ is not current. A failed build (say a type error in a file being
 * edited) leaves no dist/.built, so the services then run the sources through tsx: still the
 * current code, only with a slower start; the failure is printed.
 */
export async function ensureBuild(): Promise<void> {
  const why = buildStaleness();
  if (why === null) return;
  process.stderr.write(`[replistream build] ${why}: npm run build\n`);
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const child = spawn(npm, ['run', '-s', 'build'], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (c) => resolve(c));
  });
  if (code !== 0) {
    process.stderr.write(`[replistream build] npm run build failed (exit ${code}): the services run the TypeScript sources through tsx\n`);
  }
}

if (!process.env.VITEST) await ensureBuild();

export interface ServiceProcess {
  child: ChildProcess;
  /** Everything the process wrote on stderr (JSON log lines). */
  log(): string;
  kill9(): Promise<void>;
  term(): Promise<number | null>;
  exited(): Promise<number | null>;
}

const all = new Set<ServiceProcess>();

/** Starts a `replistream` process; `bin`: another checkout's bin/replistream.mjs (a bench's baseline). */
export function startService(args: string[], env: Record<string, string> = {}, bin = BIN): ServiceProcess {
  const s = stack();
  // REPLISTREAM_NODE_ARGS: extra node flags for every service, space-separated, e.g.
  // "--cpu-prof --cpu-prof-dir=/tmp/prof" for a benchmark's profiles (Node refuses --cpu-prof and
  // --heap-prof in NODE_OPTIONS).
  const prof = (process.env.REPLISTREAM_NODE_ARGS ?? '').split(' ').filter(Boolean);
  // an applier with the young generation its deployments give it (services/applier/young-generation.ts)
  const young = args[0] === 'apply' ? [APPLIER_NODE_FLAG] : [];
  const child = spawn(process.execPath, [...young, ...prof, bin, ...args], {
    // MALLOC_MMAP_THRESHOLD_ as the image sets it (deploy/Dockerfile says why): benches measure the
    // memory of the services as they are deployed
    env: { MALLOC_MMAP_THRESHOLD_: '131072', ...process.env, REPLISTREAM_KAFKA: s.kafka, REPLISTREAM_REGISTRY: s.registry, REPLISTREAM_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  // REPLISTREAM_LOG_DIR: each service's log (stderr) is also written whole to <dir>/<command>.<pid>.log,
  // for reading a benchmark's timeline afterwards
  if (process.env.REPLISTREAM_LOG_DIR) child.stderr!.pipe(createWriteStream(`${process.env.REPLISTREAM_LOG_DIR}/${args[0]}.${child.pid}.log`));
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
    if (stderr.length > 4_000_000) stderr = stderr.slice(-2_000_000);
  });
  // REPLISTREAM_STDOUT_DIR: each service's stdout (where node's --trace-gc writes) goes to
  // <dir>/<command>.<pid>.out instead of nowhere
  if (process.env.REPLISTREAM_STDOUT_DIR) child.stdout!.pipe(createWriteStream(`${process.env.REPLISTREAM_STDOUT_DIR}/${args[0]}.${child.pid}.out`));
  else child.stdout!.resume();
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const p: ServiceProcess = {
    child,
    log: () => stderr,
    exited: () => exit,
    async kill9() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exit;
      all.delete(p);
    },
    async term() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const code = await exit;
      all.delete(p);
      return code;
    },
  };
  all.add(p);
  return p;
}

export async function killAll(): Promise<void> {
  await Promise.all([...all].map((p) => p.kill9()));
}

/** Runs a CLI command to its exit: the exit code, what it printed, and its log (stderr). */
export async function runCli(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string; err: string }> {
  const p = startService(args, env);
  let out = '';
  p.child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const code = await p.exited();
  return { code, out, err: p.log() };
}

/** Resolves when the process logged a line matching `re`, rejects when it exits first. */
export async function waitForLog(p: ServiceProcess, re: RegExp, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (re.test(p.log())) return;
    if (p.child.exitCode !== null) throw new Error(`process exited (${p.child.exitCode}) before logging ${re}:\n${p.log().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${re}:\n${p.log().slice(-3000)}`);
}
