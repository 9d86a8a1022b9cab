import { ReplistreamError } from './errors.js';
import type { Logger } from './log.js';

/**
 * Starts a service, retrying with exponential backoff (1 s, 2 s, 4 s: `attempts` tries)
 * while the failure is retriable (an unreachable broker or server); anything else fails at once.
 */
export async function withStartupRetry<T>(what: string, log: Logger, start: () => Promise<T>, attempts = 4): Promise<T> {
  let delay = 1000;
  for (let i = 1; ; i++) {
    try {
      return await start();
    } catch (err) {
      const retriable = err instanceof ReplistreamError && err.retriable;
      if (!retriable || i >= attempts) throw err;
      log.warn({ err: (err as Error).message, attempt: i, retryInMs: delay }, `${what}: start failed, retrying`);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 30_000);
    }
  }
}
