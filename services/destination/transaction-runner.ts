/**
 * Transaction execution: sending a chunk (chunk-builder.ts) as one WATCH-checked MULTI/EXEC,
 * reading its outcome, and deciding what follows — record it (`commitChunk`), retry it (WATCH
 * aborted, redirected, refused for a while, a refused command skipped), or fail with an error that
 * says what the destination refused. Also the error marker a stream stops on after a command
 * failed at run time (written here, checked when a stream is loaded).
 *
 * Why apart from the writer: the standalone loop (writer.ts) and the per-slot loop
 * (cluster-writer.ts) run transactions the same way; what differs is only the target and the
 * position keys, which they pass in. The runner changes the writer's knowledge (`WriterState`) only
 * as an outcome tells it to.
 */
import type { Redis } from 'ioredis';
import type { SourcePosition } from '../events/model.js';
import { ReplistreamError } from '../common/errors.js';
import type { Topology } from './connection.js';
import { RespConnection } from './resp-connection.js';
import { commandArgs, type RespCommand, type RespSendable } from './resp-codec.js';
import { composeBody, type TransactionBody } from './transaction-body.js';
import { type PositionKeys, type WriterPosition, compareWriterPositions, decodePosition, encodePosition, formatPosition } from './position.js';
import { type Arg, type OpOrigin, commandName } from './translate.js';
import type { Chunk, Part } from './chunk-builder.js';
import type { WriterState } from './writer-state.js';
import type { BatchResult, ResolvedWriterOptions, WriterStats } from './writer-types.js';

export interface RejectedCommand {
  origin: OpOrigin | null;
  args: Arg[];
  error: Error;
}

export type TxOutcome =
  | { kind: 'committed'; runtimeErrors: RejectedCommand[] }
  | { kind: 'watch-aborted' }
  | { kind: 'rejected'; errors: RejectedCommand[] }
  | { kind: 'unknown'; error: Error };

/** Refusals that pass with time: the transaction is retried after a pause. */
const TRANSIENT = /^(LOADING|BUSY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN|OOM|NOREPLICAS|READONLY|MISCONF|NOTREADY|UNBLOCKED)\b/;
/** The slot is served elsewhere: the slot map is refreshed and the request retried. */
export const REDIRECT = /^(MOVED|ASK)\b/;
/** Attempts before an abort or a refusal that keeps coming back becomes a (retriable) error. */
export const MAX_RETRIES = 20;
/** Keys kept WATCHed between standalone transactions (positions and markers of recent ones). */
const MAX_ARMED_KEYS = 64;

export function isReplyError(e: unknown): boolean {
  return e instanceof Error && e.name === 'ReplyError';
}

function samePosition(a: WriterPosition | null, b: WriterPosition | null): boolean {
  return a === null || b === null ? a === b : compareWriterPositions(a, b) === 0;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Sends `commands` on one connection, in one write, and returns one reply per command, an Error
 * for an error reply (`replyError`); EXEC's reply is the array of its commands' replies, errors as
 * Error values, or null when a WATCHed key changed. Standalone transactions go through the writer's own RESP connection
 * (resp-connection.ts); cluster slots through their ioredis client.
 */
function sendBatch(target: Redis | RespConnection, commands: RespSendable[], onConnection?: number): Promise<unknown[]> {
  // no [error, value] pair made per reply: a transaction of 2,000 writes has 4,000 replies
  if (target instanceof RespConnection) return target.send(commands, onConnection);
  return sendPipeline(target, commands as RespCommand[]);
}

/** `sendBatch` on an ioredis client (a cluster slot's master): commands only, no encoded batches. */
async function sendPipeline(target: Redis, commands: RespCommand[]): Promise<unknown[]> {
  const p = target.pipeline();
  const inPipeline = p as unknown as { multi(): unknown; exec(): unknown };
  for (const cmd of commands) {
    const args = commandArgs(cmd);
    const name = String(args[0]);
    // inside a pipeline, multi() and exec() queue MULTI and EXEC; the last exec() sends it all
    if (name === 'MULTI') inPipeline.multi();
    else if (name === 'EXEC') inPipeline.exec();
    else p.call(name, ...args.slice(1));
  }
  return (((await p.exec()) ?? []) as Array<[Error | null, unknown]>).map(([e, v]) => e ?? v);
}

/** The error of a reply of `sendBatch`, null when it is a value. */
function replyError(r: unknown): Error | null {
  return r instanceof Error ? r : null;
}

// The two walks over a transaction's replies (thousands of them) live outside `execTransaction`.
// Why: their loops made that long async function hot, and V8 compiled it with everything it
// inlines two or three times in the first seconds of a load (the largest compile of the applier:
// ~0.25 s of a background thread each time, on two cores the writes compete with); run 70 times a
// second, it needs no optimizing, these small loops do.

/** The first reply that is a connection-level failure (not an error reply of Redis), or null. */
function connectionFailure(replies: readonly unknown[]): Error | null {
  for (let i = 0; i < replies.length; i++) {
    const r = replies[i];
    if (r instanceof Error && !isReplyError(r)) return r;
  }
  return null;
}

/** Indexes of the replies that are errors (none, nearly always). */
function errorIndexes(replies: readonly unknown[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < replies.length; i++) if (replies[i] instanceof Error) out.push(i);
  return out;
}

/** Runs the transactions of one destination (its topology, as opened at start). */
export class TransactionRunner {
  /**
   * Standalone: the keys WATCHed again (and read) right after the last committed transaction, in
   * the same write, and the values read: the next transaction on that connection whose keys are
   * all among them needs no round trip of its own to WATCH and check them.
   */
  private armed: { connectionId: number; keys: Set<string>; values: Map<string, string | null> } | null = null;

  constructor(
    private readonly topo: Topology,
    private readonly keys: PositionKeys,
    private readonly opts: Pick<ResolvedWriterOptions, 'positionDb' | 'onUnknownCommand' | 'logger'>,
    private readonly stats: WriterStats,
    private readonly state: WriterState,
  ) {}

  /** Forgets the keys WATCHed after the last transaction (their connection is closed or dropped). */
  disarm(): void {
    this.armed = null;
  }

  /**
   * Sends one transaction: [SELECT positionDb] WATCH … MULTI ops … SET position EXEC, in one write.
   * `selectDb` null for a cluster node (db 0 only).
   */
  async execTransaction(
    target: Redis | RespConnection,
    selectDb: number | null,
    chunk: Chunk,
    positionKeyOf: (stream: string) => string,
    encodedBody: TransactionBody | null = null,
  ): Promise<TxOutcome> {
    // 1. WATCH the positions and epoch markers, then check they still hold what this writer
    //    believes: a compare-and-set, so a second writer of a stream (or a marker moved by
    //    another stream) makes this transaction abort instead of applying twice.
    const moved = [...chunk.streams.entries()].filter(([, cs]) => cs.positionChanged && cs.posToStore);
    const positionKeys = moved.map(([name]) => positionKeyOf(name));
    const markerKeys = [...chunk.watch];
    const watched = positionKeys.length + markerKeys.length > 0;
    // Standalone: were these keys WATCHed and read right after the last transaction, on the
    // socket still open? Then what was read is what the check needs, and the WATCH still holds.
    const armed = target instanceof RespConnection ? this.armed : null;
    this.armed = null;
    const rearm = target instanceof RespConnection && selectDb !== null;
    let watchedOn = target instanceof RespConnection ? target.connectionId : undefined;
    let positionVals: Array<string | null> = [];
    let markerVals: Array<string | null> = [];
    if (armed && armed.connectionId === watchedOn && positionKeys.every((k) => armed.keys.has(k)) && markerKeys.every((k) => armed.keys.has(k))) {
      positionVals = positionKeys.map((k) => armed.values.get(k) ?? null);
      markerVals = markerKeys.map((k) => armed.values.get(k) ?? null);
    } else {
      const check: Arg[][] = [];
      if (selectDb !== null) check.push(['SELECT', String(selectDb)]);
      if (watched) check.push(['WATCH', ...positionKeys, ...markerKeys]);
      if (positionKeys.length) check.push(['MGET', ...positionKeys]);
      if (markerKeys.length) check.push(['MGET', ...markerKeys]);
      let preRes: unknown[];
      this.stats.positionChecks++;
      try {
        watchedOn = target instanceof RespConnection ? target.connectionId : undefined;
        preRes = await sendBatch(target, check);
        // (a reconnection inside send: the WATCH went on the new socket)
        if (target instanceof RespConnection) watchedOn = target.connectionId;
      } catch (err) {
        return { kind: 'unknown', error: err as Error };
      }
      for (const r of preRes) {
        const e = replyError(r);
        if (!e) continue;
        if (!isReplyError(e)) return { kind: 'unknown', error: e };
        return { kind: 'rejected', errors: [{ origin: null, args: ['WATCH'], error: e }] };
      }
      let at = (selectDb !== null ? 1 : 0) + (watched ? 1 : 0);
      if (positionKeys.length) positionVals = preRes[at++] as Array<string | null>;
      if (markerKeys.length) markerVals = preRes[at] as Array<string | null>;
    }
    let same = moved.every(([, cs], i) => samePosition(decodePosition(positionVals[i], positionKeys[i]), cs.state.stored));
    if (same) same = markerKeys.every((k, i) => (markerVals[i] === null ? null : Number(markerVals[i])) === (this.state.markers.get(k) ?? null));
    if (!same) {
      if (watched || armed) await sendBatch(target, [['UNWATCH']]).catch(() => undefined);
      return { kind: 'watch-aborted' };
    }
    // 2. the transaction itself, in one write, on the connection that holds the WATCH: its body
    //    (encoded already when the writer prepared it while the last transaction ran), then the
    //    writer's own SETs
    const encoded = target instanceof RespConnection;
    const body = encodedBody ?? composeBody(chunk.ops, selectDb, encoded);
    const tail: RespCommand[] = [];
    if (selectDb !== null && body.endDb !== selectDb) tail.push(['SELECT', String(selectDb)]);
    moved.forEach(([, cs], i) => tail.push(['SET', positionKeys[i], encodePosition(cs.posToStore!)]));
    for (const [k, e] of chunk.markerSets) tail.push(['SET', k, String(e)]);
    const tx: RespSendable[] = [['MULTI']];
    if (encoded) tx.push(body.wire);
    else for (const c of body.commands) tx.push(c);
    for (const c of tail) tx.push(c);
    tx.push(['EXEC']);
    const bodyLength = body.commands.length;
    /** The command answered by reply `i` after MULTI, and the op it comes from. */
    const commandAt = (i: number): RespCommand => (i < bodyLength ? body.commands[i] : tail[i - bodyLength]);
    const originAt = (i: number): OpOrigin | null => (i < bodyLength ? body.origins[i] : null);
    const queued = bodyLength + tail.length;
    // 3. standalone: in the same write, WATCH and read again the keys of this transaction and of
    //    the last ones (a few dozen at most: positions and epoch markers), for the next one
    let armKeys: string[] = [];
    if (rearm) {
      const keys = new Set([...positionKeys, ...markerKeys, ...(armed && armed.connectionId === watchedOn ? armed.keys : [])]);
      armKeys = keys.size <= MAX_ARMED_KEYS ? [...keys] : [...positionKeys, ...markerKeys];
      if (armKeys.length) tx.push(['SELECT', String(selectDb)], ['WATCH', ...armKeys], ['MGET', ...armKeys]);
    }
    let res: unknown[];
    try {
      res = await sendBatch(target, tx, watchedOn);
    } catch (err) {
      return { kind: 'unknown', error: err as Error };
    }
    if (rearm && armKeys.length) {
      const after = res.splice(res.length - 3, 3);
      const vals = after[2];
      if (!after.some((r) => replyError(r)) && Array.isArray(vals) && watchedOn !== undefined) {
        this.armed = { connectionId: watchedOn, keys: new Set(armKeys), values: new Map(armKeys.map((k, i) => [k, (vals[i] as string | null) ?? null])) };
      }
    }
    this.stats.transactions++;
    const pre = 1; // MULTI
    if (res.length === 0) return { kind: 'unknown', error: new Error('no reply to EXEC') };
    const execRes = res[res.length - 1];
    // a connection-level failure anywhere: the outcome of EXEC is unknown
    const lost = connectionFailure(res);
    if (lost) return { kind: 'unknown', error: lost };
    for (let i = 0; i < pre; i++) {
      const e = replyError(res[i]);
      if (e && !REDIRECT.test(e.message) && !TRANSIENT.test(e.message)) {
        return { kind: 'rejected', errors: [{ origin: null, args: ['MULTI'], error: e }] };
      }
    }
    const execError = replyError(execRes);
    if (execError) {
      const errors: RejectedCommand[] = [];
      for (let i = 0; i < queued; i++) {
        const e = replyError(res[pre + i]);
        if (e) errors.push({ origin: originAt(i), args: commandArgs(commandAt(i)) as Arg[], error: e });
      }
      for (let i = 0; i < pre; i++) {
        const e = replyError(res[i]);
        if (e) errors.push({ origin: null, args: ['MULTI'], error: e });
      }
      if (errors.length === 0) errors.push({ origin: null, args: ['EXEC'], error: execError });
      return { kind: 'rejected', errors };
    }
    const replies = execRes as unknown[] | null;
    if (replies === null) {
      this.armed = null; // read before an EXEC that did not run: not what the writer believes
      return { kind: 'watch-aborted' };
    }
    const runtimeErrors: RejectedCommand[] = [];
    for (const i of errorIndexes(replies)) runtimeErrors.push({ origin: originAt(i), args: commandArgs(commandAt(i)) as Arg[], error: replies[i] as Error });
    return { kind: 'committed', runtimeErrors };
  }

  /** Decides what to do after a transaction. Returns 'retry' to rebuild the same chunk, 'next' to go on. */
  async handleOutcome(
    domain: number,
    chunk: Chunk,
    parts: Part[],
    outcome: TxOutcome,
    skipIds: Set<string>,
    result: BatchResult,
    attempt: number,
  ): Promise<'retry' | 'next'> {
    const partOf = (o: OpOrigin | null): Part | undefined => (o ? parts.find((p) => p.prep.index === o.eventIndex) : undefined);
    const posOf = (o: OpOrigin | null): SourcePosition | null => partOf(o)?.prep.event.pos ?? null;
    const names = [...chunk.streams.keys()];
    const stream = names.join(', ');
    const streamOf = (o: OpOrigin | null): string => partOf(o)?.stream ?? stream;
    switch (outcome.kind) {
      case 'committed': {
        this.commitChunk(domain, chunk, result);
        if (outcome.runtimeErrors.length) await this.handleRuntimeErrors(outcome.runtimeErrors, posOf, streamOf);
        return 'next';
      }
      case 'watch-aborted': {
        this.stats.watchRetries++;
        if (attempt > MAX_RETRIES) {
          throw new ReplistreamError('DESTINATION', `stream ${stream}: transaction aborted ${attempt} times by concurrent changes of its position or epoch keys`, { retriable: true });
        }
        for (const name of names) {
          const before = this.state.stream(name).domains.get(domain)?.stored ?? null;
          const stored = await this.readDomainPosition(name, domain);
          if (!samePosition(stored, before)) {
            // someone else applied this stream: step back and let the applier re-deliver
            throw new ReplistreamError(
              'DESTINATION',
              `stream ${name}${this.topo.kind === 'cluster' ? ` slot ${domain}` : ''}: another writer advanced the position to ${formatPosition(stored)} (was ${formatPosition(before)}); is a second applier consuming the same partition?`,
              { retriable: true, details: { stream: name, stored, known: before } },
            );
          }
        }
        for (const k of chunk.watch) this.state.markers.delete(k);
        await this.reloadMarkers(domain, [...chunk.watch]);
        return 'retry';
      }
      case 'rejected': {
        const redirect = outcome.errors.find((e) => REDIRECT.test(e.error.message));
        const transient = outcome.errors.find((e) => TRANSIENT.test(e.error.message));
        if (redirect || transient) {
          if (attempt > MAX_RETRIES) {
            const e = (redirect ?? transient)!;
            throw new ReplistreamError('DESTINATION', `stream ${stream}: the destination keeps refusing the transaction: ${e.error.message}`, { retriable: true, cause: e.error });
          }
          if (redirect && this.topo.kind === 'cluster') await this.topo.router.refresh();
          else await sleep(Math.min(50 * 2 ** attempt, 2000));
          return 'retry';
        }
        const infra = outcome.errors.find((e) => !e.origin);
        const own = outcome.errors.filter((e) => e.origin);
        if (infra && own.length === 0) {
          throw new ReplistreamError('DESTINATION', `stream ${stream}: the destination refused replistream's own ${commandName(infra.args)}: ${infra.error.message}`, { cause: infra.error });
        }
        const first = own[0];
        if (this.opts.onUnknownCommand === 'skip') {
          if (own.every((e) => skipIds.has(e.origin!.id))) {
            throw new ReplistreamError('INTERNAL', `stream ${stream}: ${first.origin!.name} was skipped but the destination still reports it: ${first.error.message}`, { cause: first.error });
          }
          for (const e of own) {
            skipIds.add(e.origin!.id);
            this.countSkipped(e.origin!.name, streamOf(e.origin), posOf(e.origin), e.error.message);
          }
          return 'retry';
        }
        throw refusedError(streamOf(first.origin), first, posOf(first.origin), false);
      }
      case 'unknown': {
        if (this.topo.kind === 'cluster') await this.topo.router.refresh().catch(() => undefined);
        throw new ReplistreamError(
          'CONNECTION',
          `stream ${stream}: lost the destination while a transaction was in flight (${outcome.error.message}); its outcome is unknown: positions will be re-read`,
          { retriable: true, cause: outcome.error },
        );
      }
    }
  }

  /** Counts and logs a refused command skipped (on-command-error skip). */
  countSkipped(name: string, stream: string, pos: SourcePosition | null, why: string): void {
    this.stats.skipped[name] = (this.stats.skipped[name] ?? 0) + 1;
    this.opts.logger.warn({ stream, position: pos, command: name, reason: why }, `skipped ${name} refused by the destination (on-command-error skip)`);
  }

  private async handleRuntimeErrors(
    errors: RejectedCommand[],
    posOf: (o: OpOrigin | null) => SourcePosition | null,
    streamOf: (o: OpOrigin | null) => string,
  ): Promise<void> {
    const infra = errors.find((e) => !e.origin);
    if (infra) {
      throw new ReplistreamError('DESTINATION', `stream ${streamOf(null)}: replistream's own ${commandName(infra.args)} failed in the destination: ${infra.error.message}`, { cause: infra.error });
    }
    if (this.opts.onUnknownCommand === 'skip') {
      for (const e of errors) this.countSkipped(e.origin!.name, streamOf(e.origin), posOf(e.origin), e.error.message);
      return;
    }
    const first = errors[0];
    const stream = streamOf(first.origin);
    const pos = posOf(first.origin);
    const err = refusedError(stream, first, pos, true);
    const marker = JSON.stringify({ position: pos, command: first.origin!.name, error: first.error.message, at: new Date().toISOString() });
    try {
      const keys = this.keys;
      if (this.topo.kind === 'standalone') {
        await this.topo.client.pipeline().select(this.opts.positionDb).set(keys.error(stream), marker).exec();
      } else {
        await this.topo.router.forSlot(keys.homeSlot(stream)).set(keys.error(stream), marker);
      }
    } catch (e) {
      this.opts.logger.error({ err: e }, 'could not record the refused command in the destination');
    }
    throw err;
  }

  /**
   * What a restarted writer does on finding the error marker `handleRuntimeErrors` left for
   * `stream`: refuse the stream (on-command-error fail) or warn and go on (skip).
   */
  checkErrorMarker(stream: string, value: string | null): void {
    if (value === null) return;
    const key = this.keys.error(stream);
    if (this.opts.onUnknownCommand === 'skip') {
      this.opts.logger.warn({ stream, marker: value }, `an earlier run stopped on a command the destination refused; on-command-error is skip: continuing (delete ${key} to clear)`);
      return;
    }
    throw new ReplistreamError(
      'DESTINATION',
      `an earlier run of stream ${stream} stopped because the destination refused a command: ${value}. Fix the destination (or resynchronize), then delete the key ${key} to continue, or set on-command-error to skip`,
      { setting: 'on-command-error', details: { stream, marker: value } },
    );
  }

  /**
   * Records what a committed chunk set (positions, markers) and counts its events; `written`
   * false: a chunk with nothing to send, which only moves positions in memory.
   */
  commitChunk(domain: number, chunk: Chunk, result: BatchResult, written = true): void {
    for (const [name, share] of chunk.streams) {
      if (written && share.positionChanged && share.posToStore) share.state.stored = share.posToStore;
      this.state.stream(name).domains.set(domain, share.state);
    }
    for (const [k, v] of chunk.markers) this.state.markers.set(k, v);
    this.stats.applied += chunk.applied.length;
    this.stats.duplicates += chunk.duplicates.length;
    this.stats.stale += chunk.stale.length;
    this.stats.unmappedDb += chunk.unmapped;
    this.stats.restoreFallbacks += chunk.fallbacks;
    this.stats.epochFlushes += chunk.epochFlushes;
    result.applied += chunk.applied.length;
    result.skipped += chunk.duplicates.length + chunk.stale.length;
    if (chunk.heartbeatMs !== null) this.state.heartbeatMs = Math.max(this.state.heartbeatMs ?? 0, chunk.heartbeatMs);
  }

  private async readDomainPosition(stream: string, domain: number): Promise<WriterPosition | null> {
    const keys = this.keys;
    if (this.topo.kind === 'standalone') {
      const res = (await this.topo.client.pipeline().select(this.opts.positionDb).get(keys.position(stream)).exec()) ?? [];
      if (res[1]?.[0]) throw connectionOrReplyError(res[1][0], 'reading positions');
      return decodePosition(res[1]?.[1] as string | null, keys.position(stream));
    }
    const v = await this.topo.router.forSlot(domain).get(keys.position(stream, domain));
    return decodePosition(v, keys.position(stream, domain));
  }

  private async reloadMarkers(domain: number, markerKeys: string[]): Promise<void> {
    if (markerKeys.length === 0) return;
    let vals: Array<string | null>;
    if (this.topo.kind === 'standalone') {
      const res = (await this.topo.client.pipeline().select(this.opts.positionDb).mget(...markerKeys).exec()) ?? [];
      if (res[1]?.[0]) throw connectionOrReplyError(res[1][0], 'reading epoch markers');
      vals = res[1][1] as Array<string | null>;
    } else {
      vals = await this.topo.router.forSlot(domain).mget(...markerKeys);
    }
    markerKeys.forEach((k, i) => this.state.markers.set(k, vals[i] === null ? null : Number(vals[i])));
  }

}

/** The error of a failed read or step outside a transaction: retriable unless refused for good. */
export function connectionOrReplyError(e: Error, what: string): ReplistreamError {
  if (isReplyError(e)) return new ReplistreamError('DESTINATION', `${what}: ${e.message}`, { cause: e, retriable: TRANSIENT.test(e.message) || REDIRECT.test(e.message) });
  // ioredis's words for "the connection is down, reconnecting": say so
  const why = /Stream isn't writeable|Connection is closed/i.test(e.message) ? 'the destination connection is down (reconnecting)' : e.message;
  return new ReplistreamError('CONNECTION', `${what}: ${why}`, { cause: e, retriable: true });
}

/** The error naming the event and the command the destination refused (on-command-error fail). */
export function refusedError(stream: string, e: RejectedCommand, pos: SourcePosition | null, committed: boolean): ReplistreamError {
  const name = e.origin?.name ?? commandName(e.args);
  return new ReplistreamError(
    'DESTINATION',
    `the destination refused ${name} of the event at ${formatPosition(pos)} (stream ${stream}): ${e.error.message}` +
      (committed ? '; the other commands of its transaction were applied (a run-time error does not roll back MULTI/EXEC)' : '; nothing of its transaction was applied') +
      ' (set on-command-error to skip to count and skip such commands)',
    { setting: 'on-command-error', cause: e.error, details: { stream, position: pos, command: name } },
  );
}
