/**
 * Buffers compare by their bytes in one native call (`Buffer#equals`), not element by element:
 * vitest's generic deep equality walks a Buffer like an array, which made comparing decoded
 * events with their kilobytes of values most of some unit files' time. A Buffer still never
 * equals anything that is not a Buffer (that case is left to vitest's own rules).
 */
import { expect } from 'vitest';

expect.addEqualityTesters([
  function buffersByBytes(a: unknown, b: unknown): boolean | undefined {
    if (Buffer.isBuffer(a) && Buffer.isBuffer(b)) return a.equals(b);
    return undefined;
  },
]);
