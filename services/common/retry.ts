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
 * How long a service may take to stop after SIGTERM/SIGINT or a fatal error. An orchestrator
 * sends SIGKILL after its own grace period; past this bound the CLI exits anyway. Nothing is lost
 * by that: positions are committed only after what they cover is durable, so an unfinished stop
 * leaves the last committed position in place, as a crash would.
 */
export const STOP_DEADLINE_MS = 1200;

/**
 * Runs a started service until SIGTERM/SIGINT (exit code 0) or until `failure` settles with an
 * error (exit code 1), then stops it, waiting at most `stopDeadlineMs` for the stop (a server
 * that is gone can make a graceful stop wait on its timeouts). The common life of `capture` and
 * `apply`.
 */
export async function runUntilStopped(
  what: string,
  log: Logger,
  failure: Promise<unknown>,
  stop: () => Promise<void>,
  stopDeadlineMs = STOP_DEADLINE_MS,
): Promise<number> {
  let onSignal: (sig: string) => void = () => undefined;
  const outcome = await new Promise<number>((resolve) => {
    onSignal = (sig: string) => {
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
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  let timer: NodeJS.Timeout | undefined;
  const stopped = await Promise.race([
    stop().then(
      () => true,
      (err: Error) => {
        log.warn({ err: err?.message ?? String(err) }, `${what}: error while stopping`);
        return true;
      },
    ),
    new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), stopDeadlineMs))),
  ]);
  clearTimeout(timer);
  if (!stopped) log.warn({ deadlineMs: stopDeadlineMs }, `${what}: not stopped within the deadline (a server is unreachable); exiting with the positions committed so far`);
  return outcome;
}
