/**
 * Where the avsc types put things, looked up by name once on first use rather than hard-coded:
 * each event kind's branch of the event union, and the hand-written writer (fast-writer.ts) and
 * reader (fast-reader.ts) laid out from them.
 */
import type avsc from 'avsc';
import { ReplistreamError } from '../common/errors.js';
import { FastReader } from './fast-reader.js';
import { FastWriter } from './fast-writer.js';
import type { ChangeEvent } from './model.js';
import { EVENT_BRANCH, VALUE_BRANCH, eventTypes } from './schema.js';

type Kind = ChangeEvent['kind'];
let cachedBranches: Record<Kind, { tag: number; type: avsc.Type }> | undefined;

/** Per event kind: its branch of the event union (found by name) and that branch's index as written (zigzag). */
export function eventBranches(): Record<Kind, { tag: number; type: avsc.Type }> {
  if (!cachedBranches) {
    const types = (eventTypes().event as unknown as { types: avsc.Type[] }).types;
    const out = {} as Record<Kind, { tag: number; type: avsc.Type }>;
    for (const [kind, name] of Object.entries(EVENT_BRANCH) as Array<[Kind, string]>) {
      const index = types.findIndex((t) => t.name === name);
      if (index < 0 || index >= 64) throw new ReplistreamError('INTERNAL', `EventBatch: no usable union branch ${name}`);
      out[kind] = { tag: index * 2, type: types[index] }; // a long under 64: one byte, zigzag
    }
    cachedBranches = out;
  }
  return cachedBranches;
}

/** SnapshotKey's value branches and RedisType symbols, in schema order (for the hand-written codecs). */
function snapshotKeyLayout(): { valueTypes: avsc.Type[]; typeSymbols: string[] } {
  const key = eventBranches()['snapshot-key'].type as unknown as { field(name: string): { type: avsc.Type } };
  return {
    valueTypes: (key.field('value').type as unknown as { types: avsc.Type[] }).types,
    typeSymbols: (key.field('type').type as unknown as { symbols: string[] }).symbols,
  };
}

let cachedFastWriter: FastWriter | undefined;

/** The hand-written writer of snapshot keys and commands (fast-writer.ts), laid out from the avsc types. */
export function fastWriter(): FastWriter {
  if (!cachedFastWriter) {
    const b = eventBranches();
    const { valueTypes, typeSymbols: symbols } = snapshotKeyLayout();
    const valueTag = (kind: keyof typeof VALUE_BRANCH): number => {
      const index = valueTypes.findIndex((t) => t.name === VALUE_BRANCH[kind]);
      if (index < 0 || index >= 64) throw new ReplistreamError('INTERNAL', `SnapshotKey.value: no usable union branch ${VALUE_BRANCH[kind]}`);
      return index * 2;
    };
    const typeIndex: Record<string, number> = Object.create(null) as Record<string, number>;
    symbols.forEach((sym, i) => (typeIndex[sym] = i * 2));
    cachedFastWriter = new FastWriter({
      snapshotKeyTag: b['snapshot-key'].tag,
      commandTag: b.command.tag,
      typeIndex,
      valueTag: { string: valueTag('string'), list: valueTag('list'), set: valueTag('set'), zset: valueTag('zset'), hash: valueTag('hash') },
    });
  }
  return cachedFastWriter;
}

let cachedFastReader: FastReader | undefined;

/** The hand-written reader of snapshot keys, commands and heartbeats (fast-reader.ts), laid out from the avsc types. */
export function fastReader(): FastReader {
  if (!cachedFastReader) {
    const b = eventBranches();
    const { valueTypes, typeSymbols } = snapshotKeyLayout();
    const kinds = Object.entries(VALUE_BRANCH) as Array<[string, string]>;
    const valueKinds = valueTypes.map((t) => {
      const kind = kinds.find(([, name]) => name === t.name)?.[0];
      return kind === 'string' || kind === 'list' || kind === 'set' || kind === 'zset' || kind === 'hash' ? kind : null;
    });
    cachedFastReader = new FastReader({
      snapshotKey: b['snapshot-key'].tag / 2,
      command: b.command.tag / 2,
      heartbeat: b.heartbeat.tag / 2,
      typeSymbols,
      valueKinds,
    });
  }
  return cachedFastReader;
}
