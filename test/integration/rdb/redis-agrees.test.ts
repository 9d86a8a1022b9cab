/**
 * The RDB parser checked against a real redis-server 7.0.15 (moved here from the unit tests,
 * which run no servers): our RESTORE payloads of the generated fixtures (test/fixtures/rdb) land
 * with the source's digests, and the hand-built files a 7.0 server can read (test/unit/rdb/
 * handmade.ts) load to the keys and values our parser reads from them.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromJsonSafe, typedValueToJson } from '../../../services/replication/rdb/inspect.js';
import { startRedis, type RedisServer } from '../../helpers/redis-server.js';
import { HANDMADE } from '../../unit/rdb/handmade.js';
import { connect, normalizeValue, readAllKeys } from '../../unit/rdb/live.js';
import { entries, fixtureNames, keyId, loadFixture, parseWhole } from '../../unit/rdb/util.js';

const names = fixtureNames();

describe('RESTORE of our payloads into a fresh redis-server', () => {
  const servers: RedisServer[] = [];
  const clients: Redis[] = [];
  afterAll(async () => {
    for (const c of clients) c.disconnect();
    for (const s of servers) await s.stop();
  });

  let server: RedisServer;
  let c: Redis;
  beforeAll(async () => {
    server = await startRedis();
    servers.push(server);
    c = connect(server);
    clients.push(c);
  });

  for (const name of names) {
    it(`${name}: DEBUG DIGEST-VALUE matches the source's`, async () => {
      const { rdb, expected } = loadFixture(name);
      await c.flushall();
      const parsed = entries(parseWhole(rdb).items);
      for (const e of parsed) {
        await c.select(e.db);
        if (e.expireAtMs !== null) await c.callBuffer('RESTORE', e.key, e.expireAtMs, e.payload!, 'REPLACE', 'ABSTTL');
        else await c.callBuffer('RESTORE', e.key, 0, e.payload!, 'REPLACE');
      }
      for (const k of expected.keys) {
        await c.select(k.db);
        const digest = ((await c.callBuffer('DEBUG', 'DIGEST-VALUE', fromJsonSafe(k.key as never))) as Buffer[])[0].toString();
        expect(digest, `${name} ${JSON.stringify(k.key)}`).toBe(k.digest);
      }
      await c.select(0);
    });
  }
});

describe('hand-built files that redis-server 7.0.15 can read: it agrees', () => {
  let server: RedisServer;
  let c: Redis;
  let dir: string;
  beforeAll(async () => {
    server = await startRedis({ 'sanitize-dump-payload': 'yes' });
    c = connect(server);
    dir = mkdtempSync(join(tmpdir(), 'replistream-rdb-'));
  });
  afterAll(async () => {
    c?.disconnect();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** What a 7.0 server can report for a value our parser read from an older format. */
  function comparable(type: string, v: unknown, fromServer: boolean): unknown {
    if (type !== 'stream') return normalizeValue(type, v);
    const s = { ...(v as Record<string, unknown>) };
    if (fromServer) {
      // Estimated by the server for stream v1 (not in the file).
      delete s.firstId;
      delete s.maxDeletedId;
      delete s.entriesAdded;
      s.groups = (s.groups as Array<Record<string, unknown>>).map((g) => {
        const { entriesRead: _unused, ...rest } = g;
        return rest;
      });
    }
    return s;
  }

  for (const h of HANDMADE.filter((x) => x.verifiedBy === 'server')) {
    it(`${h.name}: DEBUG RELOAD of the file shows the same keys, and our payloads RESTORE to the same digests`, async () => {
      await c.flushall();
      await c.call('FUNCTION', 'FLUSH');
      writeFileSync(join(server.dir, 'dump.rdb'), h.rdb);
      await c.call('DEBUG', 'RELOAD', 'NOSAVE');
      const serverKeys = await readAllKeys(c);
      const { items } = parseWhole(h.rdb);
      const ours = new Map(entries(items).map((e) => [keyId(e), e]));
      expect(serverKeys.map((k) => `${k.db}/${fromJsonSafe(k.key).toString('hex')}`).sort()).toEqual([...ours.keys()].sort());
      for (const k of serverKeys) {
        const e = ours.get(`${k.db}/${fromJsonSafe(k.key).toString('hex')}`)!;
        expect(e.type).toBe(k.type);
        expect(e.expireAtMs).toBe(k.expireAtMs);
        expect(comparable(e.type, typedValueToJson(e.value), false)).toEqual(comparable(k.type, k.value, true));
      }
      const libs = ((await c.call('FUNCTION', 'LIST', 'WITHCODE')) as unknown[][]).map((lib) => String(lib[lib.indexOf('library_code') + 1]));
      const ourLibs = items.flatMap((i) => (i.kind === 'function' ? [i.code.toString()] : []));
      expect([...libs].sort()).toEqual([...ourLibs].sort());
      // Our payloads (old RDB versions in their trailers) RESTORE to the same values.
      await c.flushall();
      for (const e of entries(items)) {
        await c.select(e.db);
        await c.callBuffer('RESTORE', e.key, 0, e.payload!, 'REPLACE');
        if (e.expireAtMs !== null) await c.call('PEXPIREAT', e.key, e.expireAtMs);
      }
      for (const k of serverKeys) {
        await c.select(k.db);
        const digest = ((await c.callBuffer('DEBUG', 'DIGEST-VALUE', fromJsonSafe(k.key))) as Buffer[])[0].toString();
        expect(digest).toBe(k.digest);
      }
      await c.select(0);
    });
  }

  for (const h of HANDMADE.filter((x) => x.verifiedBy === 'check-rdb')) {
    it(`${h.name}: redis-check-rdb accepts it`, () => {
      const file = join(dir, `${h.name}.rdb`);
      writeFileSync(file, h.rdb);
      const r = spawnSync('redis-check-rdb', [file], { encoding: 'utf8' });
      expect(r.stdout).toMatch(/RDB looks OK/);
    });
  }
});
