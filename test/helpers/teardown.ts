/**
 * Undoing what a test set up: the servers, services, clients and timers it registers are stopped
 * after each test (or after the file), last first, after every process of processes.ts is killed.
 * A clean-up that fails does not keep the others from running, nor hide the test's own failure:
 * a server already gone or a service that failed to start is the usual cause, not a finding.
 *
 * Only for test files (it registers vitest hooks): the benches use redis-server.ts and
 * processes.ts directly.
 */
import { afterAll, afterEach } from 'vitest';
import type { ServerKind } from '../../services/stack/servers.js';
import { killAll } from './processes.js';
import { startRedis, type RedisServer } from './redis-server.js';

export type Cleanup = () => Promise<unknown> | unknown;

export interface Teardown {
  /** What to undo, pushed as it is set up (run last first). */
  cleanups: Cleanup[];
  /** A private redis-server (the file's defaults overlaid with `config`), stopped at tear-down. */
  server(config?: Record<string, string | number | string[]>, opts?: { server?: ServerKind }): Promise<RedisServer>;
}

export interface TeardownOptions {
  /** 'each' (default): after every test; 'all': once, after the file (tests that share a set-up). */
  after?: 'each' | 'all';
  /** Configuration every `server()` of the file starts with. */
  serverDefaults?: Record<string, string | number | string[]>;
}

/** Registers the tear-down hook of a test file (call once, at its top level). */
export function useTeardown(options: TeardownOptions = {}): Teardown {
  const cleanups: Cleanup[] = [];
  (options.after === 'all' ? afterAll : afterEach)(async () => {
    await killAll();
    for (const c of cleanups.splice(0).reverse()) {
      try {
        await c();
      } catch {
        // see the module comment
      }
    }
  });
  return {
    cleanups,
    async server(config = {}, opts = {}) {
      const s = await startRedis({ ...options.serverDefaults, ...config }, opts);
      cleanups.push(() => s.stop());
      return s;
    },
  };
}
