/**
 * When the producer sends a request (pure scheduling; the broker is a stand-in that records when
 * each request left and how many record bytes it held): a request that is not full waits until its
 * oldest record has lingered `lingerMs`, and `HEAVY_LINGER_FACTOR` times that after a request of
 * `HEAVY_REQUEST_BYTES` or more, unless it carries a bulk send (a snapshot's).
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Kafka } from 'kafkajs';
import { EventProducer, HEAVY_LINGER_FACTOR, HEAVY_REQUEST_BYTES } from '../../../services/transport/producer.js';
import type { EventRegistry } from '../../../services/transport/registry.js';
import type { SealedRecord } from '../../../services/events/split.js';

interface Sent {
  at: number;
  bytes: number;
}

function standIn(sent: Sent[]): Kafka {
  let offset = 0;
  const producer = {
    connect: async () => undefined,
    disconnect: async () => undefined,
    sendBatch: async (req: { topicMessages: Array<{ topic: string; messages: Array<{ partition: number; value: Buffer }> }> }) => {
      sent.push({ at: performance.now(), bytes: req.topicMessages.reduce((n, t) => n + t.messages.reduce((m, x) => m + x.value.length, 0), 0) });
      return req.topicMessages.flatMap((t) => {
        const base = offset;
        offset += t.messages.length;
        return [{ topicName: t.topic, partition: t.messages[0].partition, errorCode: 0, baseOffset: String(base) }];
      });
    },
  };
  return { producer: () => producer } as unknown as Kafka;
}

const registry = { registerForTopic: async () => 1 } as unknown as EventRegistry;
const record = (bytes: number): SealedRecord => ({ body: Buffer.alloc(bytes), count: 1, snapshotBegin: null });

/** A producer (linger 5 ms) and a function that sends one record and says how long it waited to leave (ms). */
function sender(): (bytes: number, bulk?: boolean) => Promise<number> {
  const sent: Sent[] = [];
  const p = new EventProducer({ kafka: standIn(sent), registry, positionsTopic: 'positions', lingerMs: 5, compression: 'none' });
  return async (bytes, bulk = false) => {
    const from = performance.now();
    const done = p.sendRecords('t', 0, [record(bytes)], { bulk });
    for (let i = 0; i < 200 && sent.length === 0; i++) await vi.advanceTimersByTimeAsync(1);
    await done;
    const waited = sent[0].at - from;
    sent.length = 0;
    return waited;
  };
}

describe('EventProducer linger', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setImmediate', 'performance'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('waits lingerMs after light requests and HEAVY_LINGER_FACTOR times that after a heavy one', async () => {
    const sendAndWait = sender();

    expect(await sendAndWait(100)).toBe(5); // light traffic: the short linger
    expect(await sendAndWait(HEAVY_REQUEST_BYTES)).toBe(5); // this one is heavy...
    expect(await sendAndWait(100)).toBe(5 * HEAVY_LINGER_FACTOR); // ...so the next one lingers longer
    expect(await sendAndWait(HEAVY_REQUEST_BYTES + 1)).toBe(5); // the one before was light; this one is heavy
    expect(await sendAndWait(100)).toBe(5 * HEAVY_LINGER_FACTOR);
    expect(await sendAndWait(100)).toBe(5);
  });

  it('a bulk send (a snapshot) keeps the short linger after a heavy request', async () => {
    const sendAndWait = sender();
    expect(await sendAndWait(HEAVY_REQUEST_BYTES, true)).toBe(5);
    expect(await sendAndWait(HEAVY_REQUEST_BYTES, true)).toBe(5); // heavy before it, but bulk
    expect(await sendAndWait(100, false)).toBe(5 * HEAVY_LINGER_FACTOR); // a stream's send after it does wait longer
  });

  it('sends at once when a partition has more than a request can take, heavy or not', async () => {
    const sent: Sent[] = [];
    const p = new EventProducer({ kafka: standIn(sent), registry, positionsTopic: 'positions', lingerMs: 5, compression: 'none', maxRecordBytes: 32 * 1024 });
    const first = p.sendRecords('t', 0, [record(HEAVY_REQUEST_BYTES)]);
    await vi.advanceTimersByTimeAsync(5);
    await first;
    expect(sent).toHaveLength(1);
    const at = performance.now();
    // two records that do not fit one partition's batch: the request is full, no linger
    const full = p.sendRecords('t', 0, [record(30 * 1024), record(30 * 1024)]);
    await vi.advanceTimersByTimeAsync(0);
    expect(sent).toHaveLength(2);
    expect(sent[1].at).toBe(at);
    await vi.advanceTimersByTimeAsync(5 * HEAVY_LINGER_FACTOR);
    await full;
  });
});
