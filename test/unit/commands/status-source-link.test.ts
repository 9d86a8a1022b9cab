import { describe, expect, it } from 'vitest';
import { formatTask } from '../../../services/commands/status.js';

describe('replistream status: the source link', () => {
  it('a disconnected link shows since when, the attempts and the last error; a connected one adds nothing', () => {
    const since = Date.UTC(2026, 10, 29, 23, 0, 0);
    const down = formatTask('synchronizing', [{ role: 'capture', name: 's1', state: 'synchronizing', sourceLink: { state: 'disconnected', since, retries: 4, reconnects: 0, lastError: 'connection to redis://h:1 failed: ECONNREFUSED' } }], ['http://c'], false);
    expect(down).toMatch(/^ {2}source link\s+disconnected since 2026-11-29T23:00:00\.000Z, 4 attempts: connection to redis:\/\/h:1 failed: ECONNREFUSED$/m);
    const up = formatTask('synchronizing', [{ role: 'capture', name: 's1', state: 'synchronizing', sourceLink: { state: 'connected', since: null, retries: 0, reconnects: 2, lastError: null } }], ['http://c'], false);
    expect(up).not.toMatch(/source link/);
  });
});

describe('status page: the source link', () => {
  it('a disconnected link is shown with since when, attempts and the last error (escaped)', async () => {
    const { renderStatusPage } = await import('../../../services/common/status-page.js');
    const body = {
      role: 'capture' as const, name: 's1', state: 'synchronizing', stateLabel: 'synchronizing', since: 0, failure: null, progress: null, lagMs: null,
      offsets: {}, skipped: {}, error: null, history: [], lagHistory: [], precheck: null,
      sourceLink: { state: 'disconnected', since: Date.UTC(2026, 10, 29, 23, 0, 0), retries: 3, reconnects: 0, lastError: 'refused <127.0.0.1:1>' },
    };
    const html = renderStatusPage(body as never);
    expect(html).toContain('<div id="source-link" class="failure"><strong>Source link disconnected</strong> since 2026-11-29T23:00:00.000Z, 3 attempts<br>refused &lt;127.0.0.1:1&gt;</div>');
    expect(renderStatusPage({ ...body, sourceLink: { ...body.sourceLink, state: 'connected' } } as never)).not.toContain('source-link');
  });
});
