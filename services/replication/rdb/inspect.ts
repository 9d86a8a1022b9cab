/**
 * `rdb inspect`: prints the keys of an RDB file, one JSON object per line (JSON Lines):
 *
 *   {"db":0,"key":"user:1","type":"hash","encoding":"hash-listpack","expireAtMs":null,"value":[...]}
 *
 * Fields: `db` (number), `key` (binary-safe, see toJsonSafe), `type` (string, list, set, zset,
 * hash, stream, module), `encoding` (the RDB encoding, e.g. `list-quicklist-2`, `string-int`),
 * `expireAtMs` (absolute Unix time in ms, or null), `value` (below). A key too big to be held
 * whole (over 8 MiB serialized) is printed as several lines, each with a slice of the value and
 * `"piece":{"index":i,"last":bool}`.
 *
 * `value` by type:
 *   string  the bytes, binary-safe
 *   list    array of elements; set: array of members
 *   zset    array of {"member", "score"}; scores that JSON cannot hold are "inf", "-inf", "nan"
 *   hash    array of {"field", "value"} plus "expireAtMs" for fields with a TTL
 *   stream  {"length", "lastId", "firstId"?, "maxDeletedId"?, "entriesAdded"?,
 *            "entries": [{"id", "fields": [f1, v1, ...]}],
 *            "groups": [{"name", "lastId", "entriesRead"?, "pending": [{"id", "deliveryTimeMs",
 *            "deliveryCount", "consumer"?}], "consumers": [{"name", "seenTimeMs", "activeTimeMs"?,
 *            "pending": [ids]}]}]}   (IDs as "ms-seq" strings)
 *   module  {"moduleId"}: module values are opaque
 */
import { isUtf8 } from 'node:buffer';
import type { Writable } from 'node:stream';
import type { StreamId, TypedValue } from '../../events/model.js';
import type { RdbParserOptions } from './items.js';
import { parseRdbFile } from './parse-stream.js';

/**
 * A byte string in JSON, losslessly:
 * - bytes that are valid UTF-8 and contain no control characters (U+0000–U+001F, U+007F–U+009F;
 *   so no tab or newline either) become a JSON string of that text;
 * - anything else becomes an object `{"base64": "<standard base64 of the bytes>"}`.
 * A reader tells the two apart by the JSON type (string vs object); `fromJsonSafe` reverses it.
 */
export type JsonSafe = string | { base64: string };

/** See JsonSafe. */
export function toJsonSafe(buf: Uint8Array): JsonSafe {
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const n = b.length;
  let ascii = true;
  for (let i = 0; i < n; i++) {
    const c = b[i];
    if (c < 0x20 || c >= 0x7f) {
      ascii = false;
      break;
    }
  }
  if (ascii) return b.toString('latin1');
  if (isUtf8(b)) {
    const s = b.toString('utf8');
    // eslint-disable-next-line no-control-regex
    if (!/[\u0000-\u001f\u007f-\u009f]/.test(s)) return s;
  }
  return { base64: b.toString('base64') };
}

/** Inverse of toJsonSafe. */
export function fromJsonSafe(v: JsonSafe): Buffer {
  return typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v.base64, 'base64');
}

function idStr(id: StreamId): string {
  return `${id.ms}-${id.seq}`;
}

function scoreJson(s: number): number | string {
  if (Number.isFinite(s)) return s;
  return Number.isNaN(s) ? 'nan' : s > 0 ? 'inf' : '-inf';
}

/** The JSON form of a typed value, as printed by `rdb inspect` (see the file comment). */
export function typedValueToJson(v: TypedValue): unknown {
  switch (v.type) {
    case 'string':
      return toJsonSafe(v.value);
    case 'list':
      return v.items.map(toJsonSafe);
    case 'set':
      return v.members.map(toJsonSafe);
    case 'zset':
      return v.entries.map((e) => ({ member: toJsonSafe(e.member), score: scoreJson(e.score) }));
    case 'hash':
      return v.entries.map((e) =>
        e.expireAtMs === null
          ? { field: toJsonSafe(e.field), value: toJsonSafe(e.value) }
          : { field: toJsonSafe(e.field), value: toJsonSafe(e.value), expireAtMs: e.expireAtMs },
      );
    case 'stream': {
      const s = v.stream;
      const out: Record<string, unknown> = { length: s.length, lastId: idStr(s.lastId) };
      if (s.firstId) out.firstId = idStr(s.firstId);
      if (s.maxDeletedId) out.maxDeletedId = idStr(s.maxDeletedId);
      if (s.entriesAdded !== undefined) out.entriesAdded = s.entriesAdded;
      out.entries = s.entries.map((e) => ({ id: idStr(e.id), fields: e.fields.map(toJsonSafe) }));
      out.groups = s.groups.map((g) => {
        const go: Record<string, unknown> = { name: toJsonSafe(g.name), lastId: idStr(g.lastId) };
        if (g.entriesRead !== undefined) go.entriesRead = g.entriesRead;
        go.pending = g.pending.map((p) => {
          const po: Record<string, unknown> = { id: idStr(p.id), deliveryTimeMs: p.deliveryTimeMs, deliveryCount: p.deliveryCount };
          if (p.consumer) po.consumer = toJsonSafe(p.consumer);
          return po;
        });
        go.consumers = g.consumers.map((c) => {
          const co: Record<string, unknown> = { name: toJsonSafe(c.name), seenTimeMs: c.seenTimeMs };
          if (c.activeTimeMs !== undefined) co.activeTimeMs = c.activeTimeMs;
          co.pending = c.pending.map(idStr);
          return co;
        });
        return go;
      });
      return out;
    }
    case 'module':
      return { moduleId: v.moduleId };
  }
}

export interface InspectSummary {
  /** Lines written (keys, plus extra pieces of big keys). */
  lines: number;
  keys: number;
  bytes: number;
}

/** Writes the keys of the RDB file at `filePath` to `out` as JSON Lines (see the file comment). */
export async function inspectRdb(
  filePath: string,
  out: Writable,
  format: 'jsonl' = 'jsonl',
  opts: RdbParserOptions = {},
): Promise<InspectSummary> {
  if (format !== 'jsonl') throw new Error(`unsupported inspect format ${String(format)}`);
  const summary: InspectSummary = { lines: 0, keys: 0, bytes: 0 };
  let pending: string[] = [];
  let pendingLen = 0;
  const flush = async (): Promise<void> => {
    if (pending.length === 0) return;
    const text = pending.join('');
    pending = [];
    pendingLen = 0;
    if (!out.write(text)) {
      await new Promise<void>((resolve, reject) => {
        const onDrain = (): void => {
          out.off('error', onError);
          resolve();
        };
        const onError = (err: Error): void => {
          out.off('drain', onDrain);
          reject(err);
        };
        out.once('drain', onDrain);
        out.once('error', onError);
      });
    }
  };
  for await (const item of parseRdbFile(filePath, opts)) {
    if (item.kind === 'end') summary.bytes = item.offset + 1 + (item.checksum === null ? 0 : 8);
    if (item.kind !== 'entry') continue;
    const line: Record<string, unknown> = {
      db: item.db,
      key: toJsonSafe(item.key),
      type: item.type,
      encoding: item.encoding,
      expireAtMs: item.expireAtMs,
      value: typedValueToJson(item.value),
    };
    if (item.piece) line.piece = item.piece;
    if (!item.piece || item.piece.index === 0) summary.keys++;
    summary.lines++;
    const text = JSON.stringify(line) + '\n';
    pending.push(text);
    pendingLen += text.length;
    if (pendingLen >= 1 << 16) await flush();
  }
  await flush();
  return summary;
}
