/**
 * The stack starts each Redis instance with the server asked for (services/stack/servers.ts):
 * Redis 6.2 and Valkey 8.1 from their PyPI wheels, next to Debian's 7.0. Started here on private
 * ports and a private state directory, so the shared stack is not touched.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { serverVersionFromInfo } from '../../services/common/server-version.js';
import { pidOf, stackLayout, stackParts } from '../../services/stack/stack.js';
import { freePort } from '../helpers/redis-server.js';

const stateDir = mkdtempSync(join(tmpdir(), 'replistream-stack-servers-'));
const pids: number[] = [];
afterAll(() => {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  rmSync(stateDir, { recursive: true, force: true });
});

describe('stack servers per instance', () => {
  it('starts the source as Redis 6.2 and the destination as Valkey 8.1, and says which runs', async () => {
    mkdirSync(stateDir, { recursive: true });
    const layout = { ...stackLayout(), stateDir, sourcePort: await freePort(), destinationPort: await freePort() };
    const parts = stackParts(layout, { servers: { source: 'redis-6.2', destination: 'valkey-8.1' } }).filter((p) => p.name.startsWith('redis-'));
    expect(parts.map((p) => [p.name, p.server])).toEqual([['redis-source', 'redis-6.2'], ['redis-destination', 'valkey-8.1']]);
    for (const p of parts) pids.push(p.start());
    const labels: string[] = [];
    for (const p of parts) {
      const deadline = Date.now() + 15_000;
      while (!(await p.ready())) {
        if (Date.now() > deadline || !pidOf(layout, p.name)) throw new Error(`${p.name} did not start`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const c = new Redis(p.port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 1 });
      await c.connect();
      labels.push(serverVersionFromInfo(await c.info('server')).label);
      c.disconnect();
      expect(p.running?.()).toBe(p.server);
    }
    expect(labels).toEqual(['Redis 6.2.14', 'Valkey 8.1.8']);
  });
});
