import { describe, expect, it } from 'vitest';
import { ProgressMeter, progressBar } from '../../../services/common/progress.js';
import { lagGraph, renderStatusPage } from '../../../services/common/status-page.js';

describe('full-sync progress', () => {
  it('percent from bytes, rate over the window, ETA from what is left', () => {
    let now = 0;
    const p = new ProgressMeter(() => now, 10_000);
    p.restart({ keys: 1000, bytes: 100_000 });
    for (let s = 1; s <= 20; s++) {
      now = s * 1000;
      p.update(s * 20, s * 2000); // 2000 B/s, 20 keys/s
    }
    const v = p.view();
    expect(v.percent).toBe(40);
    expect(v.bytesPerSecond).toBe(2000);
    expect(v.keysPerSecond).toBe(20);
    expect(v.etaSeconds).toBe(30); // 60 000 B left at 2000 B/s
    expect(v.elapsedSeconds).toBe(20);
  });

  it('follows a slowdown instead of averaging since the start', () => {
    let now = 0;
    const p = new ProgressMeter(() => now, 5_000);
    p.restart({ keys: 10_000 });
    now = 10_000;
    p.update(9000, 0); // fast start
    for (let s = 11; s <= 20; s++) {
      now = s * 1000;
      p.update(9000 + (s - 10) * 10, 0); // then 10 keys/s
    }
    expect(p.view().keysPerSecond).toBe(10);
    expect(p.view().etaSeconds).toBe(90);
  });

  it('keys when no byte total is announced; unknown without any total', () => {
    let now = 0;
    const p = new ProgressMeter(() => now);
    p.restart({});
    now = 1000;
    p.update(5, 50);
    expect(p.view().percent).toBeNull();
    expect(p.view().etaSeconds).toBeNull();
    p.setTotals({ keys: 20 });
    expect(p.view().percent).toBe(25);
    p.finish();
    expect(p.view()).toMatchObject({ percent: 100, keysTotal: 5, done: true });
  });

  it('draws a bar for a terminal', () => {
    let now = 0;
    const p = new ProgressMeter(() => now);
    p.restart({ keys: 100, bytes: 1024 * 1024 });
    now = 2000;
    p.update(50, 512 * 1024);
    const line = progressBar(p.view(), 10);
    expect(line).toContain('[#####.....]');
    expect(line).toContain(' 50.0%');
    expect(line).toContain('50/100 keys');
    expect(line).toContain('512.0 KiB/1.0 MiB');
  });
});

describe('status page', () => {
  const body = {
    role: 'applier', name: 'g1', state: 'initializing', stateLabel: 'initializing (full sync)', since: 0,
    failure: null, history: [], lagMs: 1500, lagHistory: [[0, 100], [5000, 3000], [10000, 1500]] as Array<[number, number]>,
    offsets: { 'db0/p0': 12 }, skipped: { 'MODULE.X': 3 }, error: '<script>alert(1)</script>',
    progress: { keysDone: 10, keysTotal: 40, bytesDone: 100, bytesTotal: null, percent: 25, basis: 'keys' as const, keysPerSecond: 5, bytesPerSecond: 50, etaSeconds: 6, startedAt: 0, elapsedSeconds: 2, done: false },
  };
  it('shows state, progress, offsets, skipped commands and the lag graph, escaping what it prints', () => {
    const html = renderStatusPage(body);
    expect(html).toContain('data-state="initializing"');
    expect(html).toContain('25.0%');
    expect(html).toContain('10 of 40 keys');
    expect(html).toContain('MODULE.X');
    expect(html).toContain('<polyline');
    expect(html).not.toContain('<script>');
    expect(html).not.toMatch(/https?:\/\/(?!www\.w3\.org)/); // nothing fetched from elsewhere
  });
  it('a lag graph spans its samples', () => {
    const svg = lagGraph([[0, 0], [60_000, 1000]], 200, 100);
    expect(svg).toContain('-1.0 min');
    expect(svg).toMatch(/points="30\.0,80\.0 190\.0,20\.0"/);
  });
});

describe('status of a task', () => {
  it('shows the task state and an applier against the key total its capture announced', async () => {
    const { formatTask } = await import('../../../services/commands/status.js');
    const prog = (keysDone: number, keysTotal: number | null, percent: number, basis: 'bytes' | 'records') => ({
      keysDone, keysTotal, bytesDone: 0, bytesTotal: null, percent, basis, keysPerSecond: 0, bytesPerSecond: 0, etaSeconds: null, startedAt: 0, elapsedSeconds: 0, done: false,
    });
    const out = formatTask(
      'initializing',
      [
        { role: 'capture', name: 's1', state: 'synchronizing', progress: { ...prog(100, 100, 100, 'bytes'), done: true } },
        { role: 'applier', name: 'g1', state: 'initializing', progress: prog(40, null, 40, 'records'), failure: { reason: 'x', setting: 'y' } },
      ],
      ['http://c', 'http://a'],
      true,
    );
    expect(out).toMatch(/^task\s+initializing \(full sync\)$/m);
    expect(out).toMatch(/^applier g1 \(http:\/\/a\)$/m);
    expect(out).toMatch(/full sync\s+\[#{12}\.{18}\]\s+40\.0%\s+40\/100 keys/);
    expect(out).toMatch(/reason\s+x \(setting: --y\)/);
  });
});
