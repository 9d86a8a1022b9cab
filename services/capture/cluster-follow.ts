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
 * - Slots moved between shards (`redis-cli --cluster reshard`, or SETSLOT/MIGRATE by hand): a
 *   hand-off once no slot is migrating any more (slot-handoff.ts has why and the rules). A key's
 *   writes before the move are in the old shard's partitions with the old master's offsets, its
 *   writes after it (starting with the RESTORE that MIGRATE propagates on the new master) in the
 *   new shard's partitions with the new master's offsets, and appliers apply partitions
 *   independently. So from its first write to a slot it did not own, the new shard's stream is
 *   held in capture (ShardKeyFilter.touchesForeign); once the move is over, each old shard puts a
 *   marker in its partitions after its last write to the moved slots (the link has read its
 *   master's stream up to the offset read after the slots left it), and the new shard puts a
 *   `slot-handoff` in front of the held writes: appliers apply nothing after it before the old
 *   shards' partitions are applied up to their markers. No snapshot, no full resync. The slot
 *   owners are then stored (after the hand-off is in Kafka: a restart before that takes an epoch).
 *   When a hand-off cannot be made (a master that gives and takes slots at once, a snapshot that
 *   started mid-move, a marker not made in time), a new snapshot epoch orders the two streams
 *   instead: the destination starts over from snapshots taken after the move, and events of the
 *   old epoch are skipped.
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
import { planHandOff } from './slot-handoff.js';
import type { SlotHandOff, SourcePosition } from '../events/model.js';

/** How long an old owner's link may take to read its master's stream up to the move's end. */
const MARK_TIMEOUT_MS = 10_000;

type Mark = { pos: SourcePosition; partitions: number[] };

/** What the follower needs of one shard's capture pipeline (CaptureService). */
export interface ShardPipeline {
  moveLink(url: string, resume: boolean): Promise<void>;
  streamPoint(): { replid: string | null; producedOffset: number };
  /** Drops the stream and asks for a new full sync: in a cluster every shard then joins a new epoch. */
  forceFullSync(): Promise<void>;
  /** Stops the link (a shard without slots); moveLink starts one again. */
  park(): Promise<void>;
  /** Holds the stream until `handOff` (CaptureService). */
  beginHold(): void;
  readonly holding: boolean;
  /** No snapshot under way. */
  readonly streaming: boolean;
  /** The old owner's marker, once its link has read the stream up to `atLeast`; null when it cannot. */
  handOffMark(atLeast: number, timeoutMs: number): Promise<Mark | null>;
  /** The new owner's hand-off in front of its held writes. */
  handOff(after: SlotHandOff['after']): Promise<void>;
  on(event: 'link-down' | 'fullresync', listener: () => void): unknown;
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
  /** The task fails (a master added, and its range of partitions could not be made). */
  onFatal: (err: ReplistreamError) => void;
  /**
   * A master added when every range of partitions is in use: the topics grow by one range and a
   * pipeline is made for it (not started: `start` opens its link, whose full sync joins the epoch
   * the follower renews). Absent: such a master fails the task.
   */
  addShard?: (url: string) => Promise<{ index: number; pipeline: ShardPipeline; start(): Promise<void> }>;
}

export interface FollowerStats {
  readings: number;
  failovers: number;
  /** Failovers continued by PSYNC (no snapshot). */
  continued: number;
  /** Epochs started because slots moved (and could not be handed off) or a history could not be continued. */
  topologyEpochs: number;
  /** Slot moves handed off between the masters' streams, without a snapshot. */
  handOffs: number;
  /** Why the last move was not handed off (a new epoch was taken instead), if one was not. */
  lastHandOffRefused: string | null;
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
  readonly stats: FollowerStats = { readings: 0, failovers: 0, continued: 0, topologyEpochs: 0, handOffs: 0, lastHandOffRefused: null };
  /** Markers made by shards as their link stopped (no slot left): the hand-off that follows uses them. */
  private readonly marks = new Map<number, Mark | null>();
  /** Set when a snapshot started while slots had moved: its filters were the old owners', so the move needs an epoch. */
  private noHandOff: string | null = null;
  /** Masters of no known shard and without slots, by node id: readings in a row seen so. */
  private readonly slotless = new Map<string, number>();
  /** Shards added without slots (add-node): not parked for having none, until they get some. */
  private readonly fresh = new Set<number>();
  /** Node ids of the first reading. */
  private readonly startNodes = new Set<string>();

  constructor(private readonly opts: ClusterFollowerOptions) {
    this.layout = opts.layout;
    this.epochOwners = opts.epochOwners ?? opts.layout.owners;
    this.assignSlots(this.epochOwners);
    opts.shards.forEach((s, shard) => this.watch(s, shard));
  }

  private watch(s: ShardPipeline, shard: number): void {
    s.on('link-down', () => this.refreshSoon());
    s.on('fullresync', () => {
      const moved = movedSlots(this.epochOwners, this.layout.owners) > 0 || this.opts.filters.some((f) => f.foreignWrites > 0);
      if (moved && !this.noHandOff) this.noHandOff = `master ${shard} started a snapshot while slots had moved`;
    });
  }

  /** A shard made during the task (a master added) joins the layout and the shards followed. */
  private adopt(layout: Layout, added: { index: number; pipeline: ShardPipeline }, node: { id: string; host: string; port: number }): void {
    layout.shards.push({ index: added.index, masterId: node.id, host: node.host, port: node.port, members: new Set([node.id]) });
    this.opts.shards[added.index] = added.pipeline;
    this.watch(added.pipeline, added.index);
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
    if (this.unsavedOwners) await this.saveOwners(this.unsavedOwners);
    const nodes = await this.readNodes();
    if (this.stopped) return;
    this.stats.readings++;
    if (this.stats.readings === 1) for (const n of nodes) this.startNodes.add(n.id);
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
      } else if (ch.kind === 'new-master' && ch.slotless) {
        // A master added without slots yet (add-node): once it has stayed one for a few readings
        // (add-node --cluster-slave makes a replica of it within a second), it gets its own range
        // of partitions and a pipeline at once, in the current epoch (its snapshot is empty), so
        // that slots moved to it later are handed off like any others.
        if (this.startNodes.has(ch.node.id)) continue; // there before the task (a master emptied earlier)
        const seen = (this.slotless.get(ch.node.id) ?? 0) + 1;
        this.slotless.set(ch.node.id, seen);
        if (seen < 3 || !this.opts.addShard) continue;
        this.slotless.delete(ch.node.id);
        let added: Awaited<ReturnType<NonNullable<ClusterFollowerOptions['addShard']>>>;
        try {
          added = await this.opts.addShard(this.urlOf(ch.node.host, ch.node.port));
        } catch (err) {
          this.opts.log.warn({ err: (err as Error).message, node: `${ch.node.host}:${ch.node.port}` }, 'cluster source: a master was added, and the topics cannot grow for it yet; trying again');
          continue;
        }
        this.adopt(layout, added, ch.node);
        this.opts.filters[added.index]?.ownSlots((slot) => this.epochOwners[slot] === added.index);
        this.fresh.add(added.index);
        this.opts.log.warn({ shard: added.index, node: `${ch.node.host}:${ch.node.port}` }, 'cluster source: a master was added; it gets a new range of partitions and joins the current epoch');
        await added.start();
      } else if (ch.kind === 'new-master') {
        const free = layout.shards.find((s) => !layout.owners.includes(s.index) && !this.fresh.has(s.index) && !nodes.some((n) => n.id === s.masterId && n.master && !n.unusable && n.slots.length > 0));
        if (!free) {
          const url = this.urlOf(ch.node.host, ch.node.port);
          let added: Awaited<ReturnType<NonNullable<ClusterFollowerOptions['addShard']>>> | null = null;
          let why = 'no way to add partitions';
          if (this.opts.addShard) {
            try {
              added = await this.opts.addShard(url);
            } catch (err) {
              why = (err as Error).message;
            }
          }
          if (!added) {
            this.opts.onFatal(
              new ReplistreamError(
                'CONFIG',
                `the cluster source has a new master ${ch.node.host}:${ch.node.port} serving slots, every range of partitions is in use by the ${layout.shards.length} masters capture started with, ` +
                  `and the topics could not grow by one range for it (${why}); start a new task (another source-id or topic-prefix) to sync the cluster as it is now`,
                { setting: 'source-id' },
              ),
            );
            return;
          }
          this.adopt(layout, added, ch.node);
          for (const n of nodes) if (n.id === ch.node.id) for (const [a, b] of n.slots) for (let slot = a; slot <= b; slot++) layout.owners[slot] = added.index;
          this.opts.log.warn({ shard: added.index, node: `${ch.node.host}:${ch.node.port}` }, 'cluster source: a new master serves slots; it gets a new range of partitions (new snapshot epoch)');
          if (!fullSyncAsked) this.opts.renewEpoch();
          fullSyncAsked = true;
          await added.start();
          epochNeeded = true;
          continue;
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
      if (layout.owners.includes(shard.index)) this.fresh.delete(shard.index);
      // an added master made a replica instead (add-node, then CLUSTER REPLICATE): parked like an emptied one
      if (this.fresh.has(shard.index) && nodes.some((n) => n.id === shard.masterId && !n.master)) this.fresh.delete(shard.index);
      if (!complete || layout.owners.includes(shard.index) || this.parked.has(shard.index) || this.fresh.has(shard.index)) continue;
      this.parked.add(shard.index);
      // its last writes to the slots it gave away are before this marker (the hand-off waits for it)
      this.marks.set(shard.index, await this.markOf(shard.index, this.urlOf(shard.host, shard.port)));
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
    if ((moved > 0 || foreign > 0) && this.calmReadings >= 3 && !epochNeeded) {
      const refused = await this.handOff(layout);
      this.stats.lastHandOffRefused = refused;
      if (refused !== null) {
        this.opts.log.warn({ slots: moved, writesHeld: foreign, why: refused }, 'cluster source: slots moved between masters and cannot be handed off; a new snapshot epoch keeps every key in one stream');
        epochNeeded = true;
      }
    }
    if (epochNeeded) {
      this.marks.clear();
      this.noHandOff = null;
      await this.opts.saveOwners(layout.owners); // first: when it fails, the next reading tries again
      this.unsavedOwners = null; // superseded
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

  /**
   * Hands the moved slots over (see the header); null when done, else why not (an epoch follows).
   * Once the new owners hold their streams, nothing can be half-done: until the owners are stored,
   * a restart takes an epoch, and a failure here takes one too.
   */
  private async handOff(layout: Layout): Promise<string | null> {
    if (this.noHandOff) return this.noHandOff;
    const leftOut = this.opts.filters.findIndex((f) => f && f.keysLeftOut > 0);
    if (leftOut >= 0) return `master ${leftOut}'s snapshot left out keys of slots it did not own yet (taken while they were imported)`;
    const foreign = new Map<number, Set<number>>();
    this.opts.filters.forEach((f, shard) => f && f.foreignSlots.size > 0 && foreign.set(shard, f.foreignSlots));
    const plan = planHandOff(this.epochOwners, layout.owners, foreign);
    if ('refused' in plan) return plan.refused;
    const shardOf = (i: number) => layout.shards.find((s) => s.index === i);
    // a stopped link whose master serves slots again only continues as a new owner (its writes
    // while it was stopped are then held behind the hand-off)
    for (const i of this.parked) if (layout.owners.includes(i) && !plan.sources.has(i)) return `master ${i} serves slots again without taking any`;
    for (const [to, from] of plan.sources) {
      if (!this.opts.shards[to] || !shardOf(to)) return `no pipeline follows master ${to}`;
      if (!this.opts.shards[to].streaming) return `master ${to} is not streaming (a snapshot is under way)`;
      for (const f of from) if (!this.opts.shards[f] || (this.parked.has(f) ? !this.marks.get(f) : !shardOf(f))) return `master ${f}'s stream cannot be marked`;
    }
    // the new owners hold their streams from here (a parked one continues its stream by PSYNC)
    for (const to of plan.sources.keys()) {
      const pipeline = this.opts.shards[to];
      pipeline.beginHold();
      if (this.parked.has(to)) {
        const s = shardOf(to)!;
        this.parked.delete(to);
        this.opts.log.warn({ shard: to, master: `${s.host}:${s.port}` }, 'cluster source: a master serves slots again; its link continues its stream');
        await pipeline.moveLink(this.urlOf(s.host, s.port), true);
      }
    }
    const marks = new Map<number, Mark>();
    for (const from of new Set([...plan.sources.values()].flatMap((f) => [...f]))) {
      const s = shardOf(from)!;
      const mark = this.parked.has(from) ? this.marks.get(from)! : await this.markOf(from, this.urlOf(s.host, s.port));
      if (!mark) return `master ${from}'s stream could not be marked after the move`;
      marks.set(from, mark);
    }
    // from here the new owners' writes to their new slots pass their filters, behind the hand-off
    this.epochOwners = layout.owners;
    this.assignSlots(layout.owners);
    for (const [to, from] of plan.sources) {
      const after = [...from].flatMap((f) => marks.get(f)!.partitions.map((partition) => ({ partition, pos: marks.get(f)!.pos })));
      await this.opts.shards[to].handOff(after);
    }
    this.marks.clear();
    this.stats.handOffs++;
    await this.saveOwners(layout.owners);
    this.opts.log.warn(
      { slots: plan.slots, moves: [...plan.sources].map(([to, from]) => `${[...from].join(',')}→${to}`) },
      'cluster source: slots moved between masters; handed off between their streams (no snapshot)',
    );
    return null;
  }

  /**
   * A shard's marker after every write its master made so far: the master's offset read now (after
   * the slots left it; `second_repl_offset` − 1 when it has since turned replica of another
   * history), reached by the link, then the marker. Null when it cannot be made.
   */
  private async markOf(shard: number, url: string): Promise<Mark | null> {
    const pipeline = this.opts.shards[shard];
    const { replid } = pipeline?.streamPoint() ?? { replid: null };
    if (!pipeline || pipeline.holding || !replid || replid === '?') return null;
    const end = await this.historyEnd(url, replid, 'a master\'s replication offset for a slot hand-off');
    return end === null ? null : pipeline.handOffMark(end, MARK_TIMEOUT_MS);
  }

  /** Owners not stored yet (Kafka unavailable): every reading tries again. Until then a restart takes an epoch. */
  private unsavedOwners: Int16Array | null = null;

  private async saveOwners(owners: Int16Array): Promise<void> {
    this.unsavedOwners = owners;
    try {
      await this.opts.saveOwners(owners);
      if (this.unsavedOwners === owners) this.unsavedOwners = null;
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message }, 'cannot store the slot owners after a hand-off; trying again at the next reading');
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
    const end = await this.historyEnd(url, replid, 'the promoted node\'s replication state');
    return end !== null && producedOffset <= end;
  }

  /**
   * The last offset of history `replid` on the server at `url`: its current offset while that is
   * its history, else (a replica promoted, a master turned replica) the end of its previous one,
   * `second_repl_offset` − 1, when that was `replid`. Null when it holds no part of it, or cannot be read.
   */
  private async historyEnd(url: string, replid: string, what: string): Promise<number | null> {
    const c = this.connect(url);
    try {
      await c.connect();
      const text = await c.info('replication');
      const field = (name: string) => new RegExp(`^${name}:(\\S+)`, 'm').exec(text)?.[1] ?? null;
      let end: number | null = null;
      if (field('master_replid') === replid) end = Number(field('master_repl_offset'));
      else if (field('master_replid2') === replid) end = Number(field('second_repl_offset')) - 1;
      return end !== null && Number.isFinite(end) ? end : null;
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message, node: redactUrl(url) }, `cannot read ${what}`);
      return null;
    } finally {
      c.disconnect();
    }
  }
}
