/**
 * Capture with a huge command streamed from the source: its records are made as Kafka takes them
 * (at most maxInflightBytes unacknowledged, not the whole command's worth at once), the units after
 * it follow it, and no position is recorded past it before every one of its records is acked.
 * A fake sink stands for Kafka: it acks each send after a few milliseconds.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { CaptureService, type CapturePosition, type EventSink } from '../../../services/capture/capture.js';
import { KeyFilter } from '../../../services/capture/key-filter.js';
import { decodeBatch } from '../../../services/events/codec.js';
import type { ChangeEvent, CommandEvent } from '../../../services/events/model.js';
import { PieceAssembler, type SealedRecord } from '../../../services/events/split.js';
import { redisClient, testLogger, until } from '../../helpers/pipeline.js';
import { startRedis } from '../../helpers/redis-server.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

const MB = 1024 * 1024;

describe('capture and a command far bigger than a record', () => {
  it('makes its records as Kafka acks them, keeps the units after it behind it, records no position past it early', async () => {
    const source = await startRedis({});
    cleanups.push(() => source.stop());
    const records: SealedRecord[] = [];
    let inflight = 0;
    let maxInflight = 0;
    let acked = 0;
    const positions: Array<{ position: CapturePosition; acked: number }> = [];
    const sink: EventSink = {
      async sendRecords(_db: number, _partition: number, rs: SealedRecord[]) {
        const bytes = rs.reduce((n, r) => n + r.body.length, 0);
        inflight += bytes;
        maxInflight = Math.max(maxInflight, inflight);
        await new Promise((r) => setTimeout(r, 5));
        records.push(...rs);
        acked = records.length;
        inflight -= bytes;
      },
      async writePosition(position: CapturePosition) {
        positions.push({ position, acked });
      },
      async readPosition() {
        return null;
      },
    };
    const capture = new CaptureService({
      link: { url: source.url },
      sink,
      partitions: 1,
      dbs: [0],
      filter: new KeyFilter({ dbs: [0] }),
      heartbeatKey: null,
      maxInflightBytes: 2 * MB,
      logger: testLogger,
    });
    cleanups.push(() => capture.stop());
    await capture.start();
    await until(() => capture.stats.state === 'synchronizing', 30_000, 'the full sync');
    const before = records.length;

    const big = Buffer.alloc(30 * MB);
    for (let i = 0; i < big.length; i += 4096) big.write(`block ${i} `, i, 'latin1');
    const src = redisClient(source.url);
    cleanups.push(async () => src.disconnect());
    await src.set('big', big);
    await src.set('after', '1');
    const end = Number((await src.info('replication')).match(/master_repl_offset:(\d+)/)![1]);
    await until(() => capture.stats.durableOffset >= end, 60_000, 'the position after both commands');

    // what an applier rebuilds from the records, in order: the whole SET, then the next one
    const asm = new PieceAssembler();
    const whole: ChangeEvent[] = [];
    /** Records up to the one completing the SET. */
    let setRecords = 0;
    records.slice(before).forEach((r, i) => {
      for (const e of decodeBatch(r.body)) {
        const w = asm.push(e);
        if (w) whole.push(w);
        if (w && w !== e) setRecords = i + 1;
      }
    });
    const commands = whole.filter((e): e is CommandEvent => e.kind === 'command').map((e) => e.commands[0]);
    expect(commands.map((c) => c[1].toString())).toEqual(['big', 'after']);
    expect(commands[0][2].equals(big)).toBe(true);
    expect(records.length - before).toBeGreaterThan(30);
    // never the whole command's records at once: the bound, the record that passed it and one a
    // timer flush sealed meanwhile (records of 900 KB)
    expect(maxInflight).toBeLessThan(2 * MB + 2 * 900_000);
    // a position past the SET only once all its records were acked
    expect(setRecords).toBeGreaterThan(30);
    const bigEnd = whole.find((e) => e.kind === 'command')!.pos.offset;
    for (const p of positions.filter((x) => x.position.offset >= bigEnd)) expect(p.acked - before).toBeGreaterThanOrEqual(setRecords);
  }, 120_000);
});
