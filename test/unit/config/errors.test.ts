/**
 * Bad settings are refused up front with an error that names the setting, where its value came
 * from and what is wrong, exit code 2, and never the password of a Redis URL.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scratchDir } from '../../helpers/scratch-dir.js';
import { maskRedisUrl, redisUrlProblem } from '../../../services/common/redis-url.js';
import { loadConfig } from '../../../services/config/load.js';
import { mapConnectError, parseRedisUrl } from '../../../services/destination/connection.js';
import { refusal } from '../../helpers/config-refusal.js';

const capture = { kafka: '127.0.0.1:9092', registry: 'http://r:8081', 'source-id': 's1', source: 'redis://h:1' };
const apply = { kafka: '127.0.0.1:9092', registry: 'http://r:8081', 'source-id': 's1', destination: 'redis://h:1', group: 'g' };

describe('configuration errors', () => {
  it('a Redis URL without a host is named the same way on the source and the destination side', () => {
    const src = refusal(() => loadConfig('capture', { ...capture, source: 'redis://:6379' }, {}));
    const dst = refusal(() => loadConfig('apply', { ...apply, destination: 'redis://:6379' }, {}));
    expect(src.setting).toBe('source');
    expect(dst.setting).toBe('destination');
    expect(src.message).toBe('source: invalid value redis://:6379 from --source: has no host name, e.g. redis://user:password@host:6379 (rediss:// for TLS)');
    expect(dst.message).toBe(src.message.replace(/source/g, 'destination'));
    // the destination's connection layer says it in the same words
    expect(refusal(() => parseRedisUrl('redis://:6379', 'destination')).message).toMatch(/^destination: invalid value redis:\/\/:6379: has no host name/);
  });

  it('says what is wrong with a URL and never shows its password', () => {
    const cases: Array<[string, RegExp]> = [
      ['http://user:pw-secret@h:1', /scheme http:\/\/ is not redis/],
      ['user:pw-secret@h:1', /must start with redis:\/\//],
      ['redis://user:pw-secret@h:99999', /port "99999" is not a number from 1 to 65535/],
      ['redis://user:pw-secret@h:1/cache', /path "\/cache" is not a database number/],
      ['redis://user:pw-secret@:1', /has no host name/],
    ];
    for (const [url, why] of cases) {
      const e = refusal(() => loadConfig('verify', { source: url, destination: 'redis://h:2' }, {}));
      expect(e.message).toMatch(why);
      expect(e.message).not.toContain('pw-secret');
      const env = refusal(() => loadConfig('verify', { destination: 'redis://h:2' }, { REPLISTREAM_SOURCE: url }));
      expect(env.message).toContain('from REPLISTREAM_SOURCE');
      expect(env.message).not.toContain('pw-secret');
    }
    expect(redisUrlProblem('redis://u:p@host:6379/2')).toBeNull();
    expect(redisUrlProblem('rediss://[::1]:6380')).toBeNull();
    expect(maskRedisUrl('redis://u:p/w@d@h:1?password=x')).toBe('redis://***@h:1?***');
  });

  it('refuses a db map that sends one source db to two destination dbs', () => {
    const e = refusal(() => loadConfig('apply', { ...apply, 'db-map': '0:1,0:2' }, {}));
    expect(e.setting).toBe('db-map');
    expect(e.message).toMatch(/db-map: invalid value "0:1,0:2" from --db-map: source db 0 is mapped twice \(0:1 and 0:2\)/);
    expect(loadConfig('apply', { ...apply, 'db-map': '0:1,1:1' }, {}).dbMap).toEqual(new Map([[0, 1], [1, 1]]));
    expect(refusal(() => loadConfig('apply', { ...apply, 'db-map': '0-1' }, {})).message).toMatch(/must look like 0:0,1:3/);
  });

  it('reads booleans from the environment strictly, naming the variable', () => {
    const e = refusal(() => loadConfig('capture', capture, { REPLISTREAM_NO_HEARTBEAT: 'maybe' }));
    expect(e.setting).toBe('no-heartbeat');
    expect(e.message).toMatch(/REPLISTREAM_NO_HEARTBEAT="maybe" is not a boolean/);
    expect(loadConfig('capture', capture, { REPLISTREAM_NO_HEARTBEAT: 'yes' }).noHeartbeat).toBe(true);
    expect(loadConfig('capture', capture, { REPLISTREAM_NO_HEARTBEAT: 'FALSE' }).noHeartbeat).toBe(false);
    const dir = scratchDir('cfg');
    writeFileSync(join(dir, 'c.json'), JSON.stringify({ noHeartbeat: 'maybe' }));
    expect(refusal(() => loadConfig('capture', { ...capture, config: join(dir, 'c.json') }, {})).message).toMatch(/^no-heartbeat: invalid value "maybe" from .*c\.json/);
  });

  it('takes whole numbers only, and start positions in their documented forms', () => {
    for (const bad of ['', ' 5', '1e3', '0x10', '4.5', '-1']) {
      const e = refusal(() => loadConfig('capture', { ...capture, partitions: bad || undefined }, bad ? {} : { REPLISTREAM_PARTITIONS: ' ' }));
      expect(e.setting).toBe('partitions');
    }
    expect(refusal(() => loadConfig('capture', { ...capture, partitions: '0' }, {})).message).toMatch(/partitions: invalid value "0" from --partitions: must be at least 1/);
    expect(refusal(() => loadConfig('capture', { ...capture, 'http-port': '70000' }, {})).message).toMatch(/http-port: .*must be at most 65535/);
    expect(loadConfig('capture', { ...capture, 'retention-ms': '-1' }, {}).retentionMs).toBe(-1);
    for (const bad of ['offset:1', 'offset:x@1', 'time:yesterday', 'begin']) {
      expect(refusal(() => loadConfig('apply', { ...apply, from: bad }, {})).message).toMatch(/^from: invalid value .* from --from: must be committed, earliest/);
    }
    expect(refusal(() => loadConfig('capture', { ...capture, registry: 'ftp://u:reg-secret@r' }, {})).message).toBe(
      'registry: invalid value "ftp://***@r" from --registry: must be an http:// or https:// URL, e.g. http://127.0.0.1:8081',
    );
    expect(refusal(() => loadConfig('capture', { ...capture, 'kafka-timeout-ms': '10' }, {})).message).toMatch(/kafka-timeout-ms: .*must be at least 1000/);
  });

  it('names a missing, unreadable or invalid config file', () => {
    const dir = scratchDir('cfg');
    expect(refusal(() => loadConfig('capture', { config: join(dir, 'none.json') }, {})).message).toBe(`config: cannot read ${join(dir, 'none.json')}: no such file`);
    expect(refusal(() => loadConfig('capture', { config: dir }, {})).message).toMatch(/config: cannot read .*: it is a directory/);
    writeFileSync(join(dir, 'bad.json'), '{ "source": ');
    expect(refusal(() => loadConfig('capture', { config: join(dir, 'bad.json') }, {})).message).toMatch(/config: .*bad\.json is not valid JSON/);
    // the parser's own message would quote the text around the error: a password there stays hidden
    writeFileSync(join(dir, 'secret-bad.json'), '{\n  "source": redis://u:file-secret@h:1\n}');
    const bad = refusal(() => loadConfig('capture', { config: join(dir, 'secret-bad.json') }, {}));
    expect(bad.message).toBe(`config: ${join(dir, 'secret-bad.json')} is not valid JSON`);
    writeFileSync(join(dir, 'comma.json'), '{\n  "source": "redis://u:file-secret@h:1",\n}');
    expect(refusal(() => loadConfig('capture', { config: join(dir, 'comma.json') }, {})).message).toBe(`config: ${join(dir, 'comma.json')} is not valid JSON at line 3, column 1`);
    writeFileSync(join(dir, 'list.json'), '[]');
    expect(refusal(() => loadConfig('capture', { config: join(dir, 'list.json') }, {})).message).toMatch(/must hold a JSON object/);
    writeFileSync(join(dir, 'typo.json'), JSON.stringify({ partitons: 3 }));
    expect(refusal(() => loadConfig('capture', { config: join(dir, 'typo.json') }, {})).message).toMatch(/^partitons: unknown setting/);
    writeFileSync(join(dir, 'secret.json'), JSON.stringify({ source: 'redis://u:file-secret@:1' }));
    const e = refusal(() => loadConfig('capture', { ...capture, source: undefined, config: join(dir, 'secret.json') }, {}));
    expect(e.message).toMatch(/source: invalid value redis:\/\/\*\*\*@:1 from .*secret\.json: source: has no host name/);
    expect(e.message).not.toContain('file-secret');
  });

  it('a Redis connection failure names the server, the kind of cause and the setting, never the password', () => {
    const ep = parseRedisUrl('redis://repl:pw-secret@10.1.2.3:6380', 'source');
    const err = (code: string, message: string) => Object.assign(new Error(message), { code });
    const cases: Array<[Error, string, RegExp]> = [
      [err('ECONNREFUSED', 'connect ECONNREFUSED 10.1.2.3:6380'), 'CONNECTION', /^source 10\.1\.2\.3:6380: unreachable: connection refused; check the source setting$/],
      [err('ETIMEDOUT', 'connect ETIMEDOUT'), 'CONNECTION', /^source 10\.1\.2\.3:6380: unreachable: no answer \(timed out\)/],
      [err('ENOTFOUND', 'getaddrinfo ENOTFOUND redis.internal'), 'CONNECTION', /unreachable: host name not found/],
      [new Error('WRONGPASS invalid username-password pair or user is disabled.'), 'AUTH', /^source 10\.1\.2\.3:6380: authentication failed for user "repl": wrong user name or password/],
      [new Error('NOAUTH Authentication required.'), 'AUTH', /authentication failed .*requires a password/],
      [new Error("NOPERM this user has no permissions to run the 'info' command"), 'AUTH', /^source 10\.1\.2\.3:6380: missing rights for user "repl": this user has no permissions to run the 'info' command$/],
    ];
    for (const [cause, code, message] of cases) {
      const e = mapConnectError(cause, ep, 'source');
      expect(e.code).toBe(code);
      expect(e.setting).toBe('source');
      expect(e.message).toMatch(message);
      expect(e.message).not.toContain('pw-secret');
      expect(e.retriable).toBe(code === 'CONNECTION'); // a refused password does not pass by waiting
    }
  });
});
