/**
 * The replica handshake on a new connection: PING (and AUTH), REPLCONF, then PSYNC — or an inline
 * SYNC for a source that refuses PSYNC (≤ 2.6) — and, after a full sync is granted, the wait for
 * the snapshot's preamble. It reads the source's replies and decides what they mean (a full sync,
 * a continued stream, a retriable refusal, a fatal one); what follows from them is the sync's
 * business (`HandshakeOutcomes`, sync-state.ts).
 */
import { ReplistreamError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { HandshakeReply } from '../resp/reply-reader.js';
import { connectionError, protocolError } from './link-errors.js';
import { encodeCommand, write, type Session } from './link-session.js';
import type { ReplicaLinkOptions } from './link-types.js';
import type { Endpoint } from './source-endpoint.js';

/** The snapshot's preamble: `$<length>` (disk-based) or `$EOF:<mark>` (diskless). */
export type SnapshotPreamble = Extract<HandshakeReply, { type: 'bulk' } | { type: 'eof' }>;

/** Where the handshake's decisions go: the sync's steps (sync-state.ts). */
export interface HandshakeOutcomes {
  /** The stream followed and the offset processed in it, to ask PSYNC for; null asks a full sync. */
  resumePoint(): { replid: string; offset: number } | null;
  /** The source starts a full sync: FULLRESYNC, or a `legacy` SYNC. */
  beginFullSync(s: Session, replid: string, offset: number, legacy: boolean): void;
  /** The source continues the stream (CONTINUE), under `newReplid` after a failover, else null. */
  continueStream(s: Session, newReplid: string | null): void;
  /** The snapshot's preamble arrived: its bytes follow. */
  beginTransfer(s: Session, preamble: SnapshotPreamble): void;
}

/** What the handshake reads of the link; one object made with the link. */
export interface HandshakeContext {
  /** Credentials for AUTH. */
  readonly endpoint: Pick<Endpoint, 'username' | 'password'>;
  readonly opts: Pick<ReplicaLinkOptions, 'listeningPort' | 'announceIp'>;
  readonly log: Logger;
  readonly outcomes: HandshakeOutcomes;
}

export class Handshake {
  private readonly ctx: HandshakeContext;

  constructor(ctx: HandshakeContext) {
    this.ctx = ctx;
  }

  /** Runs the handshake on `s`; throws a ReplistreamError (retriable or not) when it fails. */
  async run(s: Session): Promise<void> {
    const ep = this.ctx.endpoint;
    const ping = await this.command(s, ['PING']);
    if (ping.type === 'error') {
      const authNeeded = /^(NOAUTH|NOPERM)\b/.test(ping.text) || ping.text.startsWith('ERR operation not permitted');
      if (!authNeeded) throw connectionError(`source answered PING with an error: ${ping.text}`);
      if (!ep.password) {
        throw new ReplistreamError('AUTH', `source requires authentication (${ping.text}); set a password in the source URL`, {
          setting: 'source',
        });
      }
    } else if (ping.type !== 'status') {
      throw protocolError(`unexpected reply to PING (${ping.type})`);
    }

    if (ep.password) {
      // `AUTH pass` is `AUTH default pass` on 6.0+ and the only form before: use it for `default`.
      const args = ep.username && ep.username !== 'default' ? ['AUTH', ep.username, ep.password] : ['AUTH', ep.password];
      const auth = await this.command(s, args);
      if (auth.type === 'error') {
        throw new ReplistreamError('AUTH', `source refused the credentials: ${auth.text}`, { setting: 'source' });
      }
      if (auth.type !== 'status') throw protocolError(`unexpected reply to AUTH (${auth.type})`);
    }

    const portReply = await this.command(s, ['REPLCONF', 'listening-port', String(this.ctx.opts.listeningPort ?? 0)]);
    this.ignoreError(portReply, 'REPLCONF listening-port');
    if (this.ctx.opts.announceIp) {
      this.ignoreError(await this.command(s, ['REPLCONF', 'ip-address', this.ctx.opts.announceIp]), 'REPLCONF ip-address');
    }
    this.ignoreError(await this.command(s, ['REPLCONF', 'capa', 'eof', 'capa', 'psync2']), 'REPLCONF capa');

    const resume = this.ctx.outcomes.resumePoint();
    const psyncArgs = resume ? ['PSYNC', resume.replid, String(resume.offset + 1)] : ['PSYNC', '?', '-1'];
    this.ctx.log.info({ psync: psyncArgs.slice(1).join(' ') }, 'requesting replication stream');
    const reply = await this.command(s, psyncArgs);

    if (reply.type === 'status' && reply.text.startsWith('FULLRESYNC')) {
      const m = /^FULLRESYNC ([0-9a-zA-Z]{40}) (\d{1,16})\s*$/.exec(reply.text);
      if (!m) throw protocolError(`malformed FULLRESYNC reply: ${reply.text.slice(0, 100)}`);
      this.ctx.outcomes.beginFullSync(s, m[1], Number(m[2]), false);
      await this.awaitSnapshot(s);
      return;
    }
    if (reply.type === 'status' && /^CONTINUE\b/.test(reply.text)) {
      if (!resume) throw protocolError('source answered CONTINUE to a full sync request');
      const newId = reply.text.slice('CONTINUE'.length).trim();
      if (newId && !/^[0-9a-zA-Z]{40}$/.test(newId)) throw protocolError(`malformed CONTINUE reply: ${reply.text.slice(0, 100)}`);
      this.ctx.outcomes.continueStream(s, newId || null);
      return;
    }
    if (reply.type === 'error') {
      if (/^(NOMASTERLINK|LOADING)\b/.test(reply.text)) {
        throw new ReplistreamError('CONNECTION', `source cannot serve a replica yet: ${reply.text}`, { retriable: true });
      }
      if (/^NOPERM\b/.test(reply.text)) {
        throw new ReplistreamError('AUTH', `source user may not replicate (needs +psync +replconf +ping): ${reply.text}`, {
          setting: 'source',
        });
      }
      this.ctx.log.warn({ reply: reply.text }, 'PSYNC refused, falling back to SYNC');
      write(s, Buffer.from('SYNC\r\n'));
      this.ctx.outcomes.beginFullSync(s, '?', 0, true);
      await this.awaitSnapshot(s);
      return;
    }
    throw protocolError(`unexpected reply to PSYNC: ${reply.type === 'status' ? reply.text.slice(0, 100) : reply.type}`);
  }

  /** Waits for the `$len` / `$EOF:` preamble, skipping keepalives, then hands over to the transfer. */
  private async awaitSnapshot(s: Session): Promise<void> {
    for (;;) {
      const r = await this.readReply(s);
      if (r.type === 'newline') continue;
      if (r.type === 'error') {
        if (s.legacy && /^(NOPERM|NOAUTH)\b/.test(r.text)) {
          throw new ReplistreamError('AUTH', `source refused SYNC: ${r.text}`, { setting: 'source' });
        }
        throw new ReplistreamError('CONNECTION', `source aborted the snapshot transfer: ${r.text}`, { retriable: true });
      }
      if (r.type === 'status') throw protocolError(`unexpected status before the snapshot: ${r.text.slice(0, 100)}`);
      this.ctx.outcomes.beginTransfer(s, r);
      return;
    }
  }

  private async readReply(s: Session): Promise<HandshakeReply> {
    for (;;) {
      if (s.ended) throw s.endError ?? connectionError('connection closed');
      const r = s.reader.next();
      if (r) return r;
      await new Promise<void>((resolve) => {
        s.wake = resolve;
      });
    }
  }

  private async command(s: Session, args: string[]): Promise<HandshakeReply> {
    write(s, encodeCommand(args));
    for (;;) {
      const r = await this.readReply(s);
      if (r.type !== 'newline') return r;
    }
  }

  private ignoreError(reply: HandshakeReply, what: string): void {
    if (reply.type === 'error') this.ctx.log.debug({ reply: reply.text }, `${what} refused (ignored)`);
  }
}
