// What replication needs of a site node (site/ implements it; replication never imports site/).
import type { VersionVector } from '../core/vector.js';
import type { ItemRecord, LogEntry, Store } from '../store/types.js';

export interface ReplicaNode {
  readonly siteId: string;
  readonly origin: string;
  readonly store: Store;
  vector(): VersionVector;
  /** `raw[i]`, when given, is entry i's bytes as its peer sent them: logged as they are */
  applyRemote(entries: LogEntry[], raw?: Uint8Array[]): Promise<{ applied: number; duplicates: number; gaps: number }>;
  /** Joins peers' item states into local items without logging them or touching the vector (anti-entropy). */
  repairItems(records: { table: string; key: string; state: ItemRecord['state'] }[]): Promise<number>;
  /** The end of a snapshot install: everything the snapshot's vector covers is now here. */
  advanceVector(vector: VersionVector): Promise<void>;
  /** Called after every durable commit; returns an unsubscribe function. */
  onCommit(listener: () => void): () => void;
}
