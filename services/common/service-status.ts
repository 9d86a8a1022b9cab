/**
 * What one running service (capture, or an applier) tells its operator: its task state machine,
 * its full-sync progress, the lag of the last minutes, and the service's own figures; served as
 * /status (JSON), / (the page) and /metrics, and logged as a progress line during a full sync.
 *
 * The services create it before anything can fail, so a failed precheck or start is visible on the
 * port like any other state, and set `details`/`ready`/`control` once their parts exist.
 */
import type { Server } from 'node:http';
import { Gauge, type Registry } from 'prom-client';
import { describeError, ReplistreamError } from './errors.js';
import { newMetricsRegistry, startHttpStatus } from './http-status.js';
import type { LimitSettings } from './rate-limit.js';
import type { Logger } from './log.js';
import { ProgressMeter, progressLogFields } from './progress.js';
import { renderStatusPage, type StatusBody } from './status-page.js';
import { TASK_STATES, TaskStateMachine, type TaskFailure } from './task-state.js';

export interface ServiceDetails {
  lagMs?: number | null;
  offsets?: Record<string, unknown>;
  skipped?: Record<string, number>;
  error?: string | null;
  [more: string]: unknown;
}

/** Lag samples kept: one per `LAG_SAMPLE_MS` over the last `LAG_WINDOW_MS`. */
const LAG_SAMPLE_MS = 5_000;
const LAG_WINDOW_MS = 15 * 60_000;

export class ServiceStatus {
  readonly task: TaskStateMachine;
  readonly progress: ProgressMeter;
  readonly metrics: Registry;
  /** True once a full sync started in this run (progress is shown from then on). */
  private fullSyncSeen = false;
  private readonly lagSamples: Array<[number, number]> = [];
  private server: Server | null = null;
  private listening: Promise<void> | null = null;
  private timers: NodeJS.Timeout[] = [];
  details: () => ServiceDetails = () => ({});
  ready: () => boolean = () => false;
  control: ((action: 'pause' | 'resume') => Promise<void>) | null = null;
  /** The rate limits of this service, shown in /status and changed by POST /limits. */
  limits: LimitSettings<string> | null = null;
  /** The precheck's items, when this start ran them (shown as a table on the page). */
  precheck: Array<{ item: string; result: string; detail: string }> | null = null;

  constructor(
    readonly role: 'capture' | 'applier',
    readonly name: string,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.task = new TaskStateMachine(now, (t) => log.info({ from: t.from, to: t.to, detail: t.detail }, `task state: ${t.to}`));
    this.progress = new ProgressMeter(now);
    this.metrics = newMetricsRegistry(role);
    const self = this;
    new Gauge({
      name: 'replistream_task_state',
      help: 'Task state of this service: 1 for the current state, 0 for the others',
      labelNames: ['state'],
      registers: [this.metrics],
      collect() {
        for (const s of TASK_STATES) this.set({ state: s }, s === self.task.state ? 1 : 0);
      },
    });
    const progressGauge = (name: string, help: string, read: (p: ReturnType<ProgressMeter['view']>) => number | null) =>
      new Gauge({
        name,
        help,
        registers: [this.metrics],
        collect() {
          const v = self.fullSyncSeen ? read(self.progress.view()) : null;
          this.set(v ?? -1);
        },
      });
    new Gauge({
      name: 'replistream_rate_limit',
      help: 'Rate limits of this service by setting, per second (-1: none)',
      labelNames: ['setting'],
      registers: [this.metrics],
      collect() {
        const v = self.limits?.view();
        if (!v) return;
        for (const [name, limit] of Object.entries(v)) {
          if (name !== 'throttledMs') this.set({ setting: name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`) }, limit ?? -1);
        }
      },
    });
    new Gauge({
      name: 'replistream_throttled_seconds',
      help: 'Time spent waiting for the rate limits since the start',
      registers: [this.metrics],
      collect() {
        this.set((self.limits?.view().throttledMs ?? 0) / 1000);
      },
    });
    progressGauge('replistream_full_sync_keys_done', 'Keys of the current or last full sync done', (p) => p.keysDone);
    progressGauge('replistream_full_sync_keys_total', 'Keys announced by the source for the full sync (-1: unknown)', (p) => p.keysTotal);
    progressGauge('replistream_full_sync_bytes_done', 'Bytes of the current or last full sync done', (p) => p.bytesDone);
    progressGauge('replistream_full_sync_bytes_total', 'Bytes announced by the source for the full sync (-1: unknown)', (p) => p.bytesTotal);
    progressGauge('replistream_full_sync_percent', 'Full sync progress in percent (-1: unknown)', (p) => p.percent);
    progressGauge('replistream_full_sync_eta_seconds', 'Full sync time left at the current rate (-1: unknown)', (p) => p.etaSeconds);
  }

  /** Serves the port (once; later calls wait for the first). 0 disables. */
  async listen(port: number, host?: string): Promise<void> {
    this.listening ??= (async () => {
      this.server = await this.serve(port, host).catch((err: NodeJS.ErrnoException) => {
        this.listening = null;
        if (err instanceof ReplistreamError) throw err;
        throw new ReplistreamError('CONFIG', `http-port: cannot serve ${host ?? '127.0.0.1'}:${port}: ${err.code === 'EADDRINUSE' ? 'the port is in use' : err.code === 'EADDRNOTAVAIL' ? 'no such address on this host (http-host)' : err.message}`, { setting: err.code === 'EADDRNOTAVAIL' ? 'http-host' : 'http-port', cause: err });
      });
    })();
    await this.listening;
  }

  private serve(port: number, host?: string): Promise<Server | null> {
    return startHttpStatus(
      port,
      {
        status: () => this.body(),
        ready: () => this.ready(),
        page: () => renderStatusPage(this.body()),
        control: async (action) => {
          if (!this.control) throw new Error(`the ${this.role} cannot ${action}`);
          await this.control(action);
          return this.body();
        },
        setLimits: (changes) => {
          if (!this.limits) throw new Error(`the ${this.role} has no rate limits`);
          this.limits.set(changes);
          this.log.info({ limits: this.limits.view() }, 'rate limits changed');
          return this.body();
        },
      },
      this.metrics,
      host,
    );
  }

  get port(): number | null {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a.port : null;
  }

  /** A full sync starts: progress counts from zero against the totals known now. */
  fullSyncStarted(totals: { keys?: number | null; bytes?: number | null } = {}): void {
    this.fullSyncSeen = true;
    this.progress.restart(totals);
    this.task.follow('initializing');
  }

  fullSyncEnded(): void {
    this.progress.finish();
    this.task.follow('synchronizing');
  }

  /** Records the current lag every few seconds and logs a progress line while a full sync runs. */
  startTimers(lagMs: () => number | null, progressLogMs = 5_000): void {
    const sampleLag = () => {
      const lag = lagMs();
      if (lag !== null && lag >= 0) this.lagSamples.push([this.now(), lag]);
      while (this.lagSamples.length > 0 && this.lagSamples[0][0] < this.now() - LAG_WINDOW_MS) this.lagSamples.shift();
    };
    sampleLag();
    const lag = setInterval(sampleLag, LAG_SAMPLE_MS);
    const line = setInterval(() => {
      if (this.task.state === 'initializing') this.log.info(progressLogFields(this.progress.view()), 'full sync progress');
    }, progressLogMs);
    lag.unref();
    line.unref();
    this.timers.push(lag, line);
  }

  /** A start-up error: a precheck item or the configuration is at fault, or something else. */
  startFailed(err: unknown, server?: string): void {
    if (this.task.state === 'precheck-failed' || this.task.state === 'failed') return;
    const e = err instanceof ReplistreamError ? err : null;
    const failure: TaskFailure = { reason: describeError(err), ...(e?.setting ? { setting: e.setting } : {}), ...(server ? { server } : {}), ...(e ? { code: e.code } : {}) };
    if (this.task.state === 'not-started') this.task.to('prechecking');
    if (e && (e.code === 'PRECHECK' || e.code === 'AUTH' || e.code === 'CONFIG') && this.task.precheckFailed(failure)) return;
    this.task.fail(failure);
  }

  body(): StatusBody {
    const d = this.details();
    const v = this.task.view();
    const { lagMs = null, offsets = {}, skipped = {}, error = null, ...more } = d;
    return {
      ...more,
      role: this.role,
      name: this.name,
      state: v.state,
      stateLabel: v.label,
      since: v.since,
      failure: v.failure,
      progress: this.fullSyncSeen ? this.progress.view() : null,
      lagMs,
      offsets,
      skipped,
      error: error ?? v.failure?.reason ?? null,
      history: v.history,
      lagHistory: [...this.lagSamples],
      precheck: this.precheck,
      limits: this.limits?.view() ?? null,
    };
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    await this.listening?.catch(() => undefined);
    const server = this.server;
    this.server = null;
    if (server) {
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeAllConnections(); // a browser's keep-alive socket would hold close() open
      await closed;
    }
  }
}

/**
 * After a failed precheck: the service keeps its port open, the page and /status showing what to
 * fix, until it is told to stop (an orchestrator restarting it in a loop would hide the reason).
 * Without a port there is nothing to show: returns at once.
 */
export async function holdWhilePrecheckFailed(status: ServiceStatus, log: Logger): Promise<void> {
  if (status.task.state !== 'precheck-failed' || status.port === null) return;
  log.error({ reason: status.task.failure?.reason, setting: status.task.failure?.setting, port: status.port }, 'precheck failed: the status page shows what to fix; stop this process (SIGTERM/Ctrl-C), fix it and start again');
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve());
    process.once('SIGINT', () => resolve());
  });
}
