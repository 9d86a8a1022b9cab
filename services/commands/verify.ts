/** `replistream verify`: compares source and destination key by key (type, value digest, TTL ±1 s). */
import { Redis } from 'ioredis';
import { verifyDatabases } from '../destination/verify.js';

async function dbsWithKeys(url: string): Promise<number[]> {
  const client = new Redis(url, { protocol: 2, lazyConnect: true, maxRetriesPerRequest: 1 } as never);
  try {
    await client.connect();
    return (await client.info('keyspace')).split('\n').filter((l) => /^db\d+:/.test(l)).map((l) => Number(l.slice(2, l.indexOf(':'))));
  } finally {
    client.disconnect();
  }
}

export async function verifyCommand(c: Record<string, unknown>): Promise<number> {
  const dbMap = (c.dbMap as Map<number, number> | undefined) ?? new Map<number, number>();
  const dbs = (c.dbs as number[] | undefined) ?? (dbMap.size ? [...dbMap.keys()] : await dbsWithKeys(String(c.source)));
  const result = await verifyDatabases(String(c.source), String(c.destination), dbs, dbMap, {
    sample: c.sample as number | undefined,
    heartbeatKeys: [String(c.heartbeatKey)],
  });
  if (c.json) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
  else {
    process.stdout.write(`compared ${result.compared} keys in db ${dbs.join(',')}: ${result.equal ? 'equal' : `${result.differences.length} difference(s)`}\n`);
    for (const d of result.differences.slice(0, 50)) process.stdout.write(`  db${d.db} ${d.key}: ${d.reason}\n`);
  }
  return result.equal ? 0 : 1;
}
