/**
 * The confirm window: the units emitted but not confirmed durable yet, and what follows from them,
 * the offset the link ACKs to the source and the position a restart may resume from.
 *
 * - With `manualConfirm: false` (default) nothing waits: the ACKed offset is the processed offset.
 * - With `manualConfirm: true` the consumer calls `confirm(endOffset)` once a unit is durable
 *   (e.g. acknowledged by Kafka); the ACKed offset and `position` then stop at the start of the
 *   oldest unconfirmed unit (everything before it — confirmed units, SELECT, PING, REPLCONF — is
 *   done). Units may be confirmed in any batch size, in order. `maxUnconfirmedBytes` (default
 *   256 MiB) pauses the socket while that much stream is emitted but unconfirmed. The link keeps
 *   only the offsets and database of an unconfirmed unit, not the unit: a consumer that encodes
 *   units as they come holds the only copy.
 */
import type { CommandUnit } from '../resp/grouper.js';

export class ConfirmWindow {
  /**
   * Manual-confirm mode: the units emitted and not confirmed yet, oldest first. Only their offsets
   * and databases are kept (the units themselves belong to the consumer, which may drop them as
   * soon as it has encoded them).
   */
  private readonly pending = new PendingUnits();

  constructor(readonly manual: boolean) {}

  /** A unit is emitted: in manual-confirm mode it waits for its confirmation. */
  track(unit: CommandUnit): void {
    if (this.manual) this.pending.push(unit.startOffset, unit.endOffset, unit.db);
  }

  /** Every unit ending at or before `offset` is durable. */
  confirm(offset: number): void {
    this.pending.confirm(offset);
  }

  /** A full sync: the units of the old sync will never be confirmed. */
  clear(): void {
    this.pending.clear();
  }

  /**
   * The offset and database to ACK and to resume from: the start of the oldest unconfirmed unit,
   * else the processed point (`offset`, `db`).
   */
  ackPoint(offset: number, db: number): { offset: number; db: number } {
    const first = this.pending.first();
    return first ? { offset: first.startOffset, db: first.db } : { offset, db };
  }

  /** Bytes of stream emitted but not confirmed, up to the processed `offset`. */
  unconfirmedBytes(offset: number): number {
    const first = this.pending.first();
    return first ? offset - first.startOffset : 0;
  }
}

/** Offsets and databases of the emitted, unconfirmed units, oldest first (three flat arrays). */
class PendingUnits {
  private start: number[] = [];
  private end: number[] = [];
  private db: number[] = [];
  private head = 0;

  push(startOffset: number, endOffset: number, db: number): void {
    this.start.push(startOffset);
    this.end.push(endOffset);
    this.db.push(db);
  }

  first(): { startOffset: number; db: number } | undefined {
    return this.head < this.start.length ? { startOffset: this.start[this.head], db: this.db[this.head] } : undefined;
  }

  /** Forgets every unit ending at or before `offset`. */
  confirm(offset: number): void {
    let h = this.head;
    const n = this.start.length;
    while (h < n && this.end[h] <= offset) h++;
    if (h === n) {
      this.clear();
      return;
    }
    if (h > 1024 && h * 2 > n) {
      this.start = this.start.slice(h);
      this.end = this.end.slice(h);
      this.db = this.db.slice(h);
      h = 0;
    }
    this.head = h;
  }

  clear(): void {
    this.start = [];
    this.end = [];
    this.db = [];
    this.head = 0;
  }
}
