/**
 * One connection to the source, from its connect to its end; every reconnect makes a new one. It
 * says how the socket's bytes are read at this moment (handshake replies, snapshot bytes or the
 * command stream) and holds the reader, timers and flags of that connection. The link owns it; the
 * handshake and the delivery queue are handed it.
 */
import type { Socket } from 'node:net';
import type { ReplistreamError } from '../../common/errors.js';
import { ReplyReader, type SnapshotReader } from '../resp/reply-reader.js';
import { connectionError } from './link-errors.js';
import type { Endpoint } from './source-endpoint.js';

export interface Session {
  id: number;
  socket: Socket;
  mode: 'handshake' | 'transfer' | 'stream';
  /** Handshake replies, read line by line until the snapshot or the stream begins. */
  reader: ReplyReader;
  /** Wakes the handshake waiting for a reply (new bytes, or the session's end). */
  wake: (() => void) | null;
  ended: boolean;
  endError: ReplistreamError | null;
  snapshot: SnapshotReader | null;
  /** When bytes last came in: a source silent for `readTimeoutMs` is dropped. */
  lastReadAt: number;
  /** The periodic ACK and silence check. */
  timer: NodeJS.Timeout | null;
  /** Legacy SYNC: the master knows no offsets, so no ACKs. */
  legacy: boolean;
  /** FULLRESYNC seen and the snapshot not complete yet. */
  inFullSync: boolean;
  lastAckAt: number;
}

export function newSession(id: number, socket: Socket): Session {
  return {
    id,
    socket,
    mode: 'handshake',
    reader: new ReplyReader(),
    wake: null,
    ended: false,
    endError: null,
    snapshot: null,
    lastReadAt: Date.now(),
    timer: null,
    legacy: false,
    inFullSync: false,
    lastAckAt: 0,
  };
}

/** Resolves once the socket is connected (TLS: secured); rejects when it closes first or after `timeoutMs`. */
export function waitConnected(s: Session, ep: Endpoint, timeoutMs: number): Promise<void> {
  const event = ep.tls ? 'secureConnect' : 'connect';
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(connectionError(`connecting to ${ep.safeUrl} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    s.socket.once(event, () => {
      clearTimeout(timer);
      resolve();
    });
    s.socket.once('close', () => {
      clearTimeout(timer);
      reject(s.endError ?? connectionError('connection closed'));
    });
  });
}

export function write(s: Session, data: Buffer): void {
  if (!s.ended && !s.socket.destroyed) s.socket.write(data);
}

/** A command as a RESP array of bulk strings, as a replica sends it. */
export function encodeCommand(args: string[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = Buffer.from(a, 'utf8');
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}
