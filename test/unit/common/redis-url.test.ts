import { describe, expect, it } from 'vitest';
import { parseRedisUrl } from '../../../services/common/redis-url.js';
import { parseRedisUrl as parseSourceUrl } from '../../../services/replication/link/source-endpoint.js';
import { parseRedisUrl as parseDestinationUrl } from '../../../services/destination/connection.js';
import { ReplistreamError } from '../../../services/common/errors.js';

describe('parseRedisUrl: the one parser of a Redis URL', () => {
  it('reads host, port, TLS and percent-decoded credentials', () => {
    expect(parseRedisUrl('rediss://app%40eu:p%2Fss@cache.example:6380/2', 'source')).toEqual({
      host: 'cache.example',
      port: 6380,
      tls: true,
      username: 'app@eu',
      password: 'p/ss',
    });
    expect(parseRedisUrl('redis://[::1]', 'destination')).toEqual({ host: '::1', port: 6379, tls: false, username: null, password: null });
  });

  it('refuses a bad URL naming the setting, without the password', () => {
    let err: unknown;
    try {
      parseRedisUrl('http://user:hunter2@host:6379', 'source');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ReplistreamError);
    const e = err as ReplistreamError;
    expect(e.setting).toBe('source');
    expect(e.message).toMatch(/^source: invalid value .*not redis:\/\/ or rediss:\/\//);
    expect(e.message).not.toContain('hunter2');
    expect(() => parseRedisUrl('redis://host:99999', 'destination')).toThrow(/destination: .*port "99999"/);
  });

  it('the source and destination sides read the same parts', () => {
    const url = 'redis://u:secret@10.0.0.7:7000';
    const src = parseSourceUrl(url);
    const dst = parseDestinationUrl(url);
    expect([src.host, src.port, src.tls, src.username, src.password]).toEqual(['10.0.0.7', 7000, false, 'u', 'secret']);
    expect([dst.host, dst.port, dst.tls, dst.username, dst.password]).toEqual(['10.0.0.7', 7000, false, 'u', 'secret']);
    expect(src.safeUrl).not.toContain('secret');
    expect(dst.display).not.toContain('secret');
  });
});
