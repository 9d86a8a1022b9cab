/**
 * Whether a group has already written to a destination: its position keys exist. The conflict
 * mode `intercept` applies only to a group's first start; a restarted applier (even one killed
 * before its first Kafka commit) finds its own progress here and does not refuse its own keys.
 */
import { closeTopology, openTopology, topologyMasters } from './connection.js';

export async function hasGroupProgress(url: string, positionKeyPrefix: string): Promise<boolean> {
  const topology = await openTopology(url, 'replistream-progress');
  try {
    for (const client of topologyMasters(topology)) {
      await client.select(0).catch(() => undefined);
      let cursor = '0';
      do {
        const [next, found] = await client.scan(cursor, 'MATCH', `${positionKeyPrefix.replace(/[*?[\]\\]/g, '\\$&')}:*`, 'COUNT', 10_000);
        if (found.length > 0) return true;
        cursor = next;
      } while (cursor !== '0');
    }
    return false;
  } finally {
    closeTopology(topology);
  }
}
