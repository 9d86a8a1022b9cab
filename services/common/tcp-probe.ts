/**
 * What a plain TCP connection to a server says, for an error about a server that did not answer:
 * "connection refused" (nothing listens: wrong port, server down), "no answer" (a firewall drops
 * the packets, or the host is gone), "host name not found", or "connects" (the server listens but
 * does not answer the protocol in time: overloaded, or another service on that port).
 */
import { connect } from 'node:net';

export type TcpProbe = 'connection refused' | 'no answer to a TCP connect' | 'host name not found' | 'connects' | string;

export function probeTcp(host: string, port: number, timeoutMs = 1000): Promise<TcpProbe> {
  return new Promise((resolve) => {
    const socket = connect({ host: host.replace(/^\[(.*)\]$/, '$1'), port });
    const done = (what: TcpProbe) => {
      socket.destroy();
      resolve(what);
    };
    socket.setTimeout(timeoutMs, () => done('no answer to a TCP connect'));
    socket.once('connect', () => done('connects'));
    socket.once('error', (err: NodeJS.ErrnoException) =>
      done(err.code === 'ECONNREFUSED' ? 'connection refused' : err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN' ? 'host name not found' : err.message),
    );
  });
}
