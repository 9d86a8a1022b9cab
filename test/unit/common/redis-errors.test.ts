import { describe, expect, it } from 'vitest';
import { isAuthRefusal, redisRefusal } from '../../../services/common/redis-errors.js';

describe('redisRefusal: one reading of a server refusing a connection', () => {
  it.each([
    ['WRONGPASS invalid username-password pair or user is disabled.', 'wrong credentials', true],
    ['ERR invalid password', 'wrong credentials', true],
    ['NOAUTH Authentication required.', 'password required', true],
    ["NOPERM this user has no permissions to run the 'psync' command", 'missing rights', false],
    ['connect ECONNREFUSED 127.0.0.1:6379', null, false],
  ])('%s', (message, kind, auth) => {
    expect(redisRefusal(message)).toBe(kind);
    expect(isAuthRefusal(message)).toBe(auth);
  });
});
