/**
 * For the configuration tests: the error a bad setting is refused with, checked to be a
 * configuration error (a ReplistreamError with exit code 2) before the test reads its message.
 */
import { expect } from 'vitest';
import { ReplistreamError } from '../../services/common/errors.js';

export function refusal(f: () => unknown): ReplistreamError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ReplistreamError);
    expect((e as ReplistreamError).exitCode).toBe(2);
    return e as ReplistreamError;
  }
  throw new Error('expected a configuration error');
}
