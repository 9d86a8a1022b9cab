/**
 * Follows a cluster source's topology during the task (topology.ts has the model).
 *
 * Every `intervalMs`, and at once when a shard's link drops, `CLUSTER NODES` is read from any
 * server of the cluster that answers, and compared with what capture follows:
 *
 * - A shard's master is another node (a replica promoted by `CLUSTER FAILOVER`, or elected after
 *   its master died): the shard's link moves to it. When everything the link produced is part of
 *   the promoted node's history (its `master_replid2` is the link's replication id and its
 *   `second_repl_offset` lies past the last unit produced), the link asks `PSYNC <old replid>
 *   <offset>` and the stream continues (+CONTINUE): no snapshot, same partitions, positions that
 *   go on growing. Otherwise (the dead master had sent capture writes its replica never got, so
 *   the new master's history differs from what was produced) a new snapshot epoch is taken.
 *
 * - Slots moved between shards (`redis-cli --cluster reshard`, `rebalance`, or SETSLOT/MIGRATE by
 *   hand): a new snapshot epoch, once no slot is migrating any more. Why not simply follow the
 *   keys to their new shard: a key's writes before the move are in the old shard's partitions with
 *   the old master's offsets, its writes after the move (starting with the RESTORE that MIGRATE
 *   propagates on the new master) in the new shard's partitions with the new master's offsets.
 *   Appliers apply partitions independently, so the new shard's RESTORE k and later writes could
 *   be applied before the old shard's last writes and its DEL k (MIGRATE propagates a DEL on the
 *   source node): k would be lost or its INCRs counted twice. Both copies in one partition is not
 *   an answer either: one partition must hold one replication stream, or a position could not tell
 *   a duplicate from a new event (the two masters' offsets are unrelated). What orders the two
 *   streams is a new epoch: the destination starts over from snapshots taken after the move, in
 *   which every key is in exactly one shard, and events of the old epoch are skipped.
 *
 * - A shard whose master serves no slot any more: its link stops (park) at once, and starts again
 *   with the next epoch if the master serves slots again.
 *
 * - A master that belongs to no shard capture knows serves slots (a master added, then resharded
 *   to): the topics have partitions for the shards capture started with, one replication stream
 *   each, so a shard whose master no longer serves any slot gives its range to the new master
 *   (with a new epoch); when there is none, the task fails with an error saying so.
 */
import { Redis } from 'ioredis';
import { ReplistreamError } from '../common/errors.js';
import { redisTlsForUrl } from '../common/connection-settings.js';
import { redactUrl, type Logger } from '../common/log.js';
import { movedSlots, observe, parseClusterNodes, type ClusterNode, type Layout, type ShardKeyFilter } from './topology.js';

/** What the follower needs of one shard's capture pipeline (CaptureService). */
export interface ShardPipeline {
  moveLink(url: string, resume: boolean): Promise<void>;
  streamPoint(): { replid: string | null; producedOffset: number };
  /** Drops the stream and asks for a new full sync: in a cluster every shard then joins a new epoch. */
  forceFullSync(): Promise<void>;
  /** Stops the link (a shard without slots); moveLink starts one again. */
  park(): Promise<void>;
  on(event: 'link-down', listener: () => void): unknown;
}

export interface ClusterFollowerOptions {
  /** The source URL the task was given: credentials and scheme for every node's URL. */
  sourceUrl: string;
  layout: Layout;
  /** By shard index (its range of partitions). */
  shards: ShardPipeline[];
  /** By shard index: each shard's key filter: it leaves out writes to slots the shard did not own at the epoch's start. */
  filters: ShardKeyFilter[];
  log: Logger;
  /** Between two readings of the topology (default 1000 ms). */
  intervalMs?: number;
  /** The slot owners the current epoch was snapshotted with (default: the layout's). */
  epochOwners?: Int16Array;
  /** Stores the slot owners of an epoch that starts, before its full syncs are asked for. */
  saveOwners: (owners: Int16Array) => Promise<void>;
  /** The next full sync of any shard starts a new epoch that every shard joins (EpochCoordinator.renew). */
  renewEpoch: () => void;
  /** The task fails (a master added with no range free for it). */
  onFatal: (err: ReplistreamError) => void;
}

export interface FollowerStats {
  readings: number;
  failovers: number;
  /** Failovers continued by PSYNC (no snapshot). */
  continued: number;
  /** Epochs started because slots moved or a history could not be continued. */
  topologyEpochs: number;
}

export class ClusterFollower {
  private layout: Layout;
  /** The slot owners the current epoch's snapshots were taken with. */
  private epochOwners: Int16Array;
  private nodes: ClusterNode[] = [];
  private timer: NodeJS.Timeout | null = null;
  private client: Redis | null = null;
  private clientAddr = '';
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  /** Readings in a row with the same slot owners and no migration under way. */
  private calmReadings = 0;
  /** Shards whose link is stopped: their master serves no slot. */
  private readonly parked = new Set<number>();
  readonly stats: FollowerStats = { readings: 0, failovers: 0, continued: 0, topologyEpochs: 0 };

  constructor(private readonly opts: ClusterFollowerOptions) {
    this.layout = opts.layout;
    this.epochOwners = opts.epochOwners ?? opts.layout.owners;
    this.assignSlots(this.epochOwners);
    opts.shards.forEach((s) => s.on('link-down', () => this.refreshSoon()));
  }

  start(): void {
    this.timer = setInterval(() => this.refreshSoon(), this.opts.intervalMs ?? 1000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running?.catch(() => undefined);
    this.client?.disconnect();
  }

  /** One reading at a time; a request during a reading makes one more after it. */
  refreshSoon(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.refresh()
      .catch((err: unknown) => this.opts.log.warn({ err: (err as Error).message }, 'cluster topology: reading failed; trying again'))
      .finally(() => {
        this.running = null;
        if (this.again) {
          this.again = false;
          this.refreshSoon();
        }
      });
  }

  private urlOf(host: string, port: number): string {
    const u = new URL(this.opts.sourceUrl);
    u.hostname = host;
    u.port = String(port);
    return u.toString();
  }

  private connect(url: string): Redis {
    const c = new Redis(url, { protocol: 2, lazyConnect: true, connectTimeout: 1000, commandTimeout: 2000, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null, tls: redisTlsForUrl('source', url) } as never);
    c.on('error', () => undefined);
    return c;
  }

  /** `CLUSTER NODES` from the last server that answered, else from any known one, masters first. */
  private async readNodes(): Promise<ClusterNode[]> {
    if (this.client) {
      try {
        return parseClusterNodes(String(await this.client.call('CLUSTER', 'NODES')));
      } catch {
        this.client.disconnect();
        this.client = null;
      }
    }
    const seen = new Set<string>();
    const candidates = [
      ...this.layout.shards.map((s) => this.urlOf(s.host, s.port)),
      ...this.nodes.filter((n) => !n.unusable).map((n) => this.urlOf(n.host, n.port)),
      this.opts.sourceUrl,
    ].filter((u) => !seen.has(u) && seen.add(u));
    let last: unknown = null;
    for (const url of candidates) {
      const c = this.connect(url);
      try {
        await c.connect();
        const nodes = parseClusterNodes(String(await c.call('CLUSTER', 'NODES')));
        this.client = c;
        this.clientAddr = url;
        return nodes;
      } catch (err) {
        last = err;
        c.disconnect();
      }
    }
    throw new ReplistreamError('CONNECTION', `no server of the cluster source answers CLUSTER NODES (tried ${candidates.map(redactUrl).join(', ')}): ${(last as Error)?.message}`, { retriable: true, cause: last, setting: 'source' });
  }

  private async refresh(): Promise<void> {
    const nodes = await this.readNodes();
    if (this.stopped) return;
    this.stats.readings++;
    this.nodes = nodes;
    const { layout, changes, migrating } = observe(this.layout, nodes);
    let epochNeeded = false;
    // Once per reading, before the first full sync it asks for: the epoch then grows once, whichever
    // shard's full sync comes first, and the others join it.
    let fullSyncAsked = false;
    const fullSyncOf = async (shard: number, url: string) => {
      if (!fullSyncAsked) this.opts.renewEpoch();
      fullSyncAsked = true;
      this.parked.delete(shard);
      await this.opts.shards[shard].moveLink(url, false);
    };
    for (const ch of changes) {
      if (ch.kind === 'master-moved') {
        this.stats.failovers++;
        const url = this.urlOf(ch.to.host, ch.to.port);
        const pipeline = this.opts.shards[ch.shard];
        const resume = await this.continuable(pipeline, url);
        this.opts.log.warn(
          { shard: ch.shard, from: `${ch.from.host}:${ch.from.port}`, to: `${ch.to.host}:${ch.to.port}`, continue: resume },
          resume ? 'cluster source: a replica took over a master; its link continues there by PSYNC' : 'cluster source: a replica took over a master, and the stream cannot be continued there: a new snapshot epoch',
        );
        if (resume) {
          this.stats.continued++;
          await pipeline.moveLink(url, true);
        } else {
          epochNeeded = true;
          await fullSyncOf(ch.shard, url);
        }
      } else if (ch.kind === 'new-master') {
        const free = layout.shards.find((s) => !layout.owners.includes(s.index) && !nodes.some((n) => n.id === s.masterId && n.master && !n.unusable && n.slots.length > 0));
        if (!free) {
          this.opts.onFatal(
            new ReplistreamError(
              'CONFIG',
              `the cluster source has a new master ${ch.node.host}:${ch.node.port} serving slots, and every range of partitions is in use by the ${layout.shards.length} masters capture started with: ` +
                'a new master needs its own partitions; start a new task (another source-id or topic-prefix) to sync the cluster as it is now',
              { setting: 'source-id' },
            ),
          );
          return;
        }
        this.opts.log.warn({ shard: free.index, node: `${ch.node.host}:${ch.node.port}` }, 'cluster source: a new master serves slots; it takes the partitions of a shard left without slots (new snapshot epoch)');
        free.masterId = ch.node.id;
        free.host = ch.node.host;
        free.port = ch.node.port;
        free.members = new Set([ch.node.id]);
        // its slots now count as this shard's
        for (const n of nodes) if (n.id === ch.node.id) for (const [a, b] of n.slots) for (let slot = a; slot <= b; slot++) layout.owners[slot] = free.index;
        await fullSyncOf(free.index, this.urlOf(ch.node.host, ch.node.port));
        epochNeeded = true;
      }
    }
    // A shard left without slots has nothing more to send: its writes up to now are superseded by
    // the epoch that follows the move. Its link stops at once, before it can reconnect to its
    // master turned into a replica of another shard (which would answer with a full sync of that
    // other history, and cost every shard a snapshot), and so that removing it is no outage.
    // (Only from a reading where every slot has a live owner: a partial view parks nothing.)
    const complete = !layout.owners.includes(-1);
    for (const shard of layout.shards) {
      if (!complete || layout.owners.includes(shard.index) || this.parked.has(shard.index)) continue;
      this.parked.add(shard.index);
      this.opts.log.warn({ shard: shard.index, master: `${shard.host}:${shard.port}` }, 'cluster source: a master serves no slot any more; its link stops');
      await this.opts.shards[shard.index].park();
    }
    // Slots moved: one epoch for the whole move, once it is over: no slot migrating, and the same
    // owners for a few readings (a reshard moves slot after slot, each in a few milliseconds when
    // it holds few keys, so "no slot migrating" alone is often true in the middle of one).
    const stable = movedSlots(this.layout.owners, layout.owners) === 0;
    this.calmReadings = migrating || !stable ? 0 : this.calmReadings + 1;
    this.layout = layout;
    const moved = movedSlots(this.epochOwners, layout.owners);
    const foreign = this.opts.filters.reduce((n, f) => n + f.foreignWrites, 0);
    if ((moved > 0 || foreign > 0) && this.calmReadings >= 3) {
      this.opts.log.warn({ slots: moved, writesHeldBack: foreign }, 'cluster source: slots moved between masters; a new snapshot epoch keeps every key in one stream');
      epochNeeded = true;
    }
    if (epochNeeded) {
      await this.opts.saveOwners(layout.owners); // first: when it fails, the next reading tries again
      this.stats.topologyEpochs++;
      this.epochOwners = layout.owners;
      this.assignSlots(layout.owners);
      // a shard whose link stopped when it lost its slots, and serves some again, joins the epoch
      for (const shard of layout.shards) {
        if (this.parked.has(shard.index) && layout.owners.includes(shard.index)) {
          this.opts.log.warn({ shard: shard.index, master: `${shard.host}:${shard.port}` }, 'cluster source: a master serves slots again; its link starts again');
          await fullSyncOf(shard.index, this.urlOf(shard.host, shard.port));
        }
      }
      // one shard's new full sync is enough: the epoch coordinator (cluster.ts) asks every other shard for one too
      if (!fullSyncAsked) {
        this.opts.renewEpoch();
        const first = this.opts.shards.findIndex((p, i) => p !== undefined && layout.owners.includes(i));
        await this.opts.shards[Math.max(0, first)].forceFullSync();
      }
    }
  }

  private assignSlots(owners: Int16Array): void {
    this.opts.filters.forEach((f, shard) => f.ownSlots((slot) => owners[slot] === shard));
  }

  /**
   * Whether the promoted node holds everything the shard's link produced: the link's replication
   * id is its current or previous one, and the last unit produced lies within that history.
   */
  private async continuable(pipeline: ShardPipeline, url: string): Promise<boolean> {
    const { replid, producedOffset } = pipeline.streamPoint();
    if (!replid || replid === '?') return false;
    const c = this.connect(url);
    try {
      await c.connect();
      const text = await c.info('replication');
      const field = (name: string) => new RegExp(`^${name}:(\\S+)`, 'm').exec(text)?.[1] ?? null;
      if (field('master_replid') === replid) return producedOffset <= Number(field('master_repl_offset'));
      // second_repl_offset: the first offset of the new history (the old one ended just before it)
      if (field('master_replid2') === replid) return producedOffset < Number(field('second_repl_offset'));
      return false;
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message, node: redactUrl(url) }, 'cannot read the promoted node\'s replication state');
      return false;
    } finally {
      c.disconnect();
    }
  }
}
