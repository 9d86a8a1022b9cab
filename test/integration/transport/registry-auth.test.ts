/**
 * Registry credentials from the registry-username / registry-password settings: every request —
 * the registration (through @kafkajs/confluent-schema-registry) and the look-ups by id (plain
 * fetch) — carries them. The registry is the stack's, behind a small proxy that demands HTTP basic
 * authentication the way a secured registry does.
 */
import { createServer, type Server } from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { configureConnections, resetConnections } from '../../../services/common/connection-settings.js';
import { ReplistreamError } from '../../../services/common/errors.js';
import { EventRegistry } from '../../../services/transport/registry.js';
import { stack, uniqueName } from '../../helpers/stack-env.js';

let proxy: Server;
let proxyUrl = '';
const seen: Array<string | undefined> = [];

beforeAll(async () => {
  const upstream = new URL(stack().registry);
  const expected = `Basic ${Buffer.from('reader:pa55:word').toString('base64')}`;
  proxy = createServer(async (req, res) => {
    seen.push(req.headers.authorization);
    if (req.headers.authorization !== expected) {
      res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Basic realm="registry"' });
      res.end('{"error_code":401,"message":"Unauthorized"}');
      return;
    }
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const path = (req.url ?? '/').replace(/^\/registry/, '');
    const r = await fetch(`${upstream.origin}${upstream.pathname}${path}`, {
      method: req.method,
      headers: { 'content-type': req.headers['content-type'] ?? 'application/json', accept: req.headers.accept ?? '*/*' },
      body: chunks.length ? Buffer.concat(chunks) : undefined,
    });
    res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'application/json' });
    res.end(Buffer.from(await r.arrayBuffer()));
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const addr = proxy.address();
  proxyUrl = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}/registry`;
});

afterEach(() => resetConnections());
afterAll(() => new Promise<void>((resolve) => proxy.close(() => resolve())));

describe('schema registry with basic authentication', () => {
  it('registers and looks schemas up with the credentials from the settings', async () => {
    configureConnections({ registryUsername: 'reader', registryPassword: 'pa55:word' });
    const registry = new EventRegistry({ url: proxyUrl, retries: 0 });
    const id = await registry.registerForTopic(uniqueName('auth-topic'));
    expect(await registry.fetchSchema(id)).toContain('EventBatch');
    expect(seen.length).toBeGreaterThanOrEqual(2);
    expect(new Set(seen)).toEqual(new Set([`Basic ${Buffer.from('reader:pa55:word').toString('base64')}`]));
  });

  it('refused credentials are an AUTH error naming registry-username, without the password', async () => {
    configureConnections({ registryUsername: 'reader', registryPassword: 'wrong-secret' });
    const registry = new EventRegistry({ url: proxyUrl, retries: 0 });
    const err = await registry.fetchSchema(1).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(ReplistreamError);
    expect((err as ReplistreamError).code).toBe('AUTH');
    expect((err as ReplistreamError).setting).toBe('registry-username');
    expect((err as ReplistreamError).message).toMatch(/refused the credentials.*check registry-username and registry-password/);
    expect((err as ReplistreamError).message).not.toContain('wrong-secret');
    const reg = await registry.registerForTopic(uniqueName('auth-topic')).then(() => null, (e: unknown) => e);
    expect((reg as ReplistreamError).setting).toBe('registry-username');
  });
});
