import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { EventBuffer, STREAM_EVENTS_PER_RECORD } from '../../../services/capture/event-buffer.js';
import { RecordPacker, DEFAULT_MAX_RECORD_BYTES, type SealedRecord } from '../../../services/events/split.js';
import { NO_PARTICIPANTS, type CommandEvent, type SnapshotKey } from '../../../services/events/model.js';

/** An event buffer over a sink that keeps what it is sent; `snapshot` says which mode it is in. */
function buffer(snapshot: boolean) {
  const sent: SealedRecord[] = [];
  const b = new EventBuffer({
    opts: {
      sink: {
        sendRecords: async (_db, _partition, records) => void sent.push(...records),
        writePosition: async () => undefined,
        readPosition: async () => null,
      },
    },
    stats: { eventsProduced: 0, durableOffset: 0, epoch: 1, replid: null },
    log: pino({ level: 'silent' }),
    snapshotCapturing: () => snapshot,
    lastUnitEnd: () => null,
    link: () => null,
    enqueue: async (work) => work(),
    failed: () => false,
    stopping: () => false,
    fail: (err) => {
      throw err;
    },
  });
  b.useEncoder(RecordPacker, DEFAULT_MAX_RECORD_BYTES);
  return { b, sent };
}

const pos = (i: number) => ({ epoch: 1, offset: i, seq: 0, replid: 'r' });
const command = (i: number): CommandEvent => ({ kind: 'command', pos: pos(i), db: 0, commands: [[Buffer.from('SET'), Buffer.from(`k${i}`), Buffer.from('v')]], participants: NO_PARTICIPANTS, piece: null });
const key = (i: number): SnapshotKey => ({ kind: 'snapshot-key', pos: pos(i), db: 0, key: Buffer.from(`k${i}`), type: 'string', expireAtMs: null, payload: null, value: { type: 'string', value: Buffer.from('v') }, piece: null });

describe("capture's event buffer", () => {
  it('seals stream records at 500 events, so a steady load does not wait for 1,000', async () => {
    const { b, sent } = buffer(false);
    for (let i = 1; i <= 1200; i++) b.buffer(0, 0, command(i));
    await b.flushEvents();
    expect(STREAM_EVENTS_PER_RECORD).toBe(500);
    expect(sent.map((r) => r.count)).toEqual([500, 500, 200]);
  });

  it('seals snapshot records at 1,000 events (fewer, larger records for a bulk transfer)', async () => {
    const { b, sent } = buffer(true);
    for (let i = 1; i <= 1200; i++) b.buffer(0, 0, key(i));
    await b.flushEvents();
    expect(sent.map((r) => r.count)).toEqual([1000, 200]);
  });
});
