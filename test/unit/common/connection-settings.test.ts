/**
 * Secured connections from settings: what kafkajs, ioredis and the replica link are given for the
 * kafka-tls-*, kafka-sasl-*, registry-* and source/destination-tls-* settings, and the errors
 * that name the setting when they are wrong.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { configureConnections, connectionSettingsFrom, redisTlsForUrl, resetConnections } from '../../../services/common/connection-settings.js';
import { ReplistreamError } from '../../../services/common/errors.js';
import { loadConfig } from '../../../services/config/load.js';
import { kafkaSecurityOf } from '../../../services/transport/kafka.js';

const dir = mkdtempSync(join(tmpdir(), 'replistream-tls-settings-'));
const ca = join(dir, 'ca.pem');
const cert = join(dir, 'client.pem');
const key = join(dir, 'client.key');
writeFileSync(ca, '-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n');
writeFileSync(cert, '-----BEGIN CERTIFICATE-----\nCLIENT\n-----END CERTIFICATE-----\n');
writeFileSync(key, '-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n');
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => resetConnections());

const BASE = { REPLISTREAM_KAFKA: 'k:9093', REPLISTREAM_REGISTRY: 'https://r:8081', REPLISTREAM_SOURCE_ID: 's' };

function configError(fn: () => unknown): ReplistreamError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ReplistreamError);
    expect((err as ReplistreamError).code).toBe('CONFIG');
    return err as ReplistreamError;
  }
  throw new Error('expected a CONFIG error');
}

describe('Kafka TLS and SASL from settings', () => {
  it('SASL_SSL with SCRAM-SHA-512, a CA file and a client certificate, all from the environment', () => {
    const config = loadConfig('capture', {}, {
      ...BASE,
      REPLISTREAM_SOURCE: 'redis://h:6379',
      REPLISTREAM_KAFKA_TLS_CA: ca,
      REPLISTREAM_KAFKA_TLS_CERT: cert,
      REPLISTREAM_KAFKA_TLS_KEY: key,
      REPLISTREAM_KAFKA_SASL_MECHANISM: 'scram-sha-512',
      REPLISTREAM_KAFKA_SASL_USERNAME: 'alice',
      REPLISTREAM_KAFKA_SASL_PASSWORD: 's3cret',
    });
    const { ssl, sasl } = kafkaSecurityOf(connectionSettingsFrom(config).kafka);
    expect(ssl?.rejectUnauthorized).toBe(true);
    expect(String(ssl?.ca)).toContain('\nCA\n');
    expect(String(ssl?.cert)).toContain('CLIENT');
    expect(String(ssl?.key)).toContain('KEY');
    expect(sasl).toEqual({ mechanism: 'scram-sha-512', username: 'alice', password: 's3cret' });
  });

  it('kafka-tls alone: TLS with the system CAs; plain SASL without TLS; nothing set: plaintext', () => {
    expect(kafkaSecurityOf(connectionSettingsFrom({ kafkaTls: true }).kafka)).toEqual({ ssl: { rejectUnauthorized: true } });
    const plain = kafkaSecurityOf(connectionSettingsFrom({ kafkaSaslMechanism: 'plain', kafkaSaslUsername: 'u', kafkaSaslPassword: 'p' }).kafka);
    expect(plain).toEqual({ sasl: { mechanism: 'plain', username: 'u', password: 'p' } });
    expect(kafkaSecurityOf(connectionSettingsFrom({}).kafka)).toEqual({});
  });

  it('verification is off only when asked for, with a warning', () => {
    const warnings: string[] = [];
    const { ssl } = kafkaSecurityOf(connectionSettingsFrom({ kafkaTlsInsecure: true }, (w) => warnings.push(w)).kafka);
    expect(ssl?.rejectUnauthorized).toBe(false);
    expect(warnings.join()).toMatch(/kafka-tls-insecure.*NOT verified/);
  });

  it('incomplete or contradictory settings name the setting to fix, never the password', () => {
    const e1 = configError(() => connectionSettingsFrom({ kafkaSaslMechanism: 'scram-sha-256', kafkaSaslUsername: 'u' }));
    expect(e1.setting).toBe('kafka-sasl-password');
    const e2 = configError(() => connectionSettingsFrom({ kafkaSaslUsername: 'u', kafkaSaslPassword: 'hunter2' }));
    expect(e2.setting).toBe('kafka-sasl-mechanism');
    expect(e2.message).not.toContain('hunter2');
    const e3 = configError(() => connectionSettingsFrom({ kafkaTlsCa: join(dir, 'missing.pem') }));
    expect(e3.setting).toBe('kafka-tls-ca');
    expect(e3.message).toContain('missing.pem');
    expect(e3.message).toContain('ENOENT');
    const e4 = configError(() => connectionSettingsFrom({ kafkaTlsCert: cert }));
    expect(e4.setting).toBe('kafka-tls-key');
    const e5 = configError(() => loadConfig('apply', {}, { ...BASE, REPLISTREAM_DESTINATION: 'redis://h:6379', REPLISTREAM_GROUP: 'g', REPLISTREAM_KAFKA_SASL_MECHANISM: 'scram-sha-1' }));
    expect(e5.setting).toBe('kafka-sasl-mechanism');
  });

  it('registry credentials need a user name', () => {
    expect(connectionSettingsFrom({ registryUsername: 'u', registryPassword: 'p' }).registry).toEqual({ username: 'u', password: 'p' });
    expect(configError(() => connectionSettingsFrom({ registryPassword: 'p' })).setting).toBe('registry-username');
  });
});

describe('Redis TLS from settings', () => {
  it('a rediss:// URL gets the CA, the client certificate and the host as server name; redis:// stays plain', () => {
    configureConnections({ source: 'rediss://user:pw@redis.example:6380', sourceTlsCa: ca, sourceTlsCert: cert, sourceTlsKey: key });
    const tls = redisTlsForUrl('source', 'rediss://user:pw@redis.example:6380');
    expect(tls?.servername).toBe('redis.example');
    expect(tls?.rejectUnauthorized).toBe(true);
    expect(String(tls?.ca)).toContain('\nCA\n');
    expect(String(tls?.cert)).toContain('CLIENT');
    expect(redisTlsForUrl('source', 'redis://redis.example:6379')).toBeUndefined();
    // the destination has its own settings: none here, so the system's CAs
    expect(redisTlsForUrl('destination', 'rediss://10.0.0.7:6380')).toEqual({ rejectUnauthorized: true });
  });

  it('an IP address is not sent as server name unless destination-tls-servername says which name to verify', () => {
    configureConnections({ destination: 'rediss://10.0.0.7:6380', destinationTlsServername: 'redis.internal' });
    expect(redisTlsForUrl('destination', 'rediss://10.0.0.7:6380')?.servername).toBe('redis.internal');
  });

  it('TLS settings with a redis:// URL are refused, naming the URL to change', () => {
    const err = configError(() => connectionSettingsFrom({ destination: 'redis://h:6379', destinationTlsCa: ca }));
    expect(err.setting).toBe('destination');
    expect(err.message).toMatch(/destination-tls-ca: set, but the destination URL is redis:\/\/.*rediss:\/\//);
  });
});
