/**
 * The HTTP face of a running service: /healthz (process alive), /readyz (connected and working),
 * /status (task state, progress and lag as JSON, read by `replistream status`), /metrics
 * (Prometheus text format from prom-client).
 */
import { createServer, type Server } from 'node:http';
import { Registry, collectDefaultMetrics } from 'prom-client';

export type TaskState = 'prechecking' | 'full-sync' | 'synchronizing' | 'failed' | 'stopped' | 'starting';

export interface StatusSource {
  status(): Record<string, unknown> & { state: TaskState };
  ready(): boolean;
}

export function newMetricsRegistry(service: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry });
  return registry;
}

export async function startHttpStatus(port: number, source: StatusSource, metrics: Registry): Promise<Server | null> {
  if (!port) return null;
  const server = createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    const send = (code: number, body: string, type = 'application/json') => {
      res.writeHead(code, { 'content-type': type });
      res.end(body);
    };
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
    server.once('error', reject);
    server.listen(port, '0.0.0.0', () => resolve());
  });
  return server;
}
