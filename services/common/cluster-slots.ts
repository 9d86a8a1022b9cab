/**
 * The reply of `CLUSTER SLOTS`, read once for every user of it (the capture's view of a cluster
 * source, the destination writer's slot map, the precheck): each range of slots with the master
 * that serves it. The replicas listed after the master are left out: nothing here reads them.
 */

export interface SlotRange {
  start: number;
  end: number;
  /** As the server gives it: empty or '?' when it does not know its own address (then use the one dialled). */
  host: string;
  port: number;
  /** The master's node id (null from servers older than 4.0, which do not send it). */
  id: string | null;
}

/** The ranges of a `CLUSTER SLOTS` reply, in the reply's order. */
export function parseClusterSlots(reply: unknown[]): SlotRange[] {
  return (reply as Array<[unknown, unknown, [unknown, unknown, unknown?]]>).map(([start, end, master]) => ({
    start: Number(start),
    end: Number(end),
    host: master[0] === undefined || master[0] === null ? '' : String(master[0]),
    port: Number(master[1]),
    id: master[2] === undefined || master[2] === null ? null : String(master[2]),
  }));
}
