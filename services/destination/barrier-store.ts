/**
 * The destination side of cross-partition barriers (services/applier/barrier.ts): arrivals are a
 * set and completion a flag, both keys in the destination, so appliers in any process see them.
 * Keys expire after `ttlMs` (default 7 days): a group whose appliers stop longer than that in the
 * middle of a barrier has to be restarted from a snapshot (`--from latest-snapshot`).
 */
import { Cluster, Redis } from 'ioredis';
import type { BarrierStore } from '../applier/barrier.js';
import { parseRedisUrl } from './connection.js';

export class RedisBarrierStore implements BarrierStore {
  private constructor(
    private readonly client: Redis | Cluster,
    private readonly prefix: string,
    private readonly ttlMs: number,
  ) {}

  static async open(url: string, prefix: string, opts: { cluster: boolean; ttlMs?: number }): Promise<RedisBarrierStore> {
    const ep = parseRedisUrl(url);
    const common = { username: ep.username, password: ep.password, tls: ep.tls ? {} : undefined };
    const client = opts.cluster
      ? new Cluster([{ host: ep.host, port: ep.port }], { redisOptions: { ...common, protocol: 2 } as never, enableOfflineQueue: true })
      : new Redis({ host: ep.host, port: ep.port, ...common, db: 0, protocol: 2, maxRetriesPerRequest: 5, enableOfflineQueue: true } as never);
    return new RedisBarrierStore(client, prefix, opts.ttlMs ?? 7 * 24 * 3600 * 1000);
  }

  private key(kind: 'arrived' | 'done', id: string): string {
    // one hash tag per barrier: both keys live in one slot of a cluster destination
    return `${this.prefix}:barrier:{${id}}:${kind}`;
  }

  async arrive(id: string, participant: string): Promise<number> {
    const k = this.key('arrived', id);
    const res = await this.client.multi().sadd(k, participant).pexpire(k, this.ttlMs).scard(k).exec();
    return Number(res?.[2]?.[1] ?? 0);
  }

  async arrivals(id: string): Promise<number> {
    return this.client.scard(this.key('arrived', id));
  }

  async markDone(id: string): Promise<void> {
    await this.client.multi().set(this.key('done', id), '1', 'PX', this.ttlMs).del(this.key('arrived', id)).exec();
  }

  async isDone(id: string): Promise<boolean> {
    return (await this.client.exists(this.key('done', id))) === 1;
  }

  close(): void {
    this.client.disconnect();
  }
}
