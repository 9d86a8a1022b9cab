/**
 * Resolves a command's settings from, in order of precedence: flags, environment
 * (`REPLISTREAM_<NAME>`), the `--config` file (a task file, task-file.ts: the command's section
 * over the shared top), defaults. Every value is validated by the
 * option's schema; an error names the setting and where its bad value came from.
 */
import { readFileSync } from 'node:fs';
import { configError } from '../common/errors.js';
import { maskRedisUrl } from '../common/redis-url.js';
import { camel, envName, optionsFor, type CommandName } from './options.js';
import { parseTaskText, taskSettings, type FileValue } from './task-file.js';

const REQUIRED: Record<CommandName, string[]> = {
  capture: ['kafka', 'registry', 'source', 'source-id'],
  apply: ['kafka', 'registry', 'destination', 'group', 'source-id'],
  precheck: ['source', 'destination'],
  verify: ['source', 'destination'],
  status: ['http'],
  pause: ['http'],
  resume: ['http'],
  limits: ['http'],
  'rdb-inspect': [],
};

/** flags: as parsed from the command line, keyed by flag name (kebab-case), values as strings. */
export function loadConfig(
  command: CommandName,
  flags: Record<string, string | string[] | boolean | undefined>,
  env: NodeJS.ProcessEnv = process.env,
): Record<string, unknown> {
  const options = optionsFor(command);
  const configPath = (flags.config as string | undefined) ?? env[envName('config')];
  let file: Map<string, FileValue> = new Map();
  /** The destination section read (apply, precheck, verify with a task file). */
  let destinationName: string | null = null;
  if (configPath) {
    let text: string;
    try {
      text = readFileSync(configPath, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory, not a settings file' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
      throw configError('config', `cannot read ${configPath}: ${why}`);
    }
    const chosen = (flags['destination-name'] as string | undefined) ?? (env[envName('destination-name')] || undefined);
    const task = taskSettings(parseTaskText(text, configPath), configPath, command, chosen);
    file = task.values;
    destinationName = task.destination;
  } else if (flags['destination-name'] !== undefined) {
    throw configError('destination-name', 'names a destination of a task file: pass the file with --config');
  }
  const out: Record<string, unknown> = {};
  for (const o of options) {
    let raw: unknown;
    let origin: string;
    if (flags[o.name] !== undefined && !(o.repeatable && Array.isArray(flags[o.name]) && (flags[o.name] as string[]).length === 0)) {
      raw = flags[o.name];
      origin = `--${o.name}`;
    } else if (env[envName(o.name)] !== undefined && env[envName(o.name)] !== '') {
      const v = env[envName(o.name)]!;
      origin = envName(o.name);
      raw = o.boolean ? envBoolean(o.name, origin, v) : o.repeatable ? v.split(',').filter(Boolean) : v;
    } else if (file.has(o.name)) {
      ({ raw, origin } = file.get(o.name)!);
    } else if (o.name === 'group' && command === 'apply' && destinationName !== null && typeof out.sourceId === 'string') {
      // a destination of a task file: its group unless it names one
      raw = `${out.sourceId}.${destinationName}`;
      origin = `${configPath}: destinations.${destinationName} (group by default: <source-id>.${destinationName})`;
    } else if (o.default !== undefined) {
      out[camel(o.name)] = o.default;
      continue;
    } else {
      if (REQUIRED[command].includes(o.name)) {
        throw configError(o.name, `required for '${command}': pass --${o.name} or set ${envName(o.name)}`);
      }
      continue;
    }
    const parsed = o.schema.safeParse(raw);
    if (!parsed.success) {
      const why = parsed.error.issues.map((i) => i.message).join('; ');
      // any URL may carry credentials (a registry's http://user:pass@…): masked like a Redis URL's
      const isUrl = typeof raw === 'string' && /^[A-Za-z][\w+.-]*:\/\//.test(raw);
      const shown = o.secret ? (isUrl ? maskRedisUrl(raw as string) : '(value hidden)') : isUrl ? JSON.stringify(maskRedisUrl(raw as string)) : JSON.stringify(raw);
      throw configError(o.name, `invalid value ${shown} from ${origin}: ${why}`);
    }
    out[camel(o.name)] = parsed.data;
  }
  return out;
}

/**
 * A boolean from the environment, strictly: a typo such as `maybe` or `ture` is an error naming
 * the variable, never a silent false.
 */
function envBoolean(setting: string, variable: string, value: string): boolean {
  if (/^(1|true|yes|on)$/i.test(value.trim())) return true;
  if (/^(0|false|no|off)$/i.test(value.trim())) return false;
  throw configError(setting, `${variable}=${JSON.stringify(value)} is not a boolean: use true or false (or 1/0, yes/no, on/off)`);
}
