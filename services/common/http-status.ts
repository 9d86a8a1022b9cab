/**
 * The HTTP face of a running service: / (the status page, HTML), /healthz (process alive), /readyz
 * (connected and working), /status (task state, progress and lag as JSON, read by
 * `replistream status`), /metrics (Prometheus text format from prom-client), and POST /pause and
 * /resume when the service can pause.
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
}

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
