/**
 * One error type for everything replistream reports to a user. It says whether retrying can help
 * (`retriable`), which setting to change when the fix is configuration (`setting`), and keeps the
 * underlying error as `cause`, so a log line or the CLI can explain the problem without a stack dive.
 */
export type ErrorCode =
  | 'CONFIG' // bad configuration or usage: exit code 2
  | 'PROTOCOL' // a peer sent bytes we cannot understand
  | 'RDB_FORMAT' // corrupt, truncated or unsupported RDB / DUMP payload
  | 'CONNECTION' // unreachable server, dropped link
  | 'AUTH' // credentials refused
  | 'DESTINATION' // the destination refused a write
  | 'PRECHECK' // precheck failed (e.g. destination not empty in intercept mode)
  | 'INTERNAL';

export interface ReplistreamErrorOptions {
  retriable?: boolean;
  cause?: unknown;
  /** The configuration setting (flag name without dashes) whose value should change. */
  setting?: string;
  /** Extra machine-readable facts (offsets, positions, key names) for logs. */
  details?: Record<string, unknown>;
}

export class ReplistreamError extends Error {
  readonly code: ErrorCode;
  readonly retriable: boolean;
  readonly setting?: string;
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: ReplistreamErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ReplistreamError';
    this.code = code;
    this.retriable = options.retriable ?? false;
    this.setting = options.setting;
    this.details = options.details;
  }

  /** Process exit code (docs/guarantees.md, command line contract): 2 for usage/configuration, 1 for everything else. */
  get exitCode(): number {
    return this.code === 'CONFIG' ? 2 : 1;
  }
}

export function configError(setting: string, message: string, cause?: unknown): ReplistreamError {
  return new ReplistreamError('CONFIG', `${setting}: ${message}`, { setting, cause });
}

/** Error message with its chain of causes, one line, for the CLI. */
export function describeError(err: unknown): string {
  const parts: string[] = [];
  let cur: unknown = err;
  for (let depth = 0; cur && depth < 5; depth++) {
    if (cur instanceof Error) {
      parts.push(cur.message);
      cur = (cur as { cause?: unknown }).cause;
    } else {
      parts.push(String(cur));
      break;
    }
  }
  return parts.join(': caused by: ');
}
