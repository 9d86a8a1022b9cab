/**
 * The services as real processes (the `replistream` CLI), for tests that `kill -9` them.
 * Every process started here is registered and killed by `killAll()` (call it in afterEach).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { stack } from './stack-env.js';

const BIN = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', 'bin', 'replistream.mjs');

export interface ServiceProcess {
  child: ChildProcess;
  /** Everything the process wrote on stderr (JSON log lines). */
  log(): string;
  kill9(): Promise<void>;
  term(): Promise<number | null>;
  exited(): Promise<number | null>;
}

const all = new Set<ServiceProcess>();

export function startService(args: string[], env: Record<string, string> = {}): ServiceProcess {
  const s = stack();
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { ...process.env, REPLISTREAM_KAFKA: s.kafka, REPLISTREAM_REGISTRY: s.registry, REPLISTREAM_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
    if (stderr.length > 4_000_000) stderr = stderr.slice(-2_000_000);
  });
  child.stdout!.resume();
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
