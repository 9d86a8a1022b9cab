/**
 * The precheck as a list of items, each pass / warn / fail / skip with what to fix, checked all
 * rather than up to the first failure: the operator fixes everything in one round. This file holds
 * the list and the destination's items; `replistream precheck` adds the source's before them, and
 * an applier group's first start runs the destination's and shows the table on its status page.
 */
import type { Redis } from 'ioredis';
import { describeError, ReplistreamError } from '../common/errors.js';
import { formatBytes } from '../common/progress.js';
import { restoreIncompatibility, serverVersionFromInfo, type ServerVersion } from '../common/server-version.js';
import { closeTopology, info, openTopology, topologyMasters, type Topology } from './connection.js';
import { checkDestinationDbs, precheckDestination } from './precheck.js';

export type PrecheckResult = 'pass' | 'warn' | 'fail' | 'skip';

export interface PrecheckItem {
  item: string;
  result: PrecheckResult;
  detail: string;
  /** The setting to change, when the fix is configuration. */
  setting?: string;
}

/** What an item found: a pass or a warning with its detail (a failure is thrown). */
export type Found = { result?: 'pass' | 'warn'; detail: string };

export class PrecheckItems {
  readonly list: PrecheckItem[] = [];
  /** The first failure, as thrown: it becomes the command's (or the start's) error. */
  firstError: unknown = null;

  async check(item: string, run: () => Promise<Found>): Promise<boolean> {
    try {
      const f = await run();
      this.list.push({ item, result: f.result ?? 'pass', detail: f.detail });
      return true;
    } catch (err) {
      this.firstError ??= err;
      const setting = err instanceof ReplistreamError ? err.setting : undefined;
      this.list.push({ item, result: 'fail', detail: describeError(err), ...(setting ? { setting } : {}) });
      return false;
    }
  }

  skip(item: string, why: string): void {
    this.list.push({ item, result: 'skip', detail: why });
  }

  get failed(): number {
    return this.list.filter((i) => i.result === 'fail').length;
  }

  get warned(): number {
    return this.list.filter((i) => i.result === 'warn').length;
  }

  table(): string {
    const width = Math.max(0, ...this.list.map((i) => i.item.length));
    const lines = this.list.map((i) => `${i.result.padEnd(4)}  ${i.item.padEnd(width)}  ${i.detail}`);
    const w = this.warned;
    lines.push(this.failed ? `precheck failed: ${this.failed} of ${this.list.length} items` : `precheck passed${w ? ` (${w} warning${w > 1 ? 's' : ''})` : ''}`);
    return lines.join('\n') + '\n';
  }
}

/** Sum of `used_memory` over the given servers. */
export async function usedMemory(clients: Redis[]): Promise<number> {
  let n = 0;
  for (const c of clients) n += Number((await info(c, 'memory')).get('used_memory') ?? 0);
  return n;
}

export interface DestinationItemsOptions {
  destination: string;
  conflictMode: 'intercept' | 'ignore';
  /** Source db → destination db; null: identity over `sourceDbs`. */
  dbMap: Map<number, number> | null;
  /** Source databases with keys (for the identity map and the cluster advice). */
  sourceDbs: number[];
  /** Compared with the destination's when given (null: the source could not be read). */
  writeMode?: 'restore' | 'commands';
  sourceVersion?: ServerVersion | null;
  /** The source's used_memory, compared with the destination's room when given. */
  sourceUsedMemory?: number | null;
}

/** The destination's items, added to `items`. Items whose inputs were not given are left out. */
export async function checkDestinationItems(items: PrecheckItems, o: DestinationItemsOptions): Promise<void> {
  const dest: { topo: Topology | null } = { topo: null };
  await items.check('destination reachable and authenticated', async () => {
    const topo = await openTopology(o.destination, 'replistream-precheck');
    dest.topo = topo;
    const v = serverVersionFromInfo(await info(topologyMasters(topo)[0], 'server'));
    return { detail: `${topo.kind} ${v.label}` };
  });
  const versionItem = `destination version vs write mode ${o.writeMode ?? 'restore'}`;
  const emptyItem = `destination empty (${o.conflictMode})`;
  if (dest.topo === null) {
    const left = [...(o.writeMode ? [versionItem] : []), 'destination maxmemory-policy', ...(o.sourceUsedMemory !== undefined ? ['destination memory'] : []), 'db map', emptyItem];
    for (const i of left) items.skip(i, 'the destination cannot be reached');
    return;
  }
  const t: Topology = dest.topo;
  try {
    const masters = topologyMasters(t);
    const destVersion = serverVersionFromInfo(await info(masters[0], 'server'));
    if (o.writeMode) {
      await items.check(versionItem, async () => {
        if (o.writeMode === 'commands') return { detail: 'typed commands work with any destination version' };
        if (!o.sourceVersion) return { result: 'warn', detail: 'source version unknown: not compared' };
        const why = restoreIncompatibility(o.sourceVersion, destVersion);
        if (why) throw new ReplistreamError('PRECHECK', `${why}: RESTORE payloads may not be readable; upgrade the destination, or set write-mode to commands (typed writes work with any version)`, { setting: 'write-mode' });
        return { detail: `${destVersion.label} reads ${o.sourceVersion.label}'s RESTORE payloads` };
      });
    }
    await items.check('destination maxmemory-policy', async () => {
      let policy: string | null = null;
      try {
        policy = ((await masters[0].call('CONFIG', 'GET', 'maxmemory-policy')) as string[])?.[1] ?? null;
      } catch (err) {
        return { result: 'warn', detail: `cannot read it (${(err as Error).message}): make sure it is noeviction` };
      }
      if (policy !== 'noeviction') return { result: 'warn', detail: `${policy}: when memory runs out the destination evicts keys and silently diverges from the source; set it to noeviction` };
      return { detail: 'noeviction' };
    });
    if (o.sourceUsedMemory !== undefined) {
      const need = o.sourceUsedMemory;
      await items.check('destination memory', async () => {
        let limit = 0;
        for (const m of masters) limit += Number((await info(m, 'memory')).get('maxmemory') ?? 0);
        if (need === null) return { result: 'warn', detail: 'source unknown: not compared' };
        if (limit === 0) return { detail: `no maxmemory limit; the source uses ${formatBytes(need)}` };
        const free = limit - (await usedMemory(masters));
        if (need > free) {
          throw new ReplistreamError('PRECHECK', `the source uses ${formatBytes(need)}, the destination has ${formatBytes(Math.max(0, free))} free under its maxmemory ${formatBytes(limit)}: raise the destination's maxmemory`, { setting: 'destination' });
        }
        if (need > free * 0.8) return { result: 'warn', detail: `the source uses ${formatBytes(need)} of the destination's ${formatBytes(free)} free: little room for growth` };
        return { detail: `the source uses ${formatBytes(need)}, the destination has ${formatBytes(free)} free` };
      });
    }
    const dbs = o.dbMap ? [...new Set(o.dbMap.values())] : o.sourceDbs;
    const dbMapOk = await items.check('db map', async () => {
      if (!o.dbMap && t.kind === 'cluster' && o.sourceDbs.some((d) => d !== 0)) {
        const others = o.sourceDbs.filter((d) => d !== 0);
        throw new ReplistreamError(
          'CONFIG',
          `db-map: the destination is a cluster, which has db 0 only, and the source has keys in db ${others.join(', ')}: map them to 0 (--db-map ${o.sourceDbs.map((d) => `${d}:0`).join(',')}) or capture db 0 only (--dbs 0)`,
          { setting: 'db-map' },
        );
      }
      await checkDestinationDbs(t, dbs);
      return { detail: o.dbMap ? [...o.dbMap].map(([a, b]) => `${a}→${b}`).join(', ') : `identity (source dbs: ${o.sourceDbs.join(', ')})` };
    });
    if (!dbMapOk) items.skip(emptyItem, 'the db map is not valid');
    else {
      await items.check(emptyItem, async () => {
        const r = await precheckDestination(o.destination, dbs, o.conflictMode);
        const held = r.found.filter((f) => f.keys.length > 0);
        if (held.length === 0) return { detail: `db ${dbs.join(', ')} empty` };
        return { result: 'warn', detail: `db ${held.map((f) => `${f.db} holds ${f.keys.join(', ')}`).join('; ')}: conflict-mode ignore overwrites the same keys` };
      });
    }
  } finally {
    closeTopology(t);
  }
}
