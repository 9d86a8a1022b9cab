import { createServer } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ReplistreamError } from '../../../services/common/errors.js';
import { ServiceStatus } from '../../../services/common/service-status.js';
import type { Logger } from '../../../services/common/log.js';

function logger() {
  const lines: Array<{ fields: Record<string, unknown>; msg: string }> = [];
  const log = { info: (fields: Record<string, unknown>, msg: string) => lines.push({ fields, msg }), warn: () => undefined, error: () => undefined } as unknown as Logger;
  return { log, lines };
}

afterEach(() => vi.useRealTimers());

describe('service status', () => {
  it('logs a progress line every 5 s during a full sync, and none after it', async () => {
    vi.useFakeTimers();
    const { log, lines } = logger();
    const st = new ServiceStatus('capture', 's1', log);
    st.task.to('prechecking');
    st.fullSyncStarted({ keys: 1000, bytes: 100_000 });
    st.startTimers(() => 50);
    st.progress.update(100, 10_000);
    vi.advanceTimersByTime(5_000);
    st.progress.update(500, 50_000);
    vi.advanceTimersByTime(5_000);
    const progress = lines.filter((l) => l.msg === 'full sync progress');
    expect(progress).toHaveLength(2);
    expect(progress[1].fields).toMatchObject({ keys: 500, keysTotal: 1000, bytes: 50_000, bytesTotal: 100_000, percent: 50 });
    st.fullSyncEnded();
    vi.advanceTimersByTime(20_000);
    expect(lines.filter((l) => l.msg === 'full sync progress')).toHaveLength(2);
    expect(lines.filter((l) => l.msg.startsWith('task state:')).map((l) => l.msg)).toEqual(['task state: prechecking', 'task state: initializing', 'task state: synchronizing']);
    const body = st.body();
    expect(body.lagHistory.length).toBeGreaterThanOrEqual(5);
    expect(body.progress).toMatchObject({ done: true, percent: 100 });
    await st.close();
  });

  it('a refused precheck, credentials or setting is precheck failed; anything else failed', () => {
    const { log } = logger();
    const a = new ServiceStatus('applier', 'g', log);
    a.startFailed(new ReplistreamError('PRECHECK', 'destination db 0 is not empty', { setting: 'conflict-mode' }), 'redis://d:1');
    expect(a.body()).toMatchObject({ state: 'precheck-failed', failure: { reason: 'destination db 0 is not empty', setting: 'conflict-mode', server: 'redis://d:1' } });
    a.startFailed(new Error('later'));
    expect(a.task.state).toBe('precheck-failed');
    const b = new ServiceStatus('applier', 'g', log);
    b.startFailed(new ReplistreamError('INTERNAL', 'boom'));
    expect(b.body()).toMatchObject({ state: 'failed', error: 'boom' });
  });

  it('serves the state gauge and the details in /status', async () => {
    const { log } = logger();
    const st = new ServiceStatus('applier', 'g', log);
    st.details = () => ({ lagMs: 12, offsets: { 'db0[0]': 'committed 3 of 5' }, skipped: { 'X.Y': 2 }, state: 'ignored' });
    st.task.to('prechecking');
    st.task.to('synchronizing');
    const text = await st.metrics.metrics();
    expect(text).toMatch(/replistream_task_state\{state="synchronizing",service="applier"\} 1/);
    expect(text).toMatch(/replistream_full_sync_percent\{service="applier"\} -1/);
    const body = st.body();
    expect(body).toMatchObject({ state: 'synchronizing', lagMs: 12, skipped: { 'X.Y': 2 }, offsets: { 'db0[0]': 'committed 3 of 5' }, progress: null });
  });

  it('a port in use is named as the http-port setting to change', async () => {
    const { log } = logger();
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
    const port = (taken.address() as { port: number }).port;
    const st = new ServiceStatus('capture', 's1', log);
    await expect(st.listen(port, '127.0.0.1')).rejects.toThrow(new RegExp(`http-port: .*127\\.0\\.0\\.1:${port}.* in use`));
    taken.close();
    await st.close();
  });
});
