import { describe, expect, it } from 'vitest';
import { masterUrl, parseSentinelUrl, sentinelUrlProblem } from '../../../services/common/sentinel-url.js';

describe('Sentinel source URL', () => {
  it('reads the Sentinels, the master set and the servers’ credentials', () => {
    const s = parseSentinelUrl('redis+sentinel://app:p%40ss@10.0.0.1:26379,sentinel-2,[::1]:26380/my-master');
    expect(s.sentinels).toEqual([{ host: '10.0.0.1', port: 26379 }, { host: 'sentinel-2', port: 26379 }, { host: '::1', port: 26380 }]);
    expect(s.masterName).toBe('my-master');
    expect(s.username).toBe('app');
    expect(s.password).toBe('p@ss');
    expect(s.display).toBe('redis+sentinel://***@10.0.0.1:26379,sentinel-2,[::1]:26380/my-master');
    expect(masterUrl(s, { host: '10.0.0.9', port: 6380 })).toBe('redis://app:p%40ss@10.0.0.9:6380');
  });

  it('a password alone is the default user’s', () => {
    const s = parseSentinelUrl('redis+sentinel://:secret@h:26379/m');
    expect([s.username, s.password]).toEqual([null, 'secret']);
    expect(masterUrl(s, { host: 'h2', port: 1 })).toBe('redis://:secret@h2:1');
  });

  it('names what is wrong', () => {
    expect(sentinelUrlProblem('redis+sentinel://h:26379')).toMatch(/master set name is missing/);
    expect(sentinelUrlProblem('redis+sentinel://h:26379/')).toMatch(/path must be the master set name/);
    expect(sentinelUrlProblem('redis+sentinel://h:99999/m')).toMatch(/port of h is not from 1 to 65535/);
    expect(sentinelUrlProblem('redis+sentinel://user@h/m')).toMatch(/user name needs a password/);
    expect(sentinelUrlProblem('redis+sentinel://h1:1,h2:x/m')).toMatch(/"h2:x" is not host:port/);
    expect(sentinelUrlProblem('redis+sentinel://h:1/m')).toBeNull();
    expect(sentinelUrlProblem('redis+sentinel://h:1/m?sentinelPassword=x')).toMatch(/source-sentinel-password setting/);
    expect(sentinelUrlProblem('redis+sentinel://h:1/m?sentinelPassword=x')).not.toMatch(/=x/);
  });

  it('rediss+sentinel: TLS to the Sentinels and to the master', () => {
    const s = parseSentinelUrl('rediss+sentinel://:pw@s1:26379,s2:26380/m');
    expect(s.tls).toBe(true);
    expect(s.display).toBe('rediss+sentinel://***@s1:26379,s2:26380/m');
    expect(masterUrl(s, { host: 'h2', port: 6380 })).toBe('rediss://:pw@h2:6380');
    expect(parseSentinelUrl('redis+sentinel://s1/m').tls).toBe(false);
    expect(parseSentinelUrl('REDISS+SENTINEL://s1/m').tls).toBe(true);
  });
});
