/**
 * Schema registry (Confluent REST API; tested against Apicurio 3.3.3's `/apis/ccompat/v7`) and
 * the Confluent wire format: 0x00, int32 BE schema id, Avro body.
 *
 * - Registration: the EventBatch schema, as ONE self-contained schema (every named type inlined,
 *   see codec.ts `eventBatchSchemaText`), under the subject `<topic>-value` (TopicNameStrategy),
 *   through @kafkajs/confluent-schema-registry's `register` (loaded on first use, so it stays off
 *   the path to the replication link's start), which reads `GET /config/{subject}` (404 for a new
 *   subject → registers, then sets the subject to BACKWARD). Quirk handled: a subject that exists
 *   with another compatibility level (an operator set NONE, or the global default leaks through)
 *   makes the library refuse; we then register with `POST /subjects/{subject}/versions` directly,
 *   leaving the operator's setting alone, with a warning. That request and the look-ups below
 *   (`GET /schemas/ids/{id}`, `GET /subjects/{subject}/versions/latest`) are made here, with
 *   Node's HTTP client (`httpRequest`): the library has no public call for them (its `getSchema`
 *   returns a type parsed by its own avsc, and a resolver needs the schema text; its raw API
 *   client is private). They retry network failures and 5xx answers (`retries`, backoff from
 *   100 ms). The id returned is whatever the registry uses on its ccompat API (Apicurio 3: the
 *   content id, the same for the same schema under several subjects); it is only ever looked up
 *   again through the same API (`GET /schemas/ids/{id}`), so either id mode works.
 * - Encoding: our codec (codec.ts) writes the body; this module adds the header.
 * - Decoding: a body written with this build's schema id is decoded directly; another id (a record
 *   written by an older or newer capture) is read through Avro schema resolution after fetching
 *   the writer schema once (`GET /schemas/ids/{id}`), or refused with a clear error when the two
 *   schema versions are incompatible. An applier looks its topics' latest schemas up at start
 *   (`prime`), so its first batch does not wait for the registry.
 */
import http from 'node:http';
import https from 'node:https';
import type avsc from 'avsc';
import { ReplistreamError } from '../common/errors.js';
import { connections } from '../common/connection-settings.js';
import { redactUrl, type Logger } from '../common/log.js';
import { avroTypeFor, createResolver, decodeBatch, eventBatchSchemaText, eventTypes } from '../events/codec.js';
import { WIRE_HEADER_BYTES } from '../events/record-limit.js';
import type { ChangeEvent } from '../events/model.js';
import type { ReadOptions } from '../events/fast-reader.js';

interface LibraryClient {
  registry: InstanceType<typeof import('@kafkajs/confluent-schema-registry').SchemaRegistry>;
  avro: (typeof import('@kafkajs/confluent-schema-registry').SchemaType)['AVRO'];
}

export const MAGIC_BYTE = 0;

/** `0x00 | int32 BE id | body`. */
export function toWire(schemaId: number, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(WIRE_HEADER_BYTES + body.length);
  out[0] = MAGIC_BYTE;
  out.writeInt32BE(schemaId, 1);
  body.copy(out, WIRE_HEADER_BYTES);
  return out;
}

/** Splits a wire-format value; PROTOCOL error when it is not one. */
export function fromWire(value: Buffer): { schemaId: number; body: Buffer } {
  if (!Buffer.isBuffer(value) || value.length < WIRE_HEADER_BYTES || value[0] !== MAGIC_BYTE) {
    throw new ReplistreamError(
      'PROTOCOL',
      `record value is not in the Confluent wire format (${value?.length ?? 0} bytes, first byte ${value?.[0] ?? 'none'}; expected 0x00 + schema id)`,
    );
  }
  return { schemaId: value.readInt32BE(1), body: value.subarray(WIRE_HEADER_BYTES) };
}

/** The registry subject for a topic's values (TopicNameStrategy). */
export function subjectFor(topic: string): string {
  return `${topic}-value`;
}

export interface RegistryConfig {
  /** Base URL of the Confluent-compatible API, e.g. `http://127.0.0.1:8081/apis/ccompat/v7`. */
  url: string;
  username?: string;
  password?: string;
  logger?: Logger;
  /** Retries of each registry call (default 5). */
  retries?: number;
}

/**
 * Why a registry request got no answer, in words: the registry client reports a refused
 * connection as "replistream - Error, status 400: connect ECONNREFUSED …", which reads like an
 * HTTP answer that never came.
 */
function networkReason(said: string, message: string): string {
  if (/ECONNREFUSED/.test(said)) return 'connection refused';
  if (/ENOTFOUND|EAI_AGAIN/.test(said)) return 'host name not found';
  if (/ETIMEDOUT|timed? ?out/i.test(said)) return 'no answer (timed out)';
  if (/EHOSTUNREACH|ENETUNREACH/.test(said)) return 'no route to the host';
  if (/ECONNRESET|socket hang up/i.test(said)) return 'connection reset';
  return message.replace(/^replistream - Error, status \d+: /, '');
}

/** A registry request's limit, connection and answer included. */
const REQUEST_TIMEOUT_MS = 30_000;

interface HttpAnswer {
  status: number;
  text: string;
}

const keepAlive = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };

/**
 * One HTTP request with Node's own client, not `fetch`: `fetch` loads its implementation (undici)
 * on first use, 70–90 ms of CPU at every start of a service (its first registry request took
 * 80–110 ms against 15–20 ms this way, measured on an idle 2-core machine), on the path to the
 * first record written or read.
 */
function httpRequest(url: string, method: string, headers: Record<string, string>, body: string | undefined, timeoutMs: number): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const secure = target.protocol === 'https:';
    const send = secure ? https.request : http.request;
    const all = body === undefined ? headers : { ...headers, 'Content-Length': String(Buffer.byteLength(body)) };
    const req = send(target, { method, headers: all, agent: secure ? keepAlive.https : keepAlive.http }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', fail);
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') });
      });
    });
    const timer = setTimeout(() => req.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms: timed out`), { code: 'ETIMEDOUT' })), timeoutMs);
    function fail(err: Error): void {
      clearTimeout(timer);
      reject(err);
    }
    req.on('error', fail);
    req.end(body);
  });
}

function registryError(url: string, what: string, err: unknown): ReplistreamError {
  if (err instanceof ReplistreamError) return err;
  const e = err as { status?: number; message?: string; code?: string; cause?: { code?: string } };
  const where = redactUrl(url);
  if (e?.status === 401 || e?.status === 403) {
    return new ReplistreamError('AUTH', `schema registry ${where} refused the credentials (${what}): ${e.message} (check registry-username and registry-password)`, {
      cause: err,
      setting: 'registry-username',
      details: { status: e.status },
    });
  }
  if (e?.status === 409) {
    return new ReplistreamError('CONFIG', `schema registry ${where} refused the schema as incompatible (${what}): ${e.message}`, { cause: err, setting: 'registry', details: { status: e.status } });
  }
  const network = /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|ECONNRESET|EHOSTUNREACH|ENETUNREACH|socket hang up|fetch failed|timed? ?out/i;
  const said = `${e?.message ?? ''} ${e?.code ?? ''} ${e?.cause?.code ?? ''}`;
  if (e?.status === undefined || network.test(said)) {
    return new ReplistreamError('CONNECTION', `schema registry ${where} unreachable (${what}): ${networkReason(said, e?.message ?? String(err))}; check the registry setting`, {
      cause: err,
      retriable: true,
      setting: 'registry',
    });
  }
  return new ReplistreamError('INTERNAL', `schema registry ${where} failed (${what}): HTTP ${e.status} ${e.message}`, {
    cause: err,
    details: { status: e.status },
    retriable: e.status >= 500,
    setting: 'registry',
  });
}

export class EventRegistry {
  readonly url: string;
  private readonly retries: number;
  private readonly logger?: Logger;
  private readonly authHeader?: string;
  private readonly auth?: { username: string; password: string };
  private readonly schemaText = eventBatchSchemaText();
  /** subject → id promise (each subject registered once per process). */
  private readonly registered = new Map<string, Promise<number>>();
  /** Ids known to hold exactly this build's schema. */
  private readonly ownIds = new Set<number>();
  /** Other ids: a resolver (older/newer compatible writer) or the reason it cannot be read. */
  private readonly foreign = new Map<number, Promise<avsc.Resolver>>();

  constructor(config: RegistryConfig) {
    if (!config.url || !/^https?:\/\//.test(config.url)) {
      throw new ReplistreamError('CONFIG', `registry: ${JSON.stringify(config.url ?? '')} is not an http(s) URL`, { setting: 'registry' });
    }
    this.url = config.url.replace(/\/+$/, '');
    this.logger = config.logger;
    // explicit credentials, else the registry-username / registry-password settings
    const username = config.username ?? connections().registry.username;
    const password = config.username ? config.password : connections().registry.password;
    if (username) {
      this.auth = { username, password: password ?? '' };
      this.authHeader = `Basic ${Buffer.from(`${this.auth.username}:${this.auth.password}`).toString('base64')}`;
    }
    this.retries = config.retries ?? 5;
  }

  /** The EventBatch schema text this build registers and writes with. */
  get schema(): string {
    return this.schemaText;
  }

  /**
   * Register this build's EventBatch schema under `subject` (idempotent, cached per process) and
   * return its id. A registry refusing it as incompatible with the subject's earlier versions is a
   * CONFIG error (evolution rule broken, see schemas/README.md).
   */
  register(subject: string): Promise<number> {
    let p = this.registered.get(subject);
    if (!p) {
      p = this.doRegister(subject).then((id) => {
        this.ownIds.add(id);
        return id;
      });
      p.catch(() => this.registered.delete(subject));
      this.registered.set(subject, p);
    }
    return p;
  }

  /** Register under the topic's value subject. */
  registerForTopic(topic: string): Promise<number> {
    return this.register(subjectFor(topic));
  }

  private library: Promise<LibraryClient> | null = null;

  private client(): Promise<LibraryClient> {
    if (!this.library) {
      this.library = import('@kafkajs/confluent-schema-registry').then((mod) => {
        const { SchemaRegistry, SchemaType } = ((mod as { default?: unknown }).default ?? mod) as typeof import('@kafkajs/confluent-schema-registry');
        const auth = this.auth ? { username: this.auth.username, password: this.auth.password } : undefined;
        return { registry: new SchemaRegistry({ host: this.url, auth, clientId: 'replistream', retry: { retries: this.retries } }), avro: SchemaType.AVRO };
      });
      this.library.catch(() => (this.library = null));
    }
    return this.library;
  }

  private async doRegister(subject: string): Promise<number> {
    const { registry, avro } = await this.client();
    try {
      const { id } = await registry.register({ type: avro, schema: this.schemaText }, { subject });
      return id;
    } catch (err) {
      const name = (err as Error)?.name;
      if (name === 'ConfluentSchemaRegistryCompatibilityError' || /Compatibility does not match/.test((err as Error)?.message ?? '')) {
        this.logger?.warn({ subject, err: (err as Error).message }, 'schema registry subject has a compatibility level other than BACKWARD; registering anyway');
        return this.registerDirect(subject);
      }
      throw registryError(this.url, `registering subject ${subject}`, err);
    }
  }

  /** `request`, retrying network failures and 5xx answers with backoff. */
  private async request(method: string, path: string, body?: unknown): Promise<unknown> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.requestOnce(method, path, body);
      } catch (err) {
        if (!(err instanceof ReplistreamError) || !err.retriable || attempt >= this.retries) throw err;
        await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** attempt, 5_000)));
      }
    }
  }

  private async requestOnce(method: string, path: string, body?: unknown): Promise<unknown> {
    const headers: Record<string, string> = { Accept: 'application/vnd.schemaregistry.v1+json, application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/vnd.schemaregistry.v1+json';
    if (this.authHeader) headers.Authorization = this.authHeader;
    let res: HttpAnswer;
    try {
      res = await httpRequest(`${this.url}${path}`, method, headers, body === undefined ? undefined : JSON.stringify(body), REQUEST_TIMEOUT_MS);
    } catch (err) {
      throw registryError(this.url, `${method} ${path}`, err);
    }
    const text = res.text;
    if (res.status < 200 || res.status >= 300) {
      let message = text;
      try {
        message = (JSON.parse(text) as { message?: string }).message ?? text;
      } catch {
        /* not JSON */
      }
      throw registryError(this.url, `${method} ${path}`, Object.assign(new Error(message), { status: res.status }));
    }
    return text ? JSON.parse(text) : null;
  }

  private async registerDirect(subject: string): Promise<number> {
    const res = (await this.request('POST', `/subjects/${encodeURIComponent(subject)}/versions`, { schema: this.schemaText })) as { id: number };
    return res.id;
  }

  /** The registered text of schema `id` (`GET /schemas/ids/{id}`). */
  async fetchSchema(id: number): Promise<string> {
    const res = (await this.request('GET', `/schemas/ids/${id}`)) as { schema: string; schemaType?: string };
    if (res.schemaType && res.schemaType !== 'AVRO') {
      throw new ReplistreamError('PROTOCOL', `schema id ${id} is a ${res.schemaType} schema, not Avro: not a replistream topic?`);
    }
    return res.schema;
  }

  /** Wire-format value: header with `schemaId` (from `register`) + EventBatch body. */
  encode(schemaId: number, body: Buffer): Buffer {
    return toWire(schemaId, body);
  }

  /** Decode a wire-format record value into its events (resolving other schema versions). */
  async decode(value: Buffer, options?: ReadOptions): Promise<ChangeEvent[]> {
    const { schemaId, body } = fromWire(value);
    if (this.ownIds.has(schemaId)) return decodeBatch(body, undefined, options);
    const resolver = await this.resolverFor(schemaId);
    return decodeBatch(body, resolver ?? undefined);
  }

  /**
   * Prepares, before the first record arrives, the reading of what each topic holds: looks up the
   * latest schema of its subject (`GET /subjects/{subject}/versions/latest`) and builds the Avro
   * types that decide how it is read. Otherwise the first batch after a start waits for a registry
   * round trip (with `fetch` then, its implementation loading too) and the type build: 0.3–0.8 s on two busy cores when
   * three appliers restart together, while each of them mostly waits for the group join anyway.
   * Best effort: a subject not registered yet, an older schema id in the records or a registry
   * error is left to `decode`, which looks the id up itself (and reports what is wrong).
   */
  async prime(topics: string[]): Promise<void> {
    await Promise.all(
      topics.map(async (topic) => {
        const subject = subjectFor(topic);
        try {
          const latest = (await this.requestOnce('GET', `/subjects/${encodeURIComponent(subject)}/versions/latest`)) as { id?: unknown; schema?: unknown; schemaType?: string };
          if (typeof latest?.id !== 'number' || typeof latest.schema !== 'string' || (latest.schemaType && latest.schemaType !== 'AVRO')) return;
          if (!this.ownIds.has(latest.id)) await this.resolverFor(latest.id, latest.schema);
        } catch (err) {
          this.logger?.debug({ subject, err: (err as Error).message }, 'schema registry: subject not looked up ahead (its first record will)');
        }
      }),
    );
  }

  /** null when `id` holds this build's exact schema. `knownText`: the schema's text, when at hand. */
  private async resolverFor(id: number, knownText?: string): Promise<avsc.Resolver | null> {
    let p = this.foreign.get(id);
    if (!p) {
      p = (async () => {
        const text = knownText ?? (await this.fetchSchema(id));
        let writer: object;
        try {
          writer = JSON.parse(text) as object;
        } catch (err) {
          throw new ReplistreamError('PROTOCOL', `schema id ${id} is not valid JSON`, { cause: err });
        }
        try {
          // The registry may store a rewritten text (Apicurio drops redundant namespaces, moves
          // attributes): compare parsing canonical forms, which decide the binary encoding.
          const writerType = avroTypeFor(writer);
          if (writerType.equals(eventTypes().batch)) return null as unknown as avsc.Resolver;
          return createResolver(writerType);
        } catch (err) {
          throw new ReplistreamError(
            'PROTOCOL',
            `records written with schema id ${id} cannot be read by this version (incompatible EventBatch schemas: ${(err as Error).message}); upgrade replistream`,
            { cause: err },
          );
        }
      })();
      p.catch(() => this.foreign.delete(id)); // retry a failed lookup next time
      this.foreign.set(id, p);
    }
    const r = await p;
    if (r === null) this.ownIds.add(id);
    return r;
  }
}
