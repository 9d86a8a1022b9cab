import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scratchDir } from '../../helpers/scratch-dir.js';
import { loadConfig } from '../../../services/config/load.js';
import { parseTaskText, taskSettings } from '../../../services/config/task-file.js';
import { refusal } from '../../helpers/config-refusal.js';

const TASK = `
# one task: a source, its capture, two destinations
source-id: shop
kafka: k1:9092,k2:9092
registry: http://registry:8081
source: redis://repl:src-secret@src:6379
log-level: warn
capture:
  http-port: 9464
  dbs: [0, 1]
  include: ["user:*", "cart:*"]
  snapshot-max-bytes-per-second: 50000000
destinations:
  eu:
    destination: redis://eu:6379
    httpPort: 9465
    max-ops-per-second: 20000
    db-map: { 0: 0, 1: 3 }
  us:
    destination: redis://us:6379
    group: shop-us
    write-mode: commands
    http-port: 9466
`;

function file(name: string, text: string): string {
  const dir = scratchDir('task');
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

describe('task file', () => {
  it('capture takes the shared settings and its section, nothing of the destinations', () => {
    const path = file('task.yaml', TASK);
    const c = loadConfig('capture', { config: path }, {});
    expect(c).toMatchObject({ sourceId: 'shop', kafka: 'k1:9092,k2:9092', source: 'redis://repl:src-secret@src:6379', httpPort: 9464, dbs: [0, 1], include: ['user:*', 'cart:*'], snapshotMaxBytesPerSecond: 50_000_000, logLevel: 'warn' });
    expect(c).not.toHaveProperty('destination');
    expect(c).not.toHaveProperty('maxOpsPerSecond');
  });

  it('apply takes the shared settings and its named destination; the group defaults to <source-id>.<name>', () => {
    const path = file('task.yml', TASK);
    const eu = loadConfig('apply', { config: path, 'destination-name': 'eu' }, {});
    expect(eu).toMatchObject({ sourceId: 'shop', destination: 'redis://eu:6379', group: 'shop.eu', httpPort: 9465, maxOpsPerSecond: 20_000, writeMode: 'restore' });
    expect(eu.dbMap).toEqual(new Map([[0, 0], [1, 3]]));
    expect(eu).not.toHaveProperty('source'); // not an apply setting
    const us = loadConfig('apply', { config: path }, { REPLISTREAM_DESTINATION_NAME: 'us' });
    expect(us).toMatchObject({ destination: 'redis://us:6379', group: 'shop-us', writeMode: 'commands', httpPort: 9466 });
    expect(us.maxOpsPerSecond).toBeUndefined();
    // flags and environment still win over the file
    expect(loadConfig('apply', { config: path, 'destination-name': 'eu', 'http-port': '7000' }, { REPLISTREAM_GROUP: 'g-env' })).toMatchObject({ httpPort: 7000, group: 'g-env' });
  });

  it('precheck and verify read the source and the named destination', () => {
    const path = file('task.yaml', TASK);
    expect(loadConfig('precheck', { config: path, 'destination-name': 'us' }, {})).toMatchObject({ source: 'redis://repl:src-secret@src:6379', destination: 'redis://us:6379', writeMode: 'commands' });
    expect(loadConfig('verify', { config: path, 'destination-name': 'eu' }, {})).toMatchObject({ dbs: [0, 1], destination: 'redis://eu:6379' });
  });

  it('which destination: required among several, named when missing', () => {
    const path = file('task.yaml', TASK);
    expect(refusal(() => loadConfig('apply', { config: path }, {})).message).toBe(`destination-name: ${path} describes 2 destinations (eu, us): choose one with --destination-name`);
    expect(refusal(() => loadConfig('apply', { config: path, 'destination-name': 'asia' }, {})).message).toBe(`destination-name: no destination "asia" in ${path} (it has eu, us)`);
    expect(refusal(() => loadConfig('apply', { 'destination-name': 'eu' }, {})).setting).toBe('destination-name');
    // one destination: no need to name it
    const one = file('one.json', JSON.stringify({ sourceId: 's', kafka: 'k:1', registry: 'http://r:1', destinations: { only: { destination: 'redis://d:1' } } }));
    expect(loadConfig('apply', { config: one }, {})).toMatchObject({ destination: 'redis://d:1', group: 's.only' });
  });

  it('an unknown key anywhere is an error naming the key, its place and the file, whichever command reads it', () => {
    const at = (text: string, command: 'capture' | 'apply' = 'capture', name?: string) => refusal(() => loadConfig(command, { config: file('t.yaml', text), ...(name ? { 'destination-name': name } : {}) }, {}));
    let e = at(`${TASK}\npartitons: 3\n`);
    expect(e.message).toMatch(/^partitons: unknown setting partitons in .*t\.yaml: not a setting of capture, apply, precheck, verify$/);
    expect(e.setting).toBe('partitons');
    // a destination's typo stops capture too: the file is one task
    e = at(TASK.replace('    group: shop-us', '    gruop: shop-us'));
    expect(e.message).toMatch(/^gruop: unknown setting destinations\.us\.gruop in .*t\.yaml: a destination's section takes settings of 'replistream apply'$/);
    // a setting in the wrong section
    e = at(TASK.replace('  http-port: 9464', '  destination: redis://x:1'), 'apply', 'eu');
    expect(e.message).toMatch(/^destination: unknown setting capture\.destination in .*: the capture section takes settings of 'replistream capture'$/);
    e = at(TASK.replace('    group: shop-us', '    source: redis://s:1'));
    expect(e.message).toMatch(/unknown setting destinations\.us\.source/);
    e = at(`${TASK}\ndestination-name: eu\n`);
    expect(e.message).toMatch(/a command-line setting/);
    e = at(TASK.replace('    http-port: 9466', '    http-port: 1\n    httpPort: 2'));
    expect(e.message).toMatch(/^http-port: given twice in destinations\.us of .* \(as http-port and httpPort\)$/);
    expect(at('destinations: [a, b]\n').message).toMatch(/destinations must map each destination's name to its settings/);
    expect(at('destinations:\n  "a b": {}\n').message).toMatch(/destination name "a b" may use letters/);
  });

  it('a bad value names where in the file it is', () => {
    const path = file('task.yaml', TASK.replace('max-ops-per-second: 20000', 'max-ops-per-second: lots'));
    const e = refusal(() => loadConfig('apply', { config: path, 'destination-name': 'eu' }, {}));
    expect(e.message).toBe(`max-ops-per-second: invalid value "lots" from ${path}: destinations.eu.max-ops-per-second: must be a whole number`);
    // the source's password stays hidden in a bad URL's message
    const bad = file('task.yaml', TASK.replace('redis://repl:src-secret@src:6379', 'redis://repl:src-secret@:6379'));
    const s = refusal(() => loadConfig('capture', { config: bad }, {}));
    expect(s.message).toMatch(/^source: invalid value redis:\/\/\*\*\*@:6379 from .*task\.yaml: source:/);
    expect(s.message).not.toContain('src-secret');
  });

  it('YAML syntax errors say where, without quoting the text (it may hold a password)', () => {
    expect(() => parseTaskText('source: redis://u:yaml-secret@h:1\nsource: again\n', 'x.yaml')).toThrow(/^config: x\.yaml is not valid YAML at line 2, column 1: Map keys must be unique$/);
    try {
      parseTaskText('capture:\n  source: [redis://u:yaml-secret@h:1\n', 'x.yml');
      expect.fail('should throw');
    } catch (e) {
      expect((e as Error).message).toMatch(/^config: x\.yml is not valid YAML at line \d+, column \d+/);
      expect((e as Error).message).not.toContain('yaml-secret');
    }
    expect(() => taskSettings(parseTaskText('- a\n- b\n', 'x.yaml'), 'x.yaml', 'capture')).toThrow(/x\.yaml must hold a YAML mapping of settings/);
  });

  it('status, pause, resume and limits find every service of the task by its http-port', () => {
    const path = file('task.yaml', TASK);
    const urls = ['http://127.0.0.1:9464', 'http://127.0.0.1:9465', 'http://127.0.0.1:9466'];
    expect(loadConfig('status', { config: path }, {}).http).toEqual(urls);
    expect(loadConfig('limits', { config: path, 'max-ops-per-second': '10' }, {})).toMatchObject({ http: urls, maxOpsPerSecond: 10 });
    // the flag wins; a service bound to every address is reached on loopback; one without a port is left out
    expect(loadConfig('pause', { config: path, http: ['http://h:1'] }, {}).http).toEqual(['http://h:1']);
    const exposed = file('task.yaml', 'http-host: 0.0.0.0\ncapture: { http-port: 9000 }\ndestinations:\n  a: { destination: "redis://d:1" }\n  b: { destination: "redis://d:2", http-port: 9001, http-host: 10.0.0.7 }\n');
    expect(loadConfig('resume', { config: exposed }, {}).http).toEqual(['http://127.0.0.1:9000', 'http://10.0.0.7:9001']);
  });

  it('a plain settings file (no sections) works as before, for every command', () => {
    const path = file('plain.json', JSON.stringify({ sourceId: 's', kafka: 'k:1', registry: 'http://r:1', source: 'redis://s:1', destination: 'redis://d:1', group: 'g' }));
    expect(loadConfig('capture', { config: path }, {})).toMatchObject({ source: 'redis://s:1' });
    expect(loadConfig('apply', { config: path }, {})).toMatchObject({ destination: 'redis://d:1', group: 'g' });
    const status = file('status.json', JSON.stringify({ http: ['http://127.0.0.1:1'], json: true }));
    expect(loadConfig('status', { config: status }, {})).toMatchObject({ http: ['http://127.0.0.1:1'], json: true });
  });
});
