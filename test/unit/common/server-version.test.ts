/**
 * Server versions from INFO server: Valkey is told from Redis by its own fields, and versions are
 * compared through the RDB format each release writes (the first lines of each INFO below are
 * what the servers of the version matrix answer).
 */
import { describe, expect, it } from 'vitest';
import { rdbVersionOfRelease, restoreIncompatibility, serverVersionFromInfo, serverVersionOf } from '../../../services/common/server-version.js';

const VALKEY_8_1 = '# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.1.8\r\nvalkey_release_stage:ga\r\nredis_git_sha1:00000000\r\n';
const REDIS_6_2 = '# Server\r\nredis_version:6.2.14\r\nredis_git_sha1:40305114\r\nredis_git_dirty:0\r\nredis_mode:standalone\r\n';
const REDIS_7_0 = '# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\nredis_mode:standalone\r\n';
const REDIS_8_0 = '# Server\r\nredis_version:8.0.2\r\nredis_mode:standalone\r\n';

describe('serverVersionFromInfo', () => {
  it('reads Valkey 8.1 as Valkey 8.1.8 writing RDB 11, not as Redis 7.2.4 nor as an 8.x Redis', () => {
    const v = serverVersionFromInfo(VALKEY_8_1);
    expect(v).toEqual({ product: 'Valkey', version: '8.1.8', redisCompatible: '7.2.4', rdbVersion: 11, label: 'Valkey 8.1.8' });
  });

  it('reads Redis releases by redis_version', () => {
    expect(serverVersionFromInfo(REDIS_6_2)).toMatchObject({ product: 'Redis', version: '6.2.14', rdbVersion: 9, label: 'Redis 6.2.14' });
    expect(serverVersionFromInfo(REDIS_7_0)).toMatchObject({ product: 'Redis', version: '7.0.15', rdbVersion: 10 });
    expect(serverVersionFromInfo(REDIS_8_0)).toMatchObject({ product: 'Redis', version: '8.0.2', rdbVersion: 12 });
  });

  it('takes the fields as a map too (connection.info), and a server_name-only Valkey', () => {
    const m = new Map([['redis_version', '7.2.4'], ['server_name', 'valkey']]);
    expect(serverVersionFromInfo(m)).toMatchObject({ product: 'Valkey', version: '7.2.4', rdbVersion: 11 });
  });

  it('knows no RDB version for releases outside its table', () => {
    expect(rdbVersionOfRelease('Redis', '2.4.0')).toBeNull();
    expect(rdbVersionOfRelease('Redis', '9.0.0')).toBeNull();
    expect(rdbVersionOfRelease('Valkey', '9.0.0')).toBe(80);
    expect(rdbVersionOfRelease('Valkey', '10.0.0')).toBeNull();
    expect(serverVersionFromInfo('# Server\r\n').rdbVersion).toBeNull();
  });
});

describe('restoreIncompatibility (restore mode precheck)', () => {
  const valkey81 = serverVersionFromInfo(VALKEY_8_1);
  const redis62 = serverVersionFromInfo(REDIS_6_2);
  const redis70 = serverVersionFromInfo(REDIS_7_0);
  const redis80 = serverVersionFromInfo(REDIS_8_0);

  it('older or equal RDB format into a newer reader is fine', () => {
    expect(restoreIncompatibility(redis62, redis70)).toBeNull();
    expect(restoreIncompatibility(redis70, valkey81)).toBeNull();
    expect(restoreIncompatibility(valkey81, redis80)).toBeNull();
    expect(restoreIncompatibility(redis70, redis70)).toBeNull();
  });

  it('a newer format names both servers and RDB versions', () => {
    expect(restoreIncompatibility(redis70, redis62)).toBe(
      'the source (Redis 7.0.15) writes RDB version 10, the destination (Redis 6.2.14) reads RDB versions up to 9',
    );
    expect(restoreIncompatibility(valkey81, redis70)).toMatch(/Valkey 8\.1\.8\) writes RDB version 11.*Redis 7\.0\.15\) reads RDB versions up to 10/);
    // Valkey 8.1 is "8.1" but cannot read what Redis 8.0 writes
    expect(restoreIncompatibility(redis80, valkey81)).toMatch(/writes RDB version 12/);
  });

  it('unknown releases of one product fall back to comparing versions; across products nothing is claimed', () => {
    expect(restoreIncompatibility(serverVersionOf('Redis', '9.1.0'), serverVersionOf('Redis', '9.0.0'))).toMatch(/older than the source/);
    expect(restoreIncompatibility(serverVersionOf('Redis', '9.0.0'), serverVersionOf('Redis', '9.1.0'))).toBeNull();
    expect(restoreIncompatibility(serverVersionOf('Redis', '9.0.0'), valkey81)).toBeNull();
  });
});
