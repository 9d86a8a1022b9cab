/**
 * Rate limits an operator sets on a task (writes per second and bytes per second of an applier,
 * snapshot bytes per second read by capture), as token buckets.
 *
 * A bucket may go into debt: the work being paid for (a plan of writes, a chunk of the RDB) is
 * taken whole, and the caller then waits until the bucket is back at zero. Work cannot be split
 * to fit the bucket (a plan is written as a few transactions), and paying for it before doing it
 * keeps the long-run rate exact: over any window, what passes is at most the rate × the window
 * plus one burst (`burstSeconds` of the rate) plus the one piece of work in flight.
 *
 * Pure apart from the clock and the sleep, both injected, so the tests drive a fake clock. A limit
 * can change at any time (the HTTP endpoint): a caller waiting is woken and measures its wait
 * again against the new limit.
 */

/** A limit per quantity: a positive number per second, or null for none. */
export type Limits<Q extends string> = Record<Q, number | null>;

export class TokenBucket {
  private perSecond: number | null;
  private tokens: number;
  private last: number;

  constructor(
    perSecond: number | null,
    private readonly burstSeconds: number,
    private readonly now: () => number,
  ) {
    this.perSecond = perSecond;
    this.last = now();
    this.tokens = this.capacity();
  }

  get limit(): number | null {
    return this.perSecond;
  }

  /** A new limit: the debt already owed (in units) is paid at the new rate. */
  setLimit(perSecond: number | null): void {
    this.refill();
    const wasUnlimited = this.perSecond === null;
    this.perSecond = perSecond;
    if (perSecond === null || wasUnlimited) this.tokens = this.capacity();
    else this.tokens = Math.min(this.tokens, this.capacity());
  }

  /** Takes `amount` units at once, going into debt when the bucket holds fewer. */
  take(amount: number): void {
    this.refill();
    if (this.perSecond !== null) this.tokens -= amount;
  }

  /** Milliseconds until the debt is paid; 0 when there is none (or no limit). */
  waitMs(): number {
    this.refill();
    if (this.perSecond === null || this.tokens >= 0) return 0;
    return (-this.tokens / this.perSecond) * 1000;
  }

  private capacity(): number {
    return this.perSecond === null ? 0 : Math.max(1, this.perSecond * this.burstSeconds);
  }

  private refill(): void {
    const t = this.now();
    if (this.perSecond !== null && t > this.last) this.tokens = Math.min(this.capacity(), this.tokens + ((t - this.last) / 1000) * this.perSecond);
    this.last = Math.max(this.last, t);
  }
}

export interface ThrottleOptions {
  /** Seconds of the rate that may pass at once after an idle time (default 0.25). */
  burstSeconds?: number;
  now?: () => number;
  /** Resolves after `ms` (tests pass one that moves a fake clock). */
  sleep?: (ms: number) => Promise<void>;
}

const realSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

/** Several limited quantities paid together (e.g. ops and bytes of one plan of writes). */
export class Throttle<Q extends string> {
  private readonly buckets: Record<Q, TokenBucket>;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly wakers = new Set<() => void>();
  private closed = false;
  /** Time spent waiting for the limits, in total (ms). */
  waitedMs = 0;

  constructor(limits: Limits<Q>, opts: ThrottleOptions = {}) {
    this.now = opts.now ?? Date.now;
    this.sleep = opts.sleep ?? realSleep;
    const burst = opts.burstSeconds ?? 0.25;
    this.buckets = Object.fromEntries(Object.entries(limits).map(([q, v]) => [q, new TokenBucket(checkLimit(q, v as number | null), burst, this.now)])) as Record<Q, TokenBucket>;
  }

  limits(): Limits<Q> {
    return Object.fromEntries(Object.entries(this.buckets).map(([q, b]) => [q, (b as TokenBucket).limit])) as Limits<Q>;
  }

  /** True when at least one quantity is limited. */
  get active(): boolean {
    return Object.values<TokenBucket>(this.buckets).some((b) => b.limit !== null);
  }

  /** Changes the named limits (the others stay); callers waiting measure their wait again. */
  setLimits(changes: Partial<Limits<Q>>): void {
    for (const [q, v] of Object.entries(changes) as Array<[Q, number | null | undefined]>) {
      if (v === undefined) continue;
      if (!(q in this.buckets)) throw new RangeError(`no such limit: ${q}`);
      this.buckets[q].setLimit(checkLimit(q, v));
    }
    this.wakeAll();
  }

  /**
   * Pays for a piece of work of these amounts, then waits until every limit allows it. Resolves at
   * once when nothing is limited, and as soon as the throttle is closed (a service stopping).
   */
  async take(amounts: Partial<Record<Q, number>>): Promise<void> {
    if (this.closed) return;
    for (const [q, n] of Object.entries(amounts) as Array<[Q, number]>) if (n > 0) this.buckets[q]?.take(n);
    for (;;) {
      const ms = this.waitMs();
      if (ms <= 0 || this.closed) return;
      const started = this.now();
      await this.pause(ms);
      this.waitedMs += this.now() - started;
    }
  }

  /** Milliseconds until every limit is out of debt. */
  waitMs(): number {
    let ms = 0;
    for (const b of Object.values<TokenBucket>(this.buckets)) ms = Math.max(ms, b.waitMs());
    return ms;
  }

  /** Frees every caller waiting now and later (the service is stopping). */
  close(): void {
    this.closed = true;
    this.wakeAll();
  }

  private pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const wake = () => {
        this.wakers.delete(wake);
        resolve();
      };
      this.wakers.add(wake);
      void this.sleep(ms).then(wake);
    });
  }

  private wakeAll(): void {
    for (const w of [...this.wakers]) w();
  }
}

function checkLimit(quantity: string, v: number | null): number | null {
  if (v === null) return null;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new RangeError(`${quantity}: a limit is a number ≥ 0 per second (0 or null: no limit), not ${String(v)}`);
  return v === 0 ? null : v;
}

/**
 * A throttle's limits under the names of their settings (`maxOpsPerSecond`, or the flag's own
 * `max-ops-per-second`), as /status shows them and POST /limits changes them. `set` checks the
 * whole change before applying any of it, and its errors name the setting.
 */
export class LimitSettings<Q extends string> {
  constructor(
    private readonly throttle: Throttle<Q>,
    /** Setting name (camelCase) → the throttle's quantity. */
    private readonly names: Record<string, Q>,
  ) {}

  /** Each limit (null: none) and the time spent waiting for them so far. */
  view(): Record<string, number | null> & { throttledMs: number } {
    const limits = this.throttle.limits();
    const out: Record<string, number | null> = {};
    for (const [name, q] of Object.entries(this.names)) out[name] = limits[q];
    return { ...out, throttledMs: Math.round(this.throttle.waitedMs) };
  }

  set(changes: unknown): void {
    if (typeof changes !== 'object' || changes === null || Array.isArray(changes)) throw new RangeError('expected a JSON object of limits, e.g. {"maxOpsPerSecond": 5000}');
    const apply: Partial<Record<Q, number | null>> = {};
    for (const [key, value] of Object.entries(changes)) {
      const name = key.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
      const q = this.names[name];
      const flag = name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
      if (q === undefined) throw new RangeError(`${flag}: not a limit of this service (it has ${Object.keys(this.names).map((n) => n.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)).join(', ')})`);
      if (value !== null && !(typeof value === 'number' && Number.isSafeInteger(value) && value >= 0)) throw new RangeError(`${flag}: must be a whole number ≥ 0 (0 or null: no limit), not ${JSON.stringify(value)}`);
      apply[q] = value === 0 ? null : (value as number | null);
    }
    this.throttle.setLimits(apply);
  }
}
