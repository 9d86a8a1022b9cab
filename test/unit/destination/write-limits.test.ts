import { describe, expect, it } from 'vitest';
import type { ChangeEvent } from '../../../services/events/model.js';
import { limitWrites, writeWeight } from '../../../services/destination/write-limits.js';
import { EncodedCommandEvent } from '../../../services/events/encoded-command.js';

const pos = { epoch: 1, offset: 10, seq: 0, replid: 'r' };
const b = (s: string) => Buffer.from(s);

describe('write weight', () => {
  it('counts a key or a command as one op and the bytes sent; markers and heartbeats are free', () => {
    const events: ChangeEvent[] = [
      { kind: 'snapshot-begin', pos, db: 0, rdbVersion: 10, sourceVersion: '7.0.0' },
      { kind: 'snapshot-key', pos, db: 0, key: b('k1'), type: 'string', expireAtMs: null, payload: b('0123456789'), value: { type: 'string', value: b('xy') }, piece: null },
      // commands mode: no payload, the typed value's bytes
      { kind: 'snapshot-key', pos, db: 0, key: b('h'), type: 'hash', expireAtMs: null, payload: null, value: { type: 'hash', entries: [{ field: b('f'), value: b('vvv'), expireAtMs: null }] }, piece: null },
      { kind: 'command', pos, db: 0, commands: [[b('MULTI')], [b('SET'), b('a'), b('1')], [b('INCR'), b('a')], [b('EXEC')]], participants: [], piece: null },
      { kind: 'heartbeat', pos, db: 0, timeMs: 1 },
      { kind: 'snapshot-end', pos, db: 0, keyCount: 2 },
    ];
    expect(writeWeight([{ events: events.slice(0, 3) }, { events: events.slice(3) }])).toEqual({ ops: 2 + 4, bytes: (2 + 10) + (1 + 1 + 3) + (5 + 5 + 5 + 4) });
  });

  it('weighs an event read in RESP by its bytes as the same event with its arguments', () => {
    const value = 'v'.repeat(1234);
    const args = [b('SET'), b('key:1'), b(value), b('')];
    const resp = b(`##*4\r\n$3\r\nSET\r\n$5\r\nkey:1\r\n$1234\r\n${value}\r\n$0\r\n\r\n##`);
    const encoded = new EncodedCommandEvent(pos, 0, resp, 2, resp.length - 2, args[0], 19, 24);
    const plain: ChangeEvent = { kind: 'command', pos, db: 0, commands: [args], participants: [], piece: null };
    expect(writeWeight([{ events: [encoded] }])).toEqual({ ops: 1, bytes: 3 + 5 + 1234 });
    expect(writeWeight([{ events: [encoded] }])).toEqual(writeWeight([{ events: [plain] }]));
    expect(encoded.commands).toEqual([args]);
  });

  it('an unlimited writer passes plans straight through; limits change through its settings', async () => {
    const seen: number[] = [];
    const writer = {
      applyStreams: async (segments: Array<{ stream: string; events: ChangeEvent[] }>) => (seen.push(segments.length), { applied: 1, skipped: 0 }),
      appliedPosition: async () => null,
      storedPositions: async () => new Map(),
    };
    const limited = limitWrites(writer as never, {});
    expect(limited.maxEventsPerPlan).toBeUndefined();
    await limited.writer.applyStreams([{ stream: 's', events: [] }]);
    expect(seen).toEqual([1]);
    limited.settings.set({ maxOpsPerSecond: 1000 });
    expect(limited.settings.view()).toMatchObject({ maxOpsPerSecond: 1000, maxBytesPerSecond: null });
    // an ops limit at start sizes plans to about a fifth of a second of it, within 500…5000
    expect(limitWrites(writer as never, { maxOpsPerSecond: 4000 }).maxEventsPerPlan).toBe(800);
    expect(limitWrites(writer as never, { maxOpsPerSecond: 100 }).maxEventsPerPlan).toBe(500);
    expect(limitWrites(writer as never, { maxOpsPerSecond: 1e6 }).maxEventsPerPlan).toBe(5000);
  });
});
