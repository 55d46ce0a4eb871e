// What replication needs of a site node (site/ implements it; replication never imports site/).
import type { VersionVector } from '../core/vector.js';
import type { ClusterConfig } from '../config/schema.js';
import type { Membership } from '../core/membership.js';
import type { ConflictRecord, ItemRecord, LogEntry, Store, VoidBacklogItem } from '../store/types.js';

export interface ReplicaNode {
  readonly siteId: string;
  readonly origin: string;
  readonly store: Store;
  readonly config: ClusterConfig;
  /** the membership in force (core/membership.ts) */
  membership(): Membership;
  vector(): VersionVector;
  /** `raw[i]`, when given, is entry i's bytes as its peer sent them: logged as they are */
  applyRemote(entries: LogEntry[], raw?: Uint8Array[]): Promise<{ applied: number; duplicates: number; gaps: number; quarantined?: number }>;
  /** Joins peers' item states into local items without logging them or touching the vector (anti-entropy). */
  /**
   * `reportAs`: log each item that changed, with its versions (a repair that changes anything is a
   * divergence). `supersededBy`: a snapshot's vector; a local item it covers is replaced by the
   * snapshot's state instead of joined (see SiteNode.repairItems).
   */
  repairItems(records: { table: string; key: string; state: ItemRecord['state'] }[], options?: { reportAs?: string; supersededBy?: VersionVector }): Promise<number>;
  /** After a snapshot: local items `vector` covers that the snapshot lacked (`inSnapshot` false) become empty tombstones. */
  retireItemsCoveredBy(vector: VersionVector, inSnapshot: (table: string, key: string) => boolean): Promise<number>;
  /** Keeps the void items a peer's snapshot carried (its void backlog) until their owner compensates them. */
  keepVoids?(items: VoidBacklogItem[]): Promise<void>;
  /** Adds a peer's conflict records (a snapshot install) to this site's conflict feed. */
  recordConflicts(records: ConflictRecord[]): Promise<void>;
  /** The end of a snapshot install: everything the snapshot's vector covers is now here. */
  advanceVector(vector: VersionVector, gcFloor?: VersionVector): Promise<void>;
  /** Whether the site may write under its origin yet (SiteNode.confirmOrigin). */
  readonly originConfirmed: boolean;
  confirmOrigin(peersHold: (origin: string) => Promise<{ seq: number; incarnationMax: number } | undefined>): Promise<'kept' | 'renewed'>;
  /** Called after every durable commit; returns an unsubscribe function. */
  onCommit(listener: () => void): () => void;
}
