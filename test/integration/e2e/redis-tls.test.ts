/**
 * Redis over TLS with a private CA, through the settings only: a source that requires client
 * certificates (tls-auth-clients yes) and a destination with a server certificate. The CA and the
 * certificates are made here with openssl. Capture (the real CLI) makes its full sync and streams
 * over TLS; `verify` reads both sides over TLS; a CA that did not sign the server's certificate
 * fails naming the setting to fix.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { pipelineNames, redisClient, until } from '../../helpers/pipeline.js';
import { killAll, startService } from '../../helpers/processes.js';
import { freePort, startRedis, type RedisServer } from '../../helpers/redis-server.js';
import { certDir } from '../../helpers/tls-certs.js';

const certs = certDir();
const f = certs.file;

let source: RedisServer;
let destination: RedisServer;
let sourceTls: number;
let destinationTls: number;

beforeAll(async () => {
  certs.ca('ca');
  certs.ca('other-ca');
  certs.cert('ca', 'server');
  certs.cert('ca', 'client');
  sourceTls = await freePort();
  destinationTls = await freePort();
  const tls = (port: number, authClients: 'yes' | 'no') => ({
    'tls-port': String(port),
    'tls-cert-file': f('server.crt'),
    'tls-key-file': f('server.key'),
    'tls-ca-cert-file': f('ca.crt'),
    'tls-auth-clients': authClients,
  });
  source = await startRedis({ ...tls(sourceTls, 'yes'), 'repl-backlog-size': '16mb' });
  destination = await startRedis(tls(destinationTls, 'no'));
});

afterEach(() => killAll());
afterAll(async () => {
  await source?.stop();
  await destination?.stop();
  certs.remove();
});

describe('Redis over TLS with a CA file', () => {
  it('capture syncs a source that requires client certificates; verify compares both sides over TLS', async () => {
    const src = redisClient(source.url); // the plain port, for loading data only
    await src.flushall();
    await src.call('DEBUG', 'POPULATE', 2000, 'tls:string', 32);
    for (let i = 0; i < 50; i++) await src.rpush(`tls:list:${i}`, ...Array.from({ length: 20 }, (_, j) => `v${j}`));
    const names = pipelineNames();
    const sourceUrl = `rediss://127.0.0.1:${sourceTls}`;
    const destinationUrl = `rediss://localhost:${destinationTls}`;
    const capture = startService([
      'capture', '--source', sourceUrl, '--source-id', names.sourceId, '--topic-prefix', names.topicPrefix, '--dbs', '0', '--partitions', '2',
      '--source-tls-ca', f('ca.crt'), '--source-tls-cert', f('client.crt'), '--source-tls-key', f('client.key'),
    ]);
    // the destination is written over TLS too (a CA file, no client certificate)
    const applier = startService(['apply', '--destination', destinationUrl, '--destination-tls-ca', f('ca.crt'), '--group', `${names.topicPrefix}-g`, '--source-id', names.sourceId,
      '--topic-prefix', names.topicPrefix, '--conflict-mode', 'ignore']);
    const dst = redisClient(destination.url);
    await until(async () => (await dst.dbsize()) >= 2050, 90_000, `full sync over TLS (capture log:\n${capture.log().slice(-1500)})`);
    // the stream after the snapshot, also over TLS
    await src.set('tls:after', 'streamed');
    await src.incr('tls:counter');
    await until(async () => (await dst.get('tls:after')) === 'streamed' && (await dst.get('tls:counter')) === '1', 60_000, 'streamed writes');
    expect(capture.log()).toMatch(/"tls":true/);

    const verify = startService([
      'verify', '--source', sourceUrl, '--destination', destinationUrl, '--dbs', '0',
      '--source-tls-ca', f('ca.crt'), '--source-tls-cert', f('client.crt'), '--source-tls-key', f('client.key'),
      '--destination-tls-ca', f('ca.crt'),
    ]);
    let out = '';
    verify.child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    expect(await verify.exited()).toBe(0);
    expect(out).toMatch(/compared \d+ keys in db 0: equal/);
    await capture.term();
    await applier.term();
    src.disconnect();
    dst.disconnect();
  });

  it('a CA that did not sign the server certificate, or a missing client certificate, fails naming the setting', async () => {
    const names = pipelineNames();
    const wrongCa = startService(['capture', '--source', `rediss://127.0.0.1:${sourceTls}`, '--source-id', names.sourceId, '--topic-prefix', names.topicPrefix,
      '--dbs', '0', '--source-tls-ca', f('other-ca.crt'), '--source-tls-cert', f('client.crt'), '--source-tls-key', f('client.key')]);
    expect(await wrongCa.exited()).toBe(1);
    expect(wrongCa.log()).toMatch(/TLS handshake with the source rediss:\/\/127\.0\.0\.1:\d+ failed: self-signed certificate in certificate chain; check the source-tls-ca/);

    // the source requires a client certificate (tls-auth-clients yes): verify without one
    const noCert = startService(['verify', '--source', `rediss://127.0.0.1:${sourceTls}`, '--destination', destination.url, '--source-tls-ca', f('ca.crt')]);
    expect(await noCert.exited()).toBe(1);
    // the server's alert (certificate required) or the reset that can overtake it: both name the settings
    expect(noCert.log()).toMatch(/TLS handshake failed: .*certificate required.*source-tls-cert and source-tls-key|TLS server closed the connection .*set source-tls-cert and source-tls-key/s);

    const noKey = startService(['verify', '--source', `rediss://127.0.0.1:${sourceTls}`, '--destination', destination.url, '--source-tls-cert', f('client.crt')]);
    expect(await noKey.exited()).toBe(2);
    expect(noKey.log()).toMatch(/source-tls-key: a client certificate needs both source-tls-cert and source-tls-key/);

    const plainUrl = startService(['verify', '--source', source.url, '--destination', destination.url, '--source-tls-ca', f('ca.crt')]);
    expect(await plainUrl.exited()).toBe(2);
    expect(plainUrl.log()).toMatch(/source-tls-ca: set, but the source URL is redis:\/\/.*rediss:\/\//);
  });
});
