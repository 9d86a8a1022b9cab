/** Async parsing of an RDB from a stream of chunks or a file. */
import { createReadStream } from 'node:fs';
import type { RdbItem, RdbParserOptions } from './items.js';
import { RdbParser } from './parser.js';

/**
 * Input chunks are fed to the parser at most this many bytes at a time, so that the items of one
 * push are consumed (and become garbage) before the next ones are made: with small keys a 1 MiB
 * push creates tens of thousands of objects at once, which outlive a young-generation GC and get
 * copied, costing more than the parsing itself.
 */
const FEED_BYTES = 64 * 1024;

/** Parses an RDB from a stream of chunks. Stops reading at the end of the RDB. */
export async function* parseRdbStream(src: AsyncIterable<Buffer>, opts?: RdbParserOptions): AsyncGenerator<RdbItem> {
  const parser = new RdbParser(opts);
  for await (const chunk of src) {
    for (let off = 0; off < chunk.length; off += FEED_BYTES) {
      const items = parser.push(off === 0 && chunk.length <= FEED_BYTES ? chunk : chunk.subarray(off, off + FEED_BYTES));
      for (let i = 0; i < items.length; i++) yield items[i];
      if (parser.done) return;
    }
  }
  parser.finish();
}

/** Parses an RDB file. */
export function parseRdbFile(path: string, opts?: RdbParserOptions): AsyncGenerator<RdbItem> {
  return parseRdbStream(createReadStream(path, { highWaterMark: 1 << 20 }), opts);
}
