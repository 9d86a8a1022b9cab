/**
 * The HTTP face of a running service: / (the status page, HTML), /healthz (process alive), /readyz
 * (connected and working), /status (task state, progress and lag as JSON, read by
 * `replistream status`), /metrics (Prometheus text format from prom-client), POST /pause and
 * /resume when the service can pause, and POST /limits (a JSON object of rate limits by setting
 * name, e.g. {"maxOpsPerSecond": 5000}; 0 or null removes one) when it has rate limits.
 */
import { createServer, type Server } from 'node:http';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { configError } from './errors.js';

export interface StatusSource {
  status(): Record<string, unknown> & { state: string };
  ready(): boolean;
  /** The status page (HTML). */
  page?(): string;
  /** pause / resume: resolves to the new status, rejects with a message when not possible now. */
  control?(action: 'pause' | 'resume'): Promise<Record<string, unknown>>;
  /** New rate limits: returns the new status, throws a message naming the setting it refuses. */
  setLimits?(changes: unknown): Record<string, unknown>;
}

/** A POST /limits body is a few numbers: anything much bigger is not one. */
const MAX_LIMITS_BODY = 16 * 1024;

export function newMetricsRegistry(service: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry });
  return registry;
}

/**
 * `host` is the bind address: loopback by default, because pause/resume are served without
 * authentication; expose the port deliberately (`--http-host 0.0.0.0`) behind a trusted network.
 */
export async function startHttpStatus(port: number, source: StatusSource, metrics: Registry, host = '127.0.0.1'): Promise<Server | null> {
  if (!port) return null;
  const server = createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    const send = (code: number, body: string, type = 'application/json') => {
      res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    if (req.method === 'POST' && (url === '/pause' || url === '/resume')) {
      if (!source.control) return send(404, JSON.stringify({ error: `this service cannot ${url.slice(1)}` }));
      source.control(url.slice(1) as 'pause' | 'resume').then(
        (st) => send(200, JSON.stringify(st)),
        (err: Error) => send(409, JSON.stringify({ error: err.message })),
      );
      return;
    }
    if (req.method === 'POST' && url === '/limits') {
      if (!source.setLimits) return send(404, JSON.stringify({ error: 'this service has no rate limits' }));
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= MAX_LIMITS_BODY) chunks.push(c);
      });
      req.on('end', () => {
        if (size > MAX_LIMITS_BODY) return send(413, JSON.stringify({ error: `a limits body is at most ${MAX_LIMITS_BODY} bytes` }));
        let changes: unknown;
        try {
          changes = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          return send(400, JSON.stringify({ error: 'the body is not JSON: send an object such as {"maxOpsPerSecond": 5000}' }));
        }
        try {
          send(200, JSON.stringify(source.setLimits!(changes)));
        } catch (err) {
          send(400, JSON.stringify({ error: (err as Error).message }));
        }
      });
      return;
    }
    if (url === '/' && source.page) return send(200, source.page(), 'text/html; charset=utf-8');
    if (url === '/healthz') return send(200, '{"ok":true}');
    if (url === '/readyz') return source.ready() ? send(200, '{"ready":true}') : send(503, '{"ready":false}');
    if (url === '/status') return send(200, JSON.stringify(source.status()));
    if (url === '/metrics') {
      metrics.metrics().then((text) => send(200, text, metrics.contentType), (err) => send(500, String(err), 'text/plain'));
      return;
    }
    send(404, '{"error":"not found"}');
  });
  await new Promise<void>((resolve, reject) => {
    // a port that cannot be had is a setting to change (exit 2), found before any sync work starts
    server.once('error', (err: NodeJS.ErrnoException) => {
      const where = `${host ?? '0.0.0.0'}:${port}`;
      if (err.code === 'EADDRINUSE') reject(configError('http-port', `port ${where} is already in use by another process; choose another http-port (0 disables the port)`, err));
      else if (err.code === 'EACCES') reject(configError('http-port', `no permission to listen on ${where} (ports below 1024 need privileges); choose another http-port`, err));
      else if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND') reject(configError('http-host', `cannot listen on ${where}: ${host} is not an address of this host (${err.code}); set http-host to one of its addresses`, err));
      else reject(err);
    });
    server.listen(port, host, () => resolve());
  });
  return server;
}
