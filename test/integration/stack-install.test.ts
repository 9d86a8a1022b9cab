/**
 * A fresh machine without Redis: the stack installs the Debian packages it needs when it can
 * (root with apt-get), and otherwise stops before starting anything, naming the exact command.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ensurePrograms, missingPackages, stackLayout } from '../../services/stack/stack.js';

const dirs: string[] = [];
const tempDir = (tag: string) => {
  const d = mkdtempSync(join(tmpdir(), `replistream-${tag}-`));
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('stack on a machine without redis-server', () => {
  it('`npm run stack -- up` names the apt-get command and starts nothing when it cannot install', () => {
    const bin = tempDir('bin'); // PATH holds node only: no redis-server, redis-cli, mvn, apt-get
    symlinkSync(process.execPath, join(bin, 'node'));
    const cache = tempDir('cache');
    const r = spawnSync(process.execPath, [join('node_modules', 'tsx', 'dist', 'cli.mjs'), 'services/stack/cli.ts', 'up'], {
      env: { HOME: process.env.HOME, PATH: bin, REPLISTREAM_CACHE_DIR: cache, REPLISTREAM_STACK_PORT_BASE: '29000' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('redis-server, redis-tools, maven are not installed');
    const sudo = process.getuid?.() === 0 ? '' : 'sudo ';
    expect(r.stderr).toContain(`${sudo}apt-get install -y --no-install-recommends redis-server redis-tools maven`);
  });

  it('as root with apt-get, installs the missing packages and finds them on PATH afterwards', () => {
    const bin = tempDir('apt');
    const calls = join(bin, 'calls.log');
    // A stand-in apt-get that records its arguments and "installs" by creating the programs.
    writeFileSync(
      join(bin, 'apt-get'),
      `#!/bin/sh\necho "$DEBIAN_FRONTEND $*" >> ${calls}\n` +
        `case "$1" in install) for p in redis-server redis-cli mvn java; do printf '#!/bin/sh\\n' > ${bin}/$p; /bin/chmod +x ${bin}/$p; done;; esac\n`,
    );
    chmodSync(join(bin, 'apt-get'), 0o755);
    const layout = { ...stackLayout(), cacheDir: tempDir('cache2') };
    const env = { PATH: bin }; // the stand-in apt-get only: the real programs are not visible
    expect(missingPackages(layout, env)).toEqual(['redis-server', 'redis-tools', 'maven']);
    const lines: string[] = [];
    ensurePrograms(layout, { env, root: true, log: (l) => lines.push(l) });
    expect(lines.join('')).toContain('installing redis-server redis-tools maven');
    expect(readFileSync(calls, 'utf8').trim().split('\n')).toEqual([
      'noninteractive update -qq',
      'noninteractive install -y -qq --no-install-recommends redis-server redis-tools maven',
    ]);
    expect(missingPackages(layout, env)).toEqual([]);
  });
});
