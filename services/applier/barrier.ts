/**
 * Cross-partition barriers: how G3 holds however many appliers share a group.
 *
 * Capture sends a unit whose keys live in several partitions (or databases) to each of them, with
 * the list of participants; a new snapshot's `snapshot-begin` goes to every partition of its
 * database. Each participant, having applied everything before the barrier in its own partition,
 * records its arrival in the destination. The first participant (the owner) waits until all have
 * arrived, applies the unit, and marks the barrier done; the others wait for that mark and move
 * past it without writing. So the unit takes effect after every earlier write to any key it
 * touches and before every later one.
 *
 * The only shared state is the destination itself (arrivals and the done mark are keys there),
 * so appliers in different processes coordinate without talking to each other, and a crash at
 * any step is repaired by replaying: arriving twice is harmless, and the owner's write is
 * exactly-once like any other (its position is stored with it).
 *
 * A participant that cannot pass yet must not block its consumer (other partitions of the same
 * process may be the ones it waits for): `tryPass` answers 'blocked' and the caller pauses the
 * partition and retries later.
 */

export interface BarrierStore {
  /** Records `participant`'s arrival; returns how many distinct participants have arrived. */
  arrive(barrierId: string, participant: string): Promise<number>;
  arrivals(barrierId: string): Promise<number>;
  markDone(barrierId: string): Promise<void>;
  isDone(barrierId: string): Promise<boolean>;
}

export interface BarrierRequest {
  /** Unique per barrier event within the group: derived from its source position. */
  id: string;
  /** Stream ids (topic:partition) of every participant, the owner first. */
  participants: string[];
  /** The stream this applier is processing. */
  me: string;
}

export type BarrierOutcome = 'apply' | 'skip' | 'blocked';

/**
 * One step of the protocol. 'apply': the caller is the owner and every participant has arrived:
 * it applies the unit, then calls `done`. 'skip': the owner has applied it: move past it.
 * 'blocked': try again later.
 */
export async function tryPass(store: BarrierStore, req: BarrierRequest): Promise<BarrierOutcome> {
  const owner = req.participants[0];
  if (req.participants.length <= 1) return 'apply';
  if (req.me === owner) {
    if (await store.isDone(req.id)) return 'skip';
    const n = await store.arrive(req.id, req.me);
    return n >= new Set(req.participants).size ? 'apply' : 'blocked';
  }
  if (await store.isDone(req.id)) return 'skip';
  await store.arrive(req.id, req.me);
  return (await store.isDone(req.id)) ? 'skip' : 'blocked';
}

/** An in-memory store, for unit tests of the protocol and for a single-process applier. */
export class MemoryBarrierStore implements BarrierStore {
  private readonly arrived = new Map<string, Set<string>>();
  private readonly done = new Set<string>();
  async arrive(id: string, p: string): Promise<number> {
    let s = this.arrived.get(id);
    if (!s) this.arrived.set(id, (s = new Set()));
    s.add(p);
    return s.size;
  }
  async arrivals(id: string): Promise<number> {
    return this.arrived.get(id)?.size ?? 0;
  }
  async markDone(id: string): Promise<void> {
    this.done.add(id);
    this.arrived.delete(id);
  }
  async isDone(id: string): Promise<boolean> {
    return this.done.has(id);
  }
}
