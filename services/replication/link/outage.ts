/**
 * The link's outages: from the loss of a session until the source accepts an attempt again. This
 * keeps the link's health (`LinkHealth`), the backoff before each attempt and the bound
 * (`downTimeoutMs`) after which the link gives up; the link decides when to try, this how long
 * to wait.
 */
import { ReplistreamError } from '../../common/errors.js';
import type { LinkHealth, ReplicaLinkOptions } from './link-types.js';

export class OutageTracker {
  private readonly opts: Pick<ReplicaLinkOptions, 'downTimeoutMs' | 'downTimeoutSetting'>;
  private readonly initialDelayMs: number;
  private readonly maxDelayMs: number;
  /** Losses since the stream last flowed: the backoff's exponent. */
  private attempts = 0;
  private readonly linkHealth: LinkHealth = { up: true, downSince: null, retries: 0, reconnects: 0, lastError: null };

  constructor(opts: Pick<ReplicaLinkOptions, 'reconnect' | 'downTimeoutMs' | 'downTimeoutSetting'>) {
    this.opts = opts;
    this.initialDelayMs = opts.reconnect?.initialDelayMs ?? 100;
    this.maxDelayMs = opts.reconnect?.maxDelayMs ?? 30_000;
  }

  /** Up, since when down, attempts in the outage, reconnects so far (a copy). */
  get health(): LinkHealth {
    return { ...this.linkHealth };
  }

  /** A new attempt: during an outage it counts as a retry. */
  attemptStarts(): void {
    if (!this.linkHealth.up) this.linkHealth.retries++;
  }

  /** The stream flows: the next loss starts the backoff afresh. */
  streaming(): void {
    this.attempts = 0;
  }

  /**
   * A session ended with a retriable `error`: the link is down (since now, unless it already was).
   * Returns the wait before the next attempt, or the error to stop with once the outage has lasted
   * `downTimeoutMs`.
   */
  lost(error: ReplistreamError, sourceUrl: string): { retryInMs: number } | { giveUp: ReplistreamError } {
    const now = Date.now();
    const health = this.linkHealth;
    if (health.up) Object.assign(health, { up: false, downSince: now, retries: 0 });
    health.lastError = error.message;
    const downMs = now - (health.downSince as number);
    const bound = this.opts.downTimeoutMs ?? 0;
    if (bound > 0 && downMs >= bound) {
      const setting = this.opts.downTimeoutSetting ?? 'source-down-timeout-ms';
      return {
        giveUp: new ReplistreamError(
          'CONNECTION',
          `the source ${sourceUrl} has been unreachable for ${Math.round(downMs / 1000)} s (${health.retries} attempts; last: ${error.message}): giving up after ${setting} (${bound} ms); bring the source back, or raise ${setting} (0 retries forever)`,
          { setting, cause: error, details: { downMs, retries: health.retries } },
        ),
      };
    }
    // the last attempt falls on the bound, not a backoff step after it
    const delay = Math.min(this.initialDelayMs * 2 ** this.attempts, this.maxDelayMs, bound > 0 ? bound - downMs : Infinity);
    this.attempts = Math.min(this.attempts + 1, 30);
    return { retryInMs: delay };
  }

  /** The source accepted an attempt: the outage's length and attempts, or null when there was none. */
  over(): { downMs: number; retries: number } | null {
    const h = this.linkHealth;
    if (h.up) return null;
    const downMs = Date.now() - (h.downSince as number);
    const retries = h.retries;
    Object.assign(h, { up: true, downSince: null, retries: 0, lastError: null, reconnects: h.reconnects + 1 });
    return { downMs, retries };
  }
}
