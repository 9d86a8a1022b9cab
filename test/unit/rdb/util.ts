/** Shared helpers for the RDB parser tests. */
import { cloneValue } from '../../../services/events/split.js';
export { prng } from '../../helpers/prng.js';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TypedValue } from '../../../services/events/model.js';
import { RdbParser, type RdbEntry, type RdbItem, type RdbParserOptions } from '../../../services/replication/rdb/parser.js';
import type { FixtureExpectation } from './live.js';

export const FIXTURE_DIR = join(dirname(fileURLToPath(import.meta.url)), '../../fixtures/rdb');

export function fixtureNames(): string[] {
  return readdirSync(FIXTURE_DIR)
    .filter((f) => f.endsWith('.rdb'))
    .map((f) => f.slice(0, -4))
    .sort();
}

export function loadFixture(name: string): { rdb: Buffer; expected: FixtureExpectation } {
  return {
    rdb: readFileSync(join(FIXTURE_DIR, `${name}.rdb`)),
    expected: JSON.parse(readFileSync(join(FIXTURE_DIR, `${name}.json`), 'utf8')) as FixtureExpectation,
  };
}

export interface ParseResult {
  items: RdbItem[];
  remainder: Buffer;
  consumed: number;
}

/** Feeds `chunks` one by one, then finish(). */
export function parseChunks(chunks: Buffer[], opts?: RdbParserOptions): ParseResult {
  const p = new RdbParser(opts);
  const items: RdbItem[] = [];
  for (const c of chunks) for (const it of p.push(c)) items.push(it);
  p.finish();
  return { items, remainder: p.takeRemainder(), consumed: p.bytesConsumed };
}

export function parseWhole(buf: Buffer, opts?: RdbParserOptions): ParseResult {
  return parseChunks([buf], opts);
}

export function splitEvery(buf: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}

/** A canonical text form of items: Buffers as hex, bigints as text, every field kept. */
export function canon(v: unknown): string {
  const out: string[] = [];
  walk(v, out);
  return out.join('');
}

function walk(v: unknown, out: string[]): void {
  if (v === null || v === undefined) out.push(String(v));
  else if (Buffer.isBuffer(v)) out.push('x', v.toString('hex'), ';');
  else if (typeof v === 'bigint') out.push(String(v), 'n');
  else if (typeof v === 'number') out.push(Object.is(v, -0) ? '-0' : String(v));
  else if (typeof v === 'string') out.push(JSON.stringify(v));
  else if (typeof v === 'boolean') out.push(String(v));
  else if (Array.isArray(v)) {
    out.push('[');
    for (const x of v) {
      walk(x, out);
      out.push(',');
    }
    out.push(']');
  } else if (typeof v === 'object') {
    out.push('{');
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      out.push(k, ':');
      walk(x, out);
      out.push(',');
    }
    out.push('}');
  } else out.push(String(v));
}

export function entries(items: RdbItem[]): RdbEntry[] {
  return items.filter((i): i is RdbEntry => i.kind === 'entry');
}

export function keyId(e: { db: number; key: Buffer }): string {
  return `${e.db}/${e.key.toString('hex')}`;
}

/**
 * Joins the pieces of each key back into one value (checking indices and `last` flags), so a
 * parse with a tiny maxEntryBytes can be compared with a whole one.
 */
export function mergePieces(list: RdbEntry[]): Map<string, { entry: RdbEntry; value: TypedValue; pieces: number }> {
  const out = new Map<string, { entry: RdbEntry; value: TypedValue; pieces: number }>();
  for (const e of list) {
    const id = keyId(e);
    const cur = out.get(id);
    if (!e.piece) {
      if (cur) throw new Error(`key ${id} delivered twice`);
      out.set(id, { entry: e, value: e.value, pieces: 0 });
      continue;
    }
    if (!cur) {
      if (e.piece.index !== 0) throw new Error(`key ${id} starts with piece ${e.piece.index}`);
      out.set(id, { entry: e, value: cloneValue(e.value), pieces: 1 });
      continue;
    }
    if (e.piece.index !== cur.pieces) throw new Error(`key ${id}: piece ${e.piece.index} after ${cur.pieces - 1}`);
    if (cur.entry.piece?.last) throw new Error(`key ${id}: piece after the last one`);
    cur.pieces++;
    cur.entry = e;
    const v = cur.value;
    const p = e.value;
    if (v.type === 'string' && p.type === 'string') v.value = Buffer.concat([v.value, p.value]);
    else if (v.type === 'list' && p.type === 'list') v.items.push(...p.items);
    else if (v.type === 'set' && p.type === 'set') v.members.push(...p.members);
    else if (v.type === 'zset' && p.type === 'zset') v.entries.push(...p.entries);
    else if (v.type === 'hash' && p.type === 'hash') v.entries.push(...p.entries);
    else if (v.type === 'stream' && p.type === 'stream') {
      const entriesSoFar = v.stream.entries.concat(p.stream.entries);
      v.stream = { ...p.stream, entries: entriesSoFar };
    } else throw new Error(`key ${id}: piece of another type`);
  }
  for (const [id, m] of out) {
    if (m.entry.piece && !m.entry.piece.last) throw new Error(`key ${id}: no last piece`);
  }
  return out;
}


