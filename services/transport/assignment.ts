/**
 * How a consumer group's partitions are shared among its members.
 *
 * - `db` (default): every partition of a topic (one source db) goes to the same member; topics are
 *   dealt round-robin over the members. A multi-key command is a barrier across the partitions of
 *   its db; with the whole db in one process it is settled in memory, in the order the plan builds,
 *   instead of through positions stored in the destination and polled by another process (several
 *   milliseconds a barrier: with one command in five a barrier, a group whose members split a db's
 *   partitions could not follow 2,000 commands/s). Scale-out is then per db; members beyond the
 *   number of dbs wait as standbys and take over at the next rebalance.
 * - `partition`: kafkajs's round-robin over every partition (the members split each db). Worth it
 *   for traffic with few multi-key commands that needs more than one process per db.
 *
 * A member offers its strategy and round-robin; the broker picks one every member offers, so
 * members of mixed settings (or versions) still form a group (then round-robin).
 */
import { AssignerProtocol, PartitionAssigners, type PartitionAssigner } from 'kafkajs';

export type AssignmentStrategy = 'db' | 'partition';

/**
 * Whole topics per member (pure): topics sorted by name are dealt over the members sorted by id,
 * each to the member holding the fewest so far among those that subscribe to it (`subscriptions`:
 * member id → its topics; a member absent from it takes any topic). Members of one group may read
 * different topics — two hops of a cascade given the same group name on one Kafka cluster — and a
 * topic dealt to a member that does not read it would be dropped by that member and read by no one.
 * Returns member id → topic → partitions, for every member (an empty map: nothing assigned).
 */
export function assignWholeTopics(
  memberIds: readonly string[],
  topics: ReadonlyArray<{ topic: string; partitions: readonly number[] }>,
  subscriptions?: ReadonlyMap<string, readonly string[]>,
): Map<string, Record<string, number[]>> {
  const members = [...memberIds].sort();
  const out = new Map<string, Record<string, number[]>>(members.map((m) => [m, {}]));
  const held = new Map<string, number>(members.map((m) => [m, 0]));
  const sorted = [...topics].sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0));
  for (const t of sorted) {
    let to: string | null = null;
    for (const m of members) {
      const subscribed = subscriptions?.get(m);
      if (subscribed && !subscribed.includes(t.topic)) continue;
      if (to === null || held.get(m)! < held.get(to)!) to = m;
    }
    if (to === null) continue; // nobody reads it
    out.get(to)![t.topic] = [...t.partitions].sort((a, b) => a - b);
    held.set(to, held.get(to)! + 1);
  }
  return out;
}

/** A member's subscribed topics, from the metadata it joined with (null: unreadable, any topic). */
function subscribedTopics(metadata: Buffer): string[] | null {
  try {
    return AssignerProtocol.MemberMetadata.decode(metadata)?.topics ?? null;
  } catch {
    return null;
  }
}

/** The kafkajs assigner of the `db` strategy. */
const wholeTopicAssigner: PartitionAssigner = ({ cluster }) => ({
  name: 'ReplistreamWholeTopic',
  version: 0,
  async assign({ members, topics }) {
    const layout = topics.map((topic) => ({ topic, partitions: cluster.findTopicPartitionMetadata(topic).map((m) => m.partitionId) }));
    const subscriptions = new Map<string, string[]>();
    for (const m of members) {
      const t = subscribedTopics(m.memberMetadata);
      if (t) subscriptions.set(m.memberId, t);
    }
    const plan = assignWholeTopics(
      members.map((m) => m.memberId),
      layout,
      subscriptions,
    );
    return [...plan].map(([memberId, assignment]) => ({
      memberId,
      memberAssignment: AssignerProtocol.MemberAssignment.encode({ version: 0, assignment, userData: Buffer.alloc(0) }),
    }));
  },
  protocol({ topics }) {
    return { name: 'ReplistreamWholeTopic', metadata: AssignerProtocol.MemberMetadata.encode({ version: 0, topics, userData: Buffer.alloc(0) }) };
  },
});

/** The assigners a member offers, preferred first. */
export function partitionAssigners(strategy: AssignmentStrategy): PartitionAssigner[] {
  return strategy === 'db' ? [wholeTopicAssigner, PartitionAssigners.roundRobin] : [PartitionAssigners.roundRobin];
}
