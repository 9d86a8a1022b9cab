/**
 * `npx tsx test/bench/encode.ts [--events N] [--seconds S] [--rounds R]`: events/s of encoding
 * event batches into EventBatch bodies, beside baselines measured in the same run (as ratios):
 *
 * - `avsc batch.toBuffer`: the straightforward encoding, avsc's own `toBuffer` of the whole batch;
 * - `per-event toBuffer`: the former path, each event by `toBuffer` then copied into the record;
 * - `encodeBatch` and `packEncoded` (what the producer calls): the scratch-buffer encoder.
 *
 * Workloads: small snapshot keys (RESTORE payload only, and payload + typed value) and command
 * events. Every output is checked byte for byte against avsc's before timing. Prints; never asserts
 * timings. Rounds are interleaved and the median kept, so that noise hits every candidate alike.
 */
import { pathToFileURL } from 'node:url';
import { encodeBatch, eventToAvro, eventTypes, frameEncodedEvents } from '../../services/events/codec.js';
import { packEncoded } from '../../services/events/split.js';
import type { ChangeEvent, SourcePosition, TypedValue } from '../../services/events/model.js';

const REPLID = '8de9b1b2c3d4e5f60718293a4b5c6d7e8f901234';
const at = (offset: number, seq: number): SourcePosition => ({ epoch: 3, offset, seq, replid: REPLID });

/** A string key's RESTORE payload (type byte, length, value, RDB version, CRC64): ~value + 12 bytes. */
const restorePayload = (v: Buffer): Buffer => Buffer.concat([Buffer.from([0, v.length]), v, Buffer.from([11, 0]), Buffer.alloc(8, 0x5a)]);

function snapshotKeys(n: number, typed: boolean): ChangeEvent[] {
  return Array.from({ length: n }, (_, i): ChangeEvent => {
    const v = Buffer.from(`value:${i}:${'x'.repeat(i % 40)}`);
    let value: TypedValue | null = null;
    if (typed) {
      value =
        i % 4 === 0
          ? { type: 'hash', entries: [{ field: Buffer.from('name'), value: v, expireAtMs: null }, { field: Buffer.from('n'), value: Buffer.from(String(i)), expireAtMs: null }] }
          : i % 4 === 1
            ? { type: 'list', items: [v, Buffer.from('b'), Buffer.from('c')] }
            : { type: 'string', value: v };
    }
    return {
      kind: 'snapshot-key',
      pos: at(987_654_321, i),
      db: 0,
      key: Buffer.from(`user:{${i % 1000}}:${i}`),
      type: value?.type ?? 'string',
      expireAtMs: i % 5 === 0 ? 1_893_456_000_000 + i : null,
      payload: restorePayload(v),
      value,
      piece: null,
    };
  });
}

function commands(n: number): ChangeEvent[] {
  return Array.from({ length: n }, (_, i): ChangeEvent => {
    const k = Buffer.from(`user:{${i % 1000}}:${i}`);
    const cmds =
      i % 10 === 9
        ? [[Buffer.from('MULTI')], [Buffer.from('INCR'), k], [Buffer.from('EXPIRE'), k, Buffer.from('60')], [Buffer.from('EXEC')]]
        : [[Buffer.from('SET'), k, Buffer.from(`value:${i}:${'y'.repeat(i % 30)}`)]];
    return { kind: 'command', pos: at(1_000_000_000 + i * 64, 0), db: 0, commands: cmds, participants: [], piece: null };
  });
}

type Candidate = { name: string; run: (events: ChangeEvent[]) => Buffer[] };

const candidates: Candidate[] = [
  { name: 'avsc batch.toBuffer (baseline)', run: (ev) => [eventTypes().batch.toBuffer({ events: ev.map(eventToAvro) })] },
  {
    name: 'per-event toBuffer + frame (former)',
    run: (ev) => {
      const t = eventTypes().event;
      return [frameEncodedEvents(ev.map((e) => t.toBuffer(eventToAvro(e))))];
    },
  },
  { name: 'encodeBatch (scratch)', run: (ev) => [encodeBatch(ev)] },
  { name: 'packEncoded 900 KB records', run: (ev) => packEncoded(ev).map((b) => b.body) },
];

function measure(c: Candidate, events: ChangeEvent[], seconds: number): number {
  let n = 0;
  const t0 = performance.now();
  let dt = 0;
  do {
    c.run(events);
    n += events.length;
    dt = performance.now() - t0;
  } while (dt < seconds * 1000);
  return n / (dt / 1000);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function parseArgs(args: string[]): { events: number; seconds: number; rounds: number } {
  const out = { events: 20_000, seconds: 0.5, rounds: 5 };
  for (let i = 0; i < args.length; i++) {
    const m = /^--(events|seconds|rounds)(?:=(.*))?$/.exec(args[i]);
    if (!m) throw new Error(`usage: encode [--events N] [--seconds S] [--rounds R] (got ${args[i]})`);
    const v = Number((m[2] ?? args[++i] ?? '').replace(/_/g, ''));
    if (!Number.isFinite(v) || v <= 0) throw new Error(`--${m[1]}: not a positive number`);
    out[m[1] as keyof typeof out] = v;
  }
  return out;
}

export async function benchEncode(args: string[]): Promise<void> {
  const { events: count, seconds, rounds } = parseArgs(args);
  const workloads: Array<[string, ChangeEvent[]]> = [
    ['snapshot keys, RESTORE payload', snapshotKeys(count, false)],
    ['snapshot keys, payload + typed value', snapshotKeys(count, true)],
    ['command events', commands(count)],
  ];
  const summary: Record<string, Record<string, number>> = {};
  for (const [label, events] of workloads) {
    // correctness first: every candidate writes avsc's bytes
    const want = candidates[0].run(events)[0];
    for (const c of candidates.slice(0, -1)) {
      if (!Buffer.concat(c.run(events)).equals(want)) throw new Error(`${c.name} does not write avsc's bytes (${label})`);
    }
    for (const b of packEncoded(events)) {
      if (!b.body.equals(candidates[0].run(b.events)[0])) throw new Error(`packEncoded does not write avsc's bytes (${label})`);
    }
    const bytesPerEvent = (want.length / events.length).toFixed(0);
    const rates = new Map<string, number[]>(candidates.map((c) => [c.name, []]));
    for (const c of candidates) measure(c, events, seconds / 2); // warm-up
    for (let r = 0; r < rounds; r++) for (const c of candidates) rates.get(c.name)!.push(measure(c, events, seconds));
    const base = median(rates.get(candidates[0].name)!);
    process.stdout.write(`\n${label}: ${events.length} events/batch, ~${bytesPerEvent} B/event (median of ${rounds} rounds)\n`);
    summary[label] = {};
    for (const c of candidates) {
      const m = median(rates.get(c.name)!);
      summary[label][c.name] = Math.round(m);
      process.stdout.write(`  ${c.name.padEnd(38)} ${(m / 1e6).toFixed(3).padStart(7)} M events/s  ${(m / base).toFixed(2)}x\n`);
    }
  }
  process.stdout.write(`${JSON.stringify({ bench: 'encode', events: count, seconds, rounds, eventsPerSecond: summary })}\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  benchEncode(process.argv.slice(2)).catch((err) => {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}
