/**
 * Every setting of replistream, declared once. From this list come: the CLI flags of each command,
 * the `REPLISTREAM_<NAME>` environment variables, the keys of a `--config` file (JSON, camelCase
 * or the flag's own name), validation with errors that name the setting, and the README's table
 * (`npm run docs:config`).
 */
import { z } from 'zod';
import { redisUrlProblem } from '../common/redis-url.js';
import { isSentinelUrl, sentinelUrlProblem } from '../common/sentinel-url.js';

export type CommandName = 'capture' | 'apply' | 'precheck' | 'status' | 'pause' | 'resume' | 'limits' | 'verify' | 'rdb-inspect';

export interface OptionSpec {
  /** Flag name without dashes, e.g. `source-id`; the env form is REPLISTREAM_SOURCE_ID. */
  name: string;
  description: string;
  commands: CommandName[] | 'all';
  schema: z.ZodType;
  /** Shown in the README; `undefined` when the setting is required or has no default. */
  default?: unknown;
  /** Never logged nor printed (URLs with passwords are redacted instead). */
  secret?: boolean;
  /** A boolean flag that takes no value (`--no-heartbeat`). */
  boolean?: boolean;
  /** Repeatable flag (`--include a --include b`); the env form is comma-separated. */
  repeatable?: boolean;
}

const redisUrl = z.string().superRefine((s, ctx) => {
  const problem = redisUrlProblem(s);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});
/** The source may also be a Sentinel-managed master set (common/sentinel.ts). */
const sourceUrl = z.string().superRefine((s, ctx) => {
  const problem = isSentinelUrl(s) ? sentinelUrlProblem(s) : redisUrlProblem(s);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});
/** Whole numbers only: no '', '1e3', '0x10' or ' 5 ' silently read as numbers. */
const int = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z
    .string()
    .regex(/^-?\d+$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`));
const dbList = z
  .string()
  .regex(/^\d+(,\d+)*$/, 'must be a comma-separated list of database numbers, e.g. 0,1')
  .transform((s) => [...new Set(s.split(',').map(Number))]);
const dbMap = z
  .string()
  .regex(/^\d+:\d+(,\d+:\d+)*$/, 'must look like 0:0,1:3 (source db:destination db)')
  .superRefine((s, ctx) => {
    const seen = new Map<string, string>();
    for (const pair of s.split(',')) {
      const src = String(Number(pair.split(':')[0]));
      const before = seen.get(src);
      if (before !== undefined) ctx.addIssue({ code: 'custom', message: `source db ${src} is mapped twice (${before} and ${pair}); each source db goes to one destination db` });
      seen.set(src, pair);
    }
  })
  .transform((s) => new Map(s.split(',').map((p) => p.split(':').map(Number) as [number, number])));
const httpUrl = z.string().refine((s) => {
  try {
    return /^https?:$/.test(new URL(s).protocol);
  } catch {
    return false;
  }
}, 'must be an http:// or https:// URL, e.g. http://127.0.0.1:8081');
const startFrom = z
  .string()
  .refine(
    (s) => /^(committed|earliest|latest|latest-snapshot|offset:\d+@\d+|time:.+)$/.test(s) && (!s.startsWith('time:') || !Number.isNaN(Date.parse(s.slice(5)))),
    'must be committed, earliest, latest-snapshot, offset:PARTITION@OFFSET or time:ISO8601',
  );

export const OPTIONS: OptionSpec[] = [
  // shared
  { name: 'config', description: 'Task file (JSON, or YAML when named .yaml/.yml): settings shared at the top (keys as flag names or camelCase), a capture section, and named destinations; each command takes what concerns it (README: Run a task).', commands: 'all', schema: z.string() },
  { name: 'destination-name', description: 'Which destination of the --config task file this command is for (needed when the file names several).', commands: ['apply', 'precheck', 'verify'], schema: z.string().regex(/^[A-Za-z0-9._-]+$/, 'may use letters, digits, . _ -') },
  { name: 'kafka', description: 'Kafka bootstrap brokers, comma-separated host:port.', commands: ['capture', 'apply'], schema: z.string().regex(/^[^,\s]+:\d+(,[^,\s]+:\d+)*$/, 'must be host:port[,host:port…]') },
  { name: 'registry', description: 'Schema registry URL (Confluent API), e.g. http://host:8081 or Apicurio’s …/apis/ccompat/v7.', commands: ['capture', 'apply'], schema: httpUrl },
  { name: 'http-port', description: 'Port for the status page (/), /healthz, /readyz, /status, /metrics and POST /pause, /resume, /limits; 0 disables.', commands: ['capture', 'apply'], schema: int(0, 65535), default: 0 },
  { name: 'http-host', description: 'Address the HTTP port binds to: loopback by default, since pause/resume need no credentials; 0.0.0.0 exposes it (in a container, or behind a trusted network).', commands: ['capture', 'apply'], schema: z.string().min(1), default: '127.0.0.1' },
  { name: 'kafka-timeout-ms', description: 'How long a service waits at start for the Kafka brokers (and the schema registry) before it exits naming them.', commands: ['capture', 'apply'], schema: int(1000, 3_600_000), default: 30_000 },
  { name: 'log-level', description: 'trace, debug, info, warn, error or fatal.', commands: 'all', schema: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']), default: 'info' },
  { name: 'topic-prefix', description: 'Topics are named <prefix>.<source-id>.db<N>.', commands: ['capture', 'apply'], schema: z.string().regex(/^[A-Za-z0-9._-]+$/, 'may use letters, digits, . _ -'), default: 'replistream' },
  { name: 'source-id', description: 'Name of the source in topic names and positions; one per source.', commands: ['capture', 'apply'], schema: z.string().regex(/^[A-Za-z0-9_-]+$/, 'may use letters, digits, _ -') },
  // capture
  { name: 'source', description: 'Source Redis URL (redis://[user:password@]host:port, rediss:// for TLS); or a Sentinel-managed master set: redis+sentinel://[user:password@]sentinel:26379[,sentinel:port…]/master-name, rediss+sentinel:// for TLS to the Sentinels and the servers (capture follows it across failovers). The credentials are the servers\'; the Sentinels\' own are source-sentinel-password and source-sentinel-username.', commands: ['capture', 'precheck', 'verify'], schema: sourceUrl, secret: true },
  { name: 'source-sentinel-password', description: 'Password of the Sentinels (their requirepass) of a redis+sentinel:// source, when they require one; never logged.', commands: ['capture', 'precheck', 'verify'], schema: z.string().min(1), secret: true },
  { name: 'source-sentinel-username', description: 'ACL user of the Sentinels of a redis+sentinel:// source (with source-sentinel-password; the default user when unset).', commands: ['capture', 'precheck', 'verify'], schema: z.string().min(1) },
  {
    name: 'source-timeout-ms',
    description:
      "Silence from the source after which capture drops its replication link and makes it again (PSYNC): catches a half-open link (no FIN, no RST). Keep it above the source's repl-ping-replica-period (10 s by default).",
    commands: ['capture'],
    schema: int(1000, 3_600_000),
    default: 60_000,
  },
  {
    name: 'source-down-grace-ms',
    description: 'How long the source replication link may be down before /readyz fails; capture keeps retrying meanwhile, and /status shows the link disconnected (since when, attempts) from the first second.',
    commands: ['capture'],
    schema: int(0, 86_400_000),
    default: 30_000,
  },
  {
    name: 'source-down-timeout-ms',
    description: 'How long the source may stay unreachable before capture gives up and exits 1 with an error naming the source (0: retry forever).',
    commands: ['capture'],
    schema: int(0, 604_800_000),
    default: 600_000,
  },
  { name: 'dbs', description: 'Source databases to synchronize (all when unset).', commands: ['capture', 'verify'], schema: dbList },
  { name: 'include', description: 'Only keys matching this glob (repeatable).', commands: ['capture'], schema: z.array(z.string()), repeatable: true, default: [] },
  { name: 'exclude', description: 'Skip keys matching this glob (repeatable).', commands: ['capture'], schema: z.array(z.string()), repeatable: true, default: [] },
  { name: 'partitions', description: 'Partitions per database topic (≥ the number of appliers of a group).', commands: ['capture'], schema: int(1, 10000), default: 4 },
  { name: 'replication-factor', description: 'Replication factor of created topics.', commands: ['capture'], schema: int(1, 10), default: 1 },
  { name: 'retention-ms', description: 'Retention of created topics (-1 keeps everything, for replay).', commands: ['capture'], schema: int(-1), default: -1 },
  { name: 'heartbeat-key', description: 'Key written on the source every second for end-to-end lag.', commands: ['capture', 'verify'], schema: z.string().min(1), default: 'REPLISTREAM_TIMESTAMP_HEARTBEAT' },
  { name: 'no-heartbeat', description: 'Do not write the heartbeat key.', commands: ['capture'], schema: z.boolean(), boolean: true, default: false },
  { name: 'warm-up-units', description: 'Made-up commands run through the command path at start, and by the applier again after each snapshot it writes, nothing sent (about half a second of CPU for the default, in slices, none while a snapshot is being captured or applied): the first real commands after a start or a full sync are then handled as fast as later ones. 0 turns it off.', commands: ['capture', 'apply'], schema: int(0, 1_000_000), default: 20_000 },
  { name: 'max-record-bytes', description: 'Upper bound of one Kafka record; bigger keys and commands are split.', commands: ['capture'], schema: int(10_000, 100_000_000), default: 900_000 },
  { name: 'snapshot-format', description: 'What snapshot keys carry: restore (the RESTORE payload only; an applier reads the value out of it when it must write typed commands), both (payload and typed value, for consumers of the topic that read values) or typed (value only).', commands: ['capture'], schema: z.enum(['both', 'restore', 'typed']), default: 'restore' },
  {
    name: 'snapshot-max-bytes-per-second',
    description:
      'Full-sync read limit: RDB bytes per second capture reads from the source (in total over a cluster source\'s masters); the source\'s transfer slows with it (TCP backpressure). Unlimited when unset or 0; changeable at run time (replistream limits). A diskless source keeps its fork for the whole transfer.',
    commands: ['capture', 'limits'],
    schema: int(0),
  },
  { name: 'compression', description: 'Kafka record compression: gzip, snappy or none.', commands: ['capture'], schema: z.enum(['gzip', 'snappy', 'none']), default: 'snappy' },
  {
    name: 'linger-ms',
    description: 'How long capture lets a produce request that is not full wait for more events (Kafka\'s linger.ms): fewer, larger requests under steady traffic, at most this much more lag. Under heavy traffic (a request of 16 KB of records or more) the next request waits 4 times as long (a snapshot\'s never do): each request costs capture, the broker and the appliers a fixed amount of work. 0 sends at once.',
    commands: ['capture'],
    schema: int(0, 1000),
    default: 5,
  },
  // apply
  { name: 'destination', description: 'Destination Redis URL; a cluster is detected from the server.', commands: ['apply', 'precheck', 'verify'], schema: redisUrl, secret: true },
  {
    name: 'destination-timeout-ms',
    description:
      'How long an applier waits for the destination to answer a write before it drops the connection and retries from the positions stored there (catches a half-open connection; a write that was only slow is not applied twice).',
    commands: ['apply'],
    schema: int(1000, 3_600_000),
    default: 30_000,
  },
  { name: 'group', description: 'Kafka consumer group: one per destination; N appliers of one group share the work.', commands: ['apply'], schema: z.string().regex(/^[A-Za-z0-9._-]+$/, 'may use letters, digits, . _ -') },
  { name: 'db-map', description: 'Source db → destination db, e.g. 0:0,1:3 (identity when unset).', commands: ['apply', 'precheck', 'verify'], schema: dbMap },
  { name: 'conflict-mode', description: 'intercept: refuse to start unless the mapped destination dbs are empty; ignore: overwrite same keys.', commands: ['apply', 'precheck'], schema: z.enum(['intercept', 'ignore']), default: 'intercept' },
  { name: 'write-mode', description: 'Full-sync writes: restore (RESTORE payloads) or commands (typed writes, any version).', commands: ['apply', 'precheck'], schema: z.enum(['restore', 'commands']), default: 'restore' },
  { name: 'restore-fallback', description: 'In restore mode, fall back to typed commands when the destination cannot read the payload version.', commands: ['apply'], schema: z.boolean(), boolean: true, default: false },
  { name: 'from', description: 'Where a group starts: committed, earliest, latest-snapshot, offset:P@O or time:ISO8601.', commands: ['apply'], schema: startFrom, default: 'committed' },
  { name: 'refuse-flush', description: 'Stop instead of applying FLUSHDB/FLUSHALL from the source.', commands: ['apply'], schema: z.boolean(), boolean: true, default: false },
  { name: 'stop-when-caught-up', description: 'A migration: once the full sync is written and the stream has caught up (heartbeat lag under 2 s, or no record left), the applier reports completed and exits 0.', commands: ['apply'], schema: z.boolean(), boolean: true, default: false },
  {
    name: 'assignment',
    description:
      "How the group's members share partitions: db (all partitions of a db in one member: multi-key commands settle in memory; members beyond the number of dbs are standbys) or partition (round-robin: members split each db; barriers across members go through the destination, for traffic with few multi-key commands).",
    commands: ['apply'],
    schema: z.enum(['db', 'partition']),
    default: 'db',
  },
  { name: 'max-ops-per-second', description: 'Writes per second an applier sends to the destination (a full-sync key or a command is one; full sync and incremental). Unlimited when unset or 0; changeable at run time (replistream limits).', commands: ['apply', 'limits'], schema: int(0) },
  { name: 'max-bytes-per-second', description: 'Bytes of keys, values and arguments per second an applier sends to the destination. Unlimited when unset or 0; changeable at run time (replistream limits).', commands: ['apply', 'limits'], schema: int(0) },
  { name: 'on-command-error', description: 'A command the destination rejects: fail (stop, naming its position) or skip (count it).', commands: ['apply'], schema: z.enum(['fail', 'skip']), default: 'fail' },
  // secured connections (certificate and key settings are paths to PEM files)
  ...tlsOptions('source', 'the source', ['capture', 'precheck', 'verify']),
  ...tlsOptions('destination', 'the destination', ['apply', 'precheck', 'verify']),
  { name: 'kafka-tls', description: 'Connect to the Kafka brokers over TLS (implied by kafka-tls-ca, kafka-tls-cert or kafka-tls-insecure).', commands: ['capture', 'apply'], schema: z.boolean(), boolean: true, default: false },
  ...tlsOptions('kafka', 'the Kafka brokers', ['capture', 'apply']),
  { name: 'kafka-sasl-mechanism', description: 'Kafka SASL authentication: plain, scram-sha-256 or scram-sha-512 (with kafka-sasl-username and kafka-sasl-password).', commands: ['capture', 'apply'], schema: z.enum(['plain', 'scram-sha-256', 'scram-sha-512']) },
  { name: 'kafka-sasl-username', description: 'Kafka SASL user name.', commands: ['capture', 'apply'], schema: z.string().min(1) },
  { name: 'kafka-sasl-password', description: 'Kafka SASL password.', commands: ['capture', 'apply'], schema: z.string(), secret: true },
  { name: 'registry-username', description: 'Schema registry user name (HTTP basic authentication).', commands: ['capture', 'apply'], schema: z.string().min(1) },
  { name: 'registry-password', description: 'Schema registry password (HTTP basic authentication).', commands: ['capture', 'apply'], schema: z.string(), secret: true },
  // status / verify
  { name: 'http', description: 'Status endpoint of a running capture or applier, e.g. http://127.0.0.1:9464 (repeatable: a capture and its appliers show as one task).', commands: ['status', 'pause', 'resume', 'limits'], schema: z.preprocess((v) => (typeof v === 'string' ? [v] : v), z.array(httpUrl).min(1)), repeatable: true },
  { name: 'json', description: 'Print JSON instead of a table.', commands: ['status', 'verify', 'precheck'], schema: z.boolean(), boolean: true, default: false },
  { name: 'sample', description: 'Compare only N random keys per database.', commands: ['verify'], schema: int(1) },
  { name: 'format', description: 'Output format of rdb inspect.', commands: ['rdb-inspect'], schema: z.enum(['jsonl']), default: 'jsonl' },
];

/** The TLS settings of one kind of server: CA, client certificate and key, server name, no verification. */
function tlsOptions(prefix: string, who: string, commands: CommandName[]): OptionSpec[] {
  return [
    { name: `${prefix}-tls-ca`, description: `CA certificate file (PEM) to verify the TLS certificate of ${who} with, instead of the system's CAs.`, commands, schema: z.string().min(1) },
    { name: `${prefix}-tls-cert`, description: `Client certificate file (PEM) for ${who}, when a client certificate is required (with ${prefix}-tls-key).`, commands, schema: z.string().min(1) },
    { name: `${prefix}-tls-key`, description: `Private key file (PEM) of ${prefix}-tls-cert.`, commands, schema: z.string().min(1) },
    { name: `${prefix}-tls-servername`, description: `Name the certificate of ${who} must carry (SNI), when it is not the host name connected to.`, commands, schema: z.string().min(1) },
    { name: `${prefix}-tls-insecure`, description: `Do not verify the TLS certificate of ${who} (logs a warning; for tests only).`, commands, schema: z.boolean(), boolean: true, default: false },
  ];
}

export function envName(option: string): string {
  return `REPLISTREAM_${option.replace(/-/g, '_').toUpperCase()}`;
}

export function camel(option: string): string {
  return option.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

export function optionsFor(command: CommandName): OptionSpec[] {
  return OPTIONS.filter((o) => o.commands === 'all' || o.commands.includes(command));
}
