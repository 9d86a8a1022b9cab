import { pino, type Logger, type LoggerOptions } from 'pino';

/**
 * JSON logs on stderr (stdout stays free for command output such as `rdb inspect`).
 * Passwords never reach a log line: known secret fields are redacted, and URLs are passed through
 * `redactUrl` before they are logged.
 */
export const REDACTED_PATHS = [
  'password',
  '*.password',
  'source.password',
  'destination.password',
  'sasl.password',
  '*.sasl.password',
  'registryPassword',
  '*.registryPassword',
  'kafkaSaslPassword',
  '*.kafkaSaslPassword',
];

export function createLogger(level = process.env.REPLISTREAM_LOG_LEVEL ?? 'info', name = 'replistream'): Logger {
  const options: LoggerOptions = {
    name,
    level,
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    base: { pid: process.pid },
  };
  return pino(options, pino.destination({ fd: 2, sync: false }));
}

/** `redis://user:secret@host:1` → `redis://user:***@host:1`; unparsable input is returned masked entirely. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/\/\/[^@/]*@/, '//***@');
  }
}

export type { Logger };
