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

/**
 * Runs a started service until SIGTERM/SIGINT (exit code 0) or until `failure` settles with an
 * error (exit code 1), then stops it. The common life of `capture` and `apply`.
 */
export async function runUntilStopped(what: string, log: Logger, failure: Promise<unknown>, stop: () => Promise<void>): Promise<number> {
  const outcome = await new Promise<number>((resolve) => {
    const onSignal = (sig: string) => {
      log.info({ signal: sig }, 'stopping');
      resolve(0);
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
    failure.then(
      (err) => {
        if (err instanceof Error) {
          log.error({ err: err.message }, `${what} stopped on an error`);
          resolve(1);
        } else resolve(0);
      },
      (err: Error) => {
        log.error({ err: err.message }, `${what} stopped on an error`);
        resolve(1);
      },
    );
  });
  await stop();
  return outcome;
}
