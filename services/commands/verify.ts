/** `replistream verify`: compares source and destination key by key (type, value digest, TTL ±1 s). */
import { closeTopology, info, openTopology, topologyMasters } from '../destination/connection.js';
import { checkDestinationDbsAt } from '../destination/precheck.js';
import { verifyDatabases } from '../destination/verify.js';
import { currentSourceUrl } from '../common/sentinel.js';

/** Databases of the source that hold keys (INFO keyspace of every master). */
async function dbsWithKeys(url: string): Promise<number[]> {
  const topo = await openTopology(url, 'replistream-verify-source', 'source');
  try {
    const dbs = new Set<number>();
    for (const m of topologyMasters(topo)) for (const k of (await info(m, 'keyspace')).keys()) if (/^db\d+$/.test(k)) dbs.add(Number(k.slice(2)));
    return [...dbs].sort((a, b) => a - b);
  } finally {
    closeTopology(topo);
  }
}

export async function verifyCommand(c: Record<string, unknown>): Promise<number> {
  const dbMap = (c.dbMap as Map<number, number> | undefined) ?? new Map<number, number>();
  const source = await currentSourceUrl(String(c.source)); // a Sentinel-managed source: its master now
  const dbs = (c.dbs as number[] | undefined) ?? (dbMap.size ? [...dbMap.keys()] : await dbsWithKeys(source));
  // a db the destination does not have is a setting to fix (exit 2), not a difference
  await checkDestinationDbsAt(String(c.destination), dbs.map((db) => dbMap.get(db) ?? db));
  const result = await verifyDatabases(source, String(c.destination), dbs, dbMap, {
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
