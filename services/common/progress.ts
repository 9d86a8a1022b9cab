/**
 * Full-sync progress: keys and bytes done of the total the source announced, the rate over the
 * last seconds, percent and ETA; and the two ways it is shown outside the page — a text bar for
 * `replistream status` on a terminal, and the fields of the periodic log line.
 *
 * Pure (the clock is passed in). The rate is taken over a sliding window rather than since the
 * start, so the ETA follows a sync that slows down (a destination under load) instead of promising
 * the average of its fast beginning.
 */

export interface Progress {
  keysDone: number;
  /** Announced by the source (INFO keyspace, snapshot end); null while unknown. */
  keysTotal: number | null;
  bytesDone: number;
  /** Announced by the source (the RDB transfer's length); null while unknown (diskless transfer). */
  bytesTotal: number | null;
  /** 0–100, from bytes when their total is known, else from keys, else from records; null without a total. */
  percent: number | null;
  /** What the percent and ETA are measured in. */
  basis: 'bytes' | 'keys' | 'records' | null;
  keysPerSecond: number;
  bytesPerSecond: number;
  /** Seconds left at the current rate; null without a total or a rate. */
  etaSeconds: number | null;
  startedAt: number;
  elapsedSeconds: number;
  done: boolean;
}

interface Sample {
  at: number;
  keys: number;
  bytes: number;
}

export class ProgressMeter {
  private samples: Sample[] = [];
  private keysDone = 0;
  private bytesDone = 0;
  private keysTotal: number | null = null;
  private bytesTotal: number | null = null;
  private startedAt: number;
  private finished = false;
  /** Records done / records known to make up the sync (Kafka offsets), when no key or byte total is. */
  private records: { done: number; total: number; samples: Array<[number, number]> } | null = null;

  constructor(
    private readonly now: () => number = Date.now,
    private readonly windowMs = 10_000,
  ) {
    this.startedAt = now();
  }

  /** A new full sync: counts from zero. */
  restart(totals: { keys?: number | null; bytes?: number | null } = {}): void {
    this.samples = [];
    this.keysDone = 0;
    this.bytesDone = 0;
    this.keysTotal = totals.keys ?? null;
    this.bytesTotal = totals.bytes ?? null;
    this.startedAt = this.now();
    this.finished = false;
    this.records = null;
    this.sample();
  }

  /**
   * Records done of the records known to hold the sync: a fallback basis for a reader of the
   * events (an applier) that has no total of keys or bytes, only Kafka offsets.
   */
  setRecords(done: number, total: number): void {
    const now = this.now();
    const r = (this.records ??= { done, total, samples: [] });
    r.done = done;
    r.total = total;
    r.samples.push([now, done]);
    while (r.samples.length > 2 && r.samples[0][0] < now - this.windowMs) r.samples.shift();
  }

  setTotals(totals: { keys?: number | null; bytes?: number | null }): void {
    if (totals.keys !== undefined) this.keysTotal = totals.keys;
    if (totals.bytes !== undefined) this.bytesTotal = totals.bytes;
  }

  /** The counts so far (cumulative since restart). */
  update(keysDone: number, bytesDone: number): void {
    this.keysDone = keysDone;
    this.bytesDone = bytesDone;
    this.sample();
  }

  /** The full sync ended: what was done is the total. */
  finish(): void {
    this.finished = true;
    this.keysTotal = this.keysDone;
    if (this.bytesTotal === null || this.bytesDone > this.bytesTotal) this.bytesTotal = this.bytesDone;
  }

  view(): Progress {
    const now = this.now();
    const first = this.samples.find((s) => s.at >= now - this.windowMs) ?? this.samples[0];
    const span = first ? (now - first.at) / 1000 : 0;
    const keysPerSecond = span > 0 && !this.finished ? (this.keysDone - first.keys) / span : 0;
    const bytesPerSecond = span > 0 && !this.finished ? (this.bytesDone - first.bytes) / span : 0;
    let percent: number | null = null;
    let etaSeconds: number | null = null;
    let basis: Progress['basis'] = null;
    if (this.finished) {
      percent = 100;
      etaSeconds = 0;
      basis = this.bytesTotal ? 'bytes' : 'keys';
    } else if (this.bytesTotal) {
      basis = 'bytes';
      percent = Math.min(100, (100 * this.bytesDone) / this.bytesTotal);
      if (bytesPerSecond > 0) etaSeconds = Math.max(0, (this.bytesTotal - this.bytesDone) / bytesPerSecond);
    } else if (this.keysTotal) {
      basis = 'keys';
      percent = Math.min(100, (100 * this.keysDone) / this.keysTotal);
      if (keysPerSecond > 0) etaSeconds = Math.max(0, (this.keysTotal - this.keysDone) / keysPerSecond);
    } else if (this.records && this.records.total > 0) {
      basis = 'records';
      const r = this.records;
      percent = Math.min(100, (100 * r.done) / r.total);
      const [t0, d0] = r.samples[0];
      const rate = now > t0 ? (r.done - d0) / ((now - t0) / 1000) : 0;
      if (rate > 0) etaSeconds = Math.max(0, (r.total - r.done) / rate);
    }
    return {
      keysDone: this.keysDone,
      keysTotal: this.keysTotal,
      bytesDone: this.bytesDone,
      bytesTotal: this.bytesTotal,
      percent: percent === null ? null : Math.round(percent * 10) / 10,
      basis,
      keysPerSecond: Math.round(keysPerSecond),
      bytesPerSecond: Math.round(bytesPerSecond),
      etaSeconds: etaSeconds === null ? null : Math.round(etaSeconds),
      startedAt: this.startedAt,
      elapsedSeconds: Math.round((now - this.startedAt) / 1000),
      done: this.finished,
    };
  }

  private sample(): void {
    const at = this.now();
    const last = this.samples[this.samples.length - 1];
    // one sample per 100 ms is plenty for a 10 s window, and bounds the list
    if (last && at - last.at < 100) {
      last.keys = this.keysDone;
      last.bytes = this.bytesDone;
    } else this.samples.push({ at, keys: this.keysDone, bytes: this.bytesDone });
    const cut = at - this.windowMs * 2;
    while (this.samples.length > 2 && this.samples[0].at < cut) this.samples.shift();
  }
}

export function formatBytes(n: number | null): string {
  if (n === null) return '?';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

export function formatDuration(seconds: number | null): string {
  if (seconds === null) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** `[#########.........]  45.0%  1200/2667 keys  3.1 MiB/6.9 MiB  2.4 MiB/s  ETA 2s` */
export function progressBar(p: Progress, width = 30): string {
  const filled = p.percent === null ? 0 : Math.round((p.percent / 100) * width);
  const bar = p.percent === null ? '?'.repeat(width) : '#'.repeat(filled) + '.'.repeat(width - filled);
  const pct = p.percent === null ? '   ?%' : `${p.percent.toFixed(1).padStart(5)}%`;
  const keys = `${p.keysDone}/${p.keysTotal ?? '?'} keys`;
  const bytes = `${formatBytes(p.bytesDone)}/${formatBytes(p.bytesTotal)}`;
  const rate = `${formatBytes(p.bytesPerSecond)}/s ${p.keysPerSecond} keys/s`;
  return `${width > 0 ? `[${bar}] ` : ''}${pct}  ${keys}  ${bytes}  ${rate}  ETA ${p.done ? 'done' : formatDuration(p.etaSeconds)}${p.basis === 'records' ? ' (by Kafka records)' : ''}`;
}

/** Fields of the periodic full-sync log line (pino object), readable as they are. */
export function progressLogFields(p: Progress): Record<string, unknown> {
  return {
    keys: p.keysDone,
    keysTotal: p.keysTotal,
    bytes: p.bytesDone,
    bytesTotal: p.bytesTotal,
    percent: p.percent,
    keysPerSecond: p.keysPerSecond,
    bytesPerSecond: p.bytesPerSecond,
    eta: formatDuration(p.etaSeconds),
  };
}
