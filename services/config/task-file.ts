/**
 * The `--config` file: one file describing a whole sync task, read by every command, each taking
 * what concerns it. JSON, or YAML when the name ends in `.yaml` / `.yml`.
 *
 *   source-id: shop                      # settings at the top: shared (each command takes its own)
 *   kafka: kafka-1:9092
 *   registry: http://registry:8081
 *   source: redis://repl:secret@src:6379
 *   capture:                             # `replistream capture` only
 *     http-port: 9464
 *     snapshot-max-bytes-per-second: 50000000
 *   destinations:                        # `replistream apply --destination-name eu`
 *     eu:
 *       destination: redis://eu:6379
 *       http-port: 9465
 *       max-ops-per-second: 20000
 *     us: { destination: "redis://us:6379", group: shop-us }
 *
 * Keys are the settings' flag names or their camelCase. A file without `capture` or `destinations`
 * is a plain settings file, as before. Every key of the file is checked, whichever command reads
 * it: a key no command knows, or one that does not belong in its section, is an error naming the
 * key, where it is and the file. Values are checked by the settings' own schemas (load.ts) when a
 * command takes them. A destination's `group` defaults to `<source-id>.<name>`.
 *
 * Pure: the text in, settings out; reading the file is load.ts's.
 */
import { parseDocument } from 'yaml';
import { configError } from '../common/errors.js';
import { camel, optionsFor, type CommandName, type OptionSpec } from './options.js';

/** A value taken from the file, and where it was (for messages: `task.yaml: destinations.eu.group`). */
export interface FileValue {
  raw: unknown;
  origin: string;
}

/** Commands whose settings may stand at the top of a task file. */
const TASK_COMMANDS: CommandName[] = ['capture', 'apply', 'precheck', 'verify'];
/** Settings that say which file or which part of it to read: never inside the file. */
const NOT_IN_FILE = new Set(['config', 'destination-name']);
const DESTINATION_NAME = /^[A-Za-z0-9._-]+$/;

/** Parses the file's text: JSON, or YAML for a `.yaml`/`.yml` name. Errors say where, never quote the text (it may hold passwords). */
export function parseTaskText(text: string, path: string): unknown {
  if (/\.ya?ml$/i.test(path)) {
    const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
    const e = doc.errors[0];
    if (e) {
      const at = e.linePos?.[0];
      const what = e.message.split(/ at line \d+/)[0];
      throw configError('config', `${path} is not valid YAML${at ? ` at line ${at.line}, column ${at.col}` : ''}: ${what}`);
    }
    return doc.toJS({ maxAliasCount: 100 });
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    // V8's message may quote the text around the error, and a config file holds passwords: only where it is
    const at = /position (\d+)/.exec((err as Error).message);
    const where = at ? ` at line ${text.slice(0, Number(at[1])).split('\n').length}, column ${Number(at[1]) - text.lastIndexOf('\n', Number(at[1]) - 1)}` : '';
    throw configError('config', `${path} is not valid JSON${where}`);
  }
}

const isMapping = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Option by flag name or camelCase, among `options`. */
function lookup(options: OptionSpec[]): Map<string, OptionSpec> {
  const m = new Map<string, OptionSpec>();
  for (const o of options) if (!NOT_IN_FILE.has(o.name)) m.set(o.name, o).set(camel(o.name), o);
  return m;
}

const union = (...commands: CommandName[]) => [...new Map(commands.flatMap((c) => optionsFor(c)).map((o) => [o.name, o])).values()];

/**
 * Checks every key of the file and returns the values `command` takes from it (by flag name):
 * the top, then its section over it (`capture:` for capture; the chosen destination for apply;
 * both for precheck and verify, which look at a source and a destination).
 */
export function taskSettings(doc: unknown, path: string, command: CommandName, destinationName?: string): { values: Map<string, FileValue>; destination: string | null } {
  const kind = /\.ya?ml$/i.test(path) ? 'a YAML mapping' : 'a JSON object';
  if (!isMapping(doc)) throw configError('config', `${path} must hold ${kind} of settings`);
  const topKnown = lookup(union(...TASK_COMMANDS, command));
  const captureKnown = lookup(optionsFor('capture'));
  const destinationKnown = lookup(optionsFor('apply'));

  const check = (section: Record<string, unknown>, known: Map<string, OptionSpec>, where: string, what: string) => {
    const seen = new Map<string, string>();
    for (const key of Object.keys(section)) {
      const o = known.get(key);
      if (!o) {
        const elsewhere = key === 'capture' || key === 'destinations' ? ` (a section of the top level only)` : NOT_IN_FILE.has(key) ? ' (a command-line setting: it says which file or part of it to read)' : '';
        throw configError(key, `unknown setting ${where}${key} in ${path}${elsewhere}: ${what}`);
      }
      const before = seen.get(o.name);
      if (before !== undefined) throw configError(o.name, `given twice ${where ? `in ${where.slice(0, -1)} ` : ''}of ${path} (as ${before} and ${key})`);
      seen.set(o.name, key);
    }
  };

  const { capture, destinations, ...top } = doc;
  check(top, topKnown, '', `not a setting of ${TASK_COMMANDS.join(', ')}${TASK_COMMANDS.includes(command) ? '' : ` or ${command}`}`);
  if (capture !== undefined && capture !== null && !isMapping(capture)) throw configError('capture', `in ${path}: the capture section must be a mapping of capture settings`);
  if (isMapping(capture)) check(capture, captureKnown, 'capture.', "the capture section takes settings of 'replistream capture'");
  if (destinations !== undefined && destinations !== null && !isMapping(destinations)) throw configError('destinations', `in ${path}: destinations must map each destination's name to its settings`);
  const named = isMapping(destinations) ? destinations : {};
  for (const [name, section] of Object.entries(named)) {
    if (!DESTINATION_NAME.test(name)) throw configError('destinations', `in ${path}: destination name ${JSON.stringify(name)} may use letters, digits, . _ -`);
    if (!isMapping(section)) throw configError('destinations', `in ${path}: destinations.${name} must be a mapping of apply settings`);
    check(section, destinationKnown, `destinations.${name}.`, "a destination's section takes settings of 'replistream apply'");
  }

  const mine = lookup(optionsFor(command));
  const out = new Map<string, FileValue>();
  const take = (section: Record<string, unknown>, where: string) => {
    for (const [key, value] of Object.entries(section)) {
      const o = mine.get(key);
      if (o && value !== null && value !== undefined) out.set(o.name, { raw: normalize(o, value), origin: `${path}: ${where}${key}` });
    }
  };
  take(top, '');
  if ((command === 'capture' || command === 'precheck' || command === 'verify') && isMapping(capture)) take(capture, 'capture.');

  // status, pause, resume, limits: every service of the task with an http-port, unless given
  if (['status', 'pause', 'resume', 'limits'].includes(command) && !out.has('http')) {
    const urls = taskHttpUrls(top, isMapping(capture) ? capture : {}, named);
    if (urls.length > 0) out.set('http', { raw: urls, origin: `${path}: the http-port of its capture and destinations` });
  }

  const names = Object.keys(named);
  let chosen = destinationName;
  if (command === 'apply' || command === 'precheck' || command === 'verify') {
    if (chosen === undefined && names.length > 1) {
      throw configError('destination-name', `${path} describes ${names.length} destinations (${names.join(', ')}): choose one with --destination-name`);
    }
    if (chosen === undefined && names.length === 1) chosen = names[0];
    if (chosen !== undefined) {
      const section = named[chosen];
      if (!isMapping(section)) {
        throw configError('destination-name', names.length === 0 ? `${path} has no destinations section to find ${JSON.stringify(chosen)} in` : `no destination ${JSON.stringify(chosen)} in ${path} (it has ${names.join(', ')})`);
      }
      take(section, `destinations.${chosen}.`);
    }
  } else if (destinationName !== undefined) {
    throw configError('destination-name', `'${command}' takes no destination`);
  }
  return { values: out, destination: chosen ?? null };
}

/** The status URL of each service of the task that sets an http-port (capture first, then the destinations in order). */
function taskHttpUrls(top: Record<string, unknown>, capture: Record<string, unknown>, destinations: Record<string, unknown>): string[] {
  const get = (section: Record<string, unknown>, name: string) => section[name] ?? section[camel(name)] ?? top[name] ?? top[camel(name)];
  const urls: string[] = [];
  for (const section of [capture, ...Object.values(destinations).filter(isMapping)]) {
    const port = Number(get(section, 'http-port'));
    if (!Number.isInteger(port) || port <= 0) continue;
    // a service listening on every address is reached on loopback from its own host
    let host = String(get(section, 'http-host') ?? '127.0.0.1');
    if (host === '0.0.0.0' || host === '::') host = '127.0.0.1';
    const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
    if (!urls.includes(url)) urls.push(url);
  }
  return urls;
}

/**
 * The file's natural types as the settings' text forms: numbers as text, a list of databases as
 * `0,1`, a db map written as a mapping as `0:0,1:3`; repeatable settings as lists.
 */
function normalize(o: OptionSpec, v: unknown): unknown {
  if (o.repeatable) return Array.isArray(v) ? v.map(String) : typeof v === 'string' || typeof v === 'number' ? [String(v)] : v;
  if (typeof v === 'number') return String(v);
  if (Array.isArray(v) && v.every((x) => typeof x === 'number' || typeof x === 'string')) return v.join(',');
  if (o.name === 'db-map' && isMapping(v)) return Object.entries(v).map(([a, b]) => `${a}:${String(b)}`).join(',');
  return v;
}
