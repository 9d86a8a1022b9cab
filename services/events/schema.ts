/**
 * The EventBatch schema: the named types of schemas/ (one `.avsc` file per type) loaded, inlined
 * into the one self-contained schema that is registered and written with, and built into avsc
 * Types. Also the full names of the union branches the codec writes (`EVENT_BRANCH`,
 * `VALUE_BRANCH`), which the Avro mapping and the schema layout look the branches up by.
 */
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join, resolve } from 'node:path';
import avsc from 'avsc';
import { ReplistreamError } from '../common/errors.js';

export const NAMESPACE = 'io.replistream.events';
export const ENVELOPE_NAME = `${NAMESPACE}.EventBatch`;

/** The event union's branches (EventBatch.events items) by full name, per event kind. */
export const EVENT_BRANCH = {
  'snapshot-begin': `${NAMESPACE}.SnapshotBegin`,
  'snapshot-end': `${NAMESPACE}.SnapshotEnd`,
  'snapshot-key': `${NAMESPACE}.SnapshotKey`,
  command: `${NAMESPACE}.CommandEvent`,
  heartbeat: `${NAMESPACE}.Heartbeat`,
  'slot-handoff': `${NAMESPACE}.SlotHandOff`,
} as const;

/** SnapshotKey.value's branches by full name, per typed value kind. */
export const VALUE_BRANCH = {
  string: `${NAMESPACE}.StringValue`,
  list: `${NAMESPACE}.ListValue`,
  set: `${NAMESPACE}.SetValue`,
  zset: `${NAMESPACE}.ZSetValue`,
  hash: `${NAMESPACE}.HashValue`,
  stream: `${NAMESPACE}.StreamValue`,
  module: `${NAMESPACE}.ModuleValue`,
} as const;

/** The `schemas/` directory: `REPLISTREAM_SCHEMA_DIR`, else found upwards from this module. */
export function schemaDir(): string {
  const env = process.env.REPLISTREAM_SCHEMA_DIR;
  if (env) return resolve(env);
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'schemas');
    if (existsSync(join(candidate, 'EventBatch.avsc'))) return candidate;
    dir = dirname(dir);
  }
  throw new ReplistreamError('INTERNAL', 'cannot find the schemas/ directory (EventBatch.avsc); set REPLISTREAM_SCHEMA_DIR');
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Every named schema in `dir`, by full name. */
export function loadNamedSchemas(dir = schemaDir()): Map<string, Record<string, Json>> {
  const out = new Map<string, Record<string, Json>>();
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.avsc')).sort()) {
    let json: Record<string, Json>;
    try {
      json = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Record<string, Json>;
    } catch (err) {
      throw new ReplistreamError('INTERNAL', `schema file ${file} is not valid JSON`, { cause: err });
    }
    const name = json.name as string;
    const ns = (json.namespace as string | undefined) ?? NAMESPACE;
    out.set(name.includes('.') ? name : `${ns}.${name}`, json);
  }
  return out;
}

/**
 * One self-contained schema for `rootName` (default: the EventBatch envelope): every named type
 * is defined inline at its first use (Avro's document order) and referenced by full name after.
 * Docs and defaults are kept. This is the text registered in the schema registry.
 */
export function inlineSchema(named: Map<string, Record<string, Json>>, rootName = ENVELOPE_NAME): Record<string, Json> {
  const defined = new Set<string>();
  const fullName = (ref: string): string | undefined => {
    if (named.has(ref)) return ref;
    const q = `${NAMESPACE}.${ref}`;
    return named.has(q) ? q : undefined;
  };
  const walk = (node: Json): Json => {
    if (typeof node === 'string') {
      const fq = fullName(node);
      if (!fq) return node; // primitive
      if (defined.has(fq)) return fq;
      return walk(named.get(fq)!);
    }
    if (Array.isArray(node)) return node.map(walk);
    if (node && typeof node === 'object') {
      const out: Record<string, Json> = {};
      const isNamed = (node.type === 'record' || node.type === 'enum' || node.type === 'fixed') && typeof node.name === 'string';
      if (isNamed) {
        const name = node.name as string;
        const fq = name.includes('.') ? name : `${(node.namespace as string | undefined) ?? NAMESPACE}.${name}`;
        defined.add(fq);
      }
      for (const [k, v] of Object.entries(node)) {
        if (k === 'type' || k === 'items' || k === 'values') out[k] = walk(v);
        else if (k === 'fields' && Array.isArray(v)) out[k] = v.map((f) => walkField(f as Record<string, Json>));
        else out[k] = v;
      }
      return out;
    }
    return node;
  };
  const walkField = (f: Record<string, Json>): Json => {
    const out: Record<string, Json> = {};
    for (const [k, v] of Object.entries(f)) out[k] = k === 'type' ? walk(v) : v;
    return out;
  };
  const root = fullName(rootName);
  if (!root) throw new ReplistreamError('INTERNAL', `schema ${rootName} not found in schemas/`);
  return walk(root) as Record<string, Json>;
}

let cachedSchema: Record<string, Json> | undefined;

/** The self-contained EventBatch schema this build writes (cached). */
export function eventBatchSchema(): Record<string, Json> {
  cachedSchema ??= inlineSchema(loadNamedSchemas());
  return cachedSchema;
}

/** The EventBatch schema as registered: compact JSON text. */
export function eventBatchSchemaText(): string {
  return JSON.stringify(eventBatchSchema());
}

/** Build an avsc Type the way the codec does (unions wrapped only where ambiguous). */
export function avroTypeFor(schema: object): avsc.Type {
  return avsc.Type.forSchema(schema as avsc.Schema, { wrapUnions: 'auto' });
}

let cachedTypes: { batch: avsc.Type; event: avsc.Type } | undefined;

/** The avsc Types for the EventBatch record and for one event (the array's item union). */
export function eventTypes(): { batch: avsc.Type; event: avsc.Type } {
  if (!cachedTypes) {
    const batch = avroTypeFor(eventBatchSchema());
    const field = (batch as unknown as { field(name: string): { type: { itemsType: avsc.Type } } }).field('events');
    cachedTypes = { batch, event: field.type.itemsType };
  }
  return cachedTypes;
}
