import { afterAll, describe, expect, it } from 'vitest';
import { rehearseApplyPath } from '../../../services/applier/warm-up.js';
import { client, cmd, pos, type RedisServer, startRedis, writer } from './helpers.js';

/**
 * The applier's warm-up runs made-up commands through the writer's `rehearse`: it must leave the
 * destination and what the writer knows exactly as they were, so that real events written after it
 * land as they would have without it.
 */
describe('writer rehearsal (the warm-up)', () => {
  const servers: RedisServer[] = [];
  afterAll(async () => {
    for (const s of servers) await s.stop();
  });

  it('writes nothing, and the stream applied after it is applied whole', async () => {
    const server = await startRedis();
    servers.push(server);
    const w = writer(server.url);
    await w.start();
    const c = client(server.url);
    const before = await c.dbsize();

    // the whole warm-up, through the real writer, decoded as the applier decodes for it
    const r = await rehearseApplyPath(w, () => ({ skipValuesUpToRdbVersion: w.restoredPayloadsUpTo(), encodeCommands: w.takesEncodedCommands() }), 0, { units: 5000 });
    expect(r.units).toBe(5000);
    expect(await c.dbsize()).toBe(before);
    expect(await c.keys('rehearsal.replistream:*')).toEqual([]);
    for (let db = 1; db < 16; db++) {
      await c.select(db);
      expect(await c.dbsize()).toBe(0);
    }
    await c.select(0);
    expect(w.stats.applied).toBe(0);
    expect(await w.appliedPosition('t:0')).toBeNull();

    // the real stream on the same writer: every event applied, positions from its own events
    const events = [cmd(pos(100), 0, ['SET', 'a', '1']), cmd(pos(110), 0, ['INCR', 'n']), cmd(pos(120), 0, ['INCR', 'n'], ['RPUSH', 'l', 'x'])];
    const res = await w.applyStreams([{ stream: 't:0', events }]);
    expect(res).toEqual({ applied: 3, skipped: 0 });
    expect(await c.get('a')).toBe('1');
    expect(await c.get('n')).toBe('2');
    expect(await c.lrange('l', 0, -1)).toEqual(['x']);
    expect((await w.appliedPosition('t:0'))?.offset).toBe(120);
    c.disconnect();
    await w.close();
  });
});
