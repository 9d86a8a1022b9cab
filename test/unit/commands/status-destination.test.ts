import { describe, expect, it } from 'vitest';
import { formatTask } from '../../../services/commands/status.js';

describe('replistream status: a destination being retried', () => {
  it('an applier whose writes fail shows since when and the last error; a healthy one adds nothing', () => {
    const since = Date.UTC(2026, 10, 30, 1, 0, 0);
    const applier = (writer: object) => ({ role: 'applier', name: 'g', state: 'synchronizing', writer });
    const failing = formatTask('synchronizing', [applier({ failingSince: since, lastError: 'the destination connection is down (reconnecting)' })], ['http://a'], false);
    expect(failing).toMatch(/^ {2}destination\s+failing since 2026-11-30T01:00:00\.000Z, retrying: the destination connection is down \(reconnecting\)$/m);
    expect(formatTask('synchronizing', [applier({ failingSince: null, lastError: null })], ['http://a'], false)).not.toMatch(/destination/);
  });
});
