import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scratchDir } from '../../helpers/scratch-dir.js';
import { ReplistreamError } from '../../../services/common/errors.js';
import { redactUrl } from '../../../services/common/log.js';
import { loadConfig } from '../../../services/config/load.js';
import { settingsTable } from '../../../services/config/readme-table.js';

const base = { kafka: '127.0.0.1:9092', registry: 'http://r:8081', 'source-id': 's1' };

describe('configuration', () => {
  it('takes flags over environment over file over defaults', () => {
    const dir = scratchDir('cfg');
    const file = join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ partitions: 3, topicPrefix: 'fromfile', source: 'redis://f:1' }));
    const c = loadConfig('capture', { ...base, config: file, partitions: '5' }, { REPLISTREAM_TOPIC_PREFIX: 'fromenv' });
    expect(c.partitions).toBe(5);
    expect(c.topicPrefix).toBe('fromenv');
    expect(c.source).toBe('redis://f:1');
    expect(c.compression).toBe('snappy');
  });
  it('names the bad setting and where it came from; exit code 2', () => {
    try {
      loadConfig('capture', { ...base, source: 'redis://h:1' }, { REPLISTREAM_PARTITIONS: 'many' });
      expect.fail('should throw');
    } catch (e) {
      expect(e).toBeInstanceOf(ReplistreamError);
      expect((e as ReplistreamError).setting).toBe('partitions');
      expect((e as Error).message).toMatch(/partitions: invalid value "many" from REPLISTREAM_PARTITIONS/);
      expect((e as ReplistreamError).exitCode).toBe(2);
    }
  });
  it('requires what a command needs and hides secrets in errors', () => {
    expect(() => loadConfig('capture', base, {})).toThrow(/source: required for 'capture'/);
    expect(() => loadConfig('apply', { ...base, destination: 'http://u:secret@h:1', group: 'g' }, {})).toThrow(/invalid value http:\/\/\*\*\*@h:1 from --destination/);
    expect(() => loadConfig('apply', { ...base, destination: 'http://u:secret@h:1', group: 'g' }, {})).not.toThrow(/secret/);
  });
  it('parses db maps, start positions and repeatable flags', () => {
    const c = loadConfig('apply', { ...base, destination: 'redis://h:1', group: 'g', 'db-map': '0:0,1:3', from: 'offset:2@100' }, {});
    expect(c.dbMap).toEqual(new Map([[0, 0], [1, 3]]));
    expect(() => loadConfig('apply', { ...base, destination: 'redis://h:1', group: 'g', from: 'time:yesterday' }, {})).toThrow(/from/);
    const cap = loadConfig('capture', { ...base, source: 'redis://h:1' }, { REPLISTREAM_INCLUDE: 'a*,b*' });
    expect(cap.include).toEqual(['a*', 'b*']);
  });
  it('redacts passwords in URLs and lists every option in the README table', () => {
    expect(redactUrl('redis://user:pw@host:6379')).toBe('redis://user:***@host:6379');
    expect(settingsTable()).toContain('`REPLISTREAM_KAFKA`');
  });
});
