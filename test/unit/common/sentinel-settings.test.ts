/**
 * The Sentinels' own credentials and TLS (source-sentinel-password / -username, rediss+sentinel://):
 * what the clients that talk to the Sentinels and to the master are given. Both are tested live
 * in test/integration/e2e/sentinel-failover.test.ts.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { configureConnections, connectionSettingsFrom, resetConnections } from '../../../services/common/connection-settings.js';
import { ReplistreamError } from '../../../services/common/errors.js';
import { sentinelClientOptions } from '../../../services/common/sentinel.js';
import { parseSentinelUrl } from '../../../services/common/sentinel-url.js';
import { loadConfig } from '../../../services/config/load.js';

const dir = mkdtempSync(join(tmpdir(), 'replistream-sentinel-settings-'));
const ca = join(dir, 'ca.pem');
writeFileSync(ca, '-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n');
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => resetConnections());

const BASE = { REPLISTREAM_KAFKA: 'k:9093', REPLISTREAM_REGISTRY: 'http://r:8081', REPLISTREAM_SOURCE_ID: 's' };

function refused(fn: () => unknown): ReplistreamError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ReplistreamError);
    return err as ReplistreamError;
  }
  throw new Error('expected an error');
}

describe('Sentinel credentials and TLS', () => {
  it('the Sentinels\u2019 password comes from its own setting (here the environment), apart from the servers\u2019', () => {
    const url = 'redis+sentinel://:server-pw@s1:26379/m';
    const config = loadConfig('capture', {}, { ...BASE, REPLISTREAM_SOURCE: url, REPLISTREAM_SOURCE_SENTINEL_PASSWORD: 'sentinel-pw' });
    configureConnections(config);
    const o = sentinelClientOptions(parseSentinelUrl(url));
    expect(o.password).toBe('server-pw');
    expect(o.sentinelPassword).toBe('sentinel-pw');
    expect(o.sentinelUsername).toBeUndefined();
    expect(o.enableTLSForSentinelMode).toBeUndefined();
    expect(o.tls).toBeUndefined();
  });

  it('rediss+sentinel: TLS with the source-tls-* material to the Sentinels and to the master', () => {
    const url = 'rediss+sentinel://s1:26379/m';
    configureConnections({ source: url, sourceTlsCa: ca });
    const o = sentinelClientOptions(parseSentinelUrl(url));
    expect(o.enableTLSForSentinelMode).toBe(true);
    expect(String(o.sentinelTLS?.ca)).toContain('\nCA\n');
    expect(String(o.tls?.ca)).toContain('\nCA\n');
    expect(o.tls?.rejectUnauthorized).toBe(true);
    // not the Sentinel's host name: the master is another server, its certificate checked against its own host
    expect(o.tls?.servername).toBeUndefined();
  });

  it('contradictions name the setting to fix, never the password', () => {
    const tls = refused(() => connectionSettingsFrom({ source: 'redis+sentinel://s1/m', sourceTlsCa: ca }));
    expect(tls.message).toMatch(/source-tls-ca: set, but the source URL is redis\+sentinel:\/\/.*rediss\+sentinel:\/\//);
    const notSentinel = refused(() => connectionSettingsFrom({ source: 'redis://h:6379', sourceSentinelPassword: 'hush' }));
    expect(notSentinel.message).toMatch(/source-sentinel-password: set, but the source is not a Sentinel-managed set/);
    expect(notSentinel.message).not.toContain('hush');
    const userAlone = refused(() => connectionSettingsFrom({ source: 'redis+sentinel://s1/m', sourceSentinelUsername: 'ops' }));
    expect(userAlone.setting).toBe('source-sentinel-password');
  });
});
