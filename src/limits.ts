// Every bound in Tandem, in one place, with the relations between them asserted at load.
// Units come last in each name.
import { assert } from './core/assert.js';

export const limits = {
  keyBytesMax: 1024,
  itemBodyBytesMax: 400 * 1024,
  requestBodyBytesMax: 4 * 1024 * 1024,
  batchOpsMax: 100,
  scanLimitDefault: 100,
  scanLimitMax: 1000,
  sitesMax: 50,
  fieldsPerItemMax: 1024,
  setElementsMax: 10_000,
  siblingsMax: 16,
  /** Group commit: most writes folded into one transaction. */
  groupCommitWritesMax: 256,
  /** Pending writes waiting for the next group commit before new ones get 503. */
  writeQueueMax: 10_000,
  /** Replication batches: most entries and bytes per batch on a peer feed. */
  feedBatchEntriesMax: 512,
  feedBatchBytesMax: 1024 * 1024,
  clockSkewMsMax: 60_000,
  /** SQLite WAL pages between automatic checkpoints. */
  walCheckpointPages: 10_000,
  conflictFeedEntriesMax: 100_000,
  conflictFeedAgeMsMax: 7 * 24 * 3600 * 1000,
  shutdownDrainMsMax: 5_000,
  peerRequestTimeoutMs: 5_000,
  /** How long a quorum or all write waits for peers' acks before it answers 504 durability-timeout. */
  quorumTimeoutMs: 5_000,
  /**
   * How long a site waits for the owner it forwarded a request to. Longer than the owner's quorum
   * wait, so that a slow quorum comes back as the owner's own 504 (with the write's version and
   * dot) rather than as an outcome this site cannot know.
   */
  forwardTimeoutMs: 6_000,
  backoffMsMin: 50,
  backoffMsMax: 5_000,
  /**
   * A site acks what it applied to each peer at most this often (quorum writes are acked at once).
   * Acks let feeds skip what a peer already has, and drive log compaction and tombstone GC.
   */
  ackIntervalMs: 50,
  /** Another origin's entries are relayed to a peer only after this long here (relay-gate.ts). */
  relayDelayMs: 300,
  /**
   * A restarting site waits this long for every peer to say how much of its origin it holds; if
   * one does not answer, it takes a new incarnation rather than risk numbering a write twice.
   */
  originCheckMsMax: 3_000,
  /** Void owned items waiting for their owner's compensating write (beyond it they are logged, not compensated). */
  voidBacklogMax: 100_000,
  /** A compensating write that could not be admitted yet is tried again after this long. */
  compensateRetryMs: 200,
  /**
   * A site a voter has not granted a lease since the voter started counts as failed only after this
   * long (or three leases, if longer): sites of one cluster may start seconds apart.
   */
  ownerStartGraceMs: 5_000,
  /** A write refused because its owner is changing or silent is tried again after this (unreachable: doubling up to 8 times it), at the site... */
  ownerRetryMs: 25,
  /** ...for at most this long when another site forwarded it (that site's forward timeout must not run out first). */
  ownerWaitForwardedMs: 800,
  /** A quorum write waits at most this long for enough peers to be heard from before it is refused (503 quorum-unavailable). */
  quorumReachWaitMs: 1_000,
  /** Peer links retry sooner: a failed connect is cheap, and heal time is bounded by it. */
  peerBackoffMsMax: 150,
  /** An Idempotency-Key: 1 to this many printable ASCII characters (CONTRACT.md). */
  idempotencyKeyCharsMax: 128,
  /** Every site keeps an Idempotency-Key at least this long after it indexed it (CONTRACT.md: at least 24 h). */
  idempotencyKeyRetentionMs: 24 * 3600 * 1000,
  /** Most expired Idempotency-Keys one housekeeping pass drops (the rest go in the next passes). */
  idempotencyKeysTrimMax: 10_000,
} as const;

assert(limits.itemBodyBytesMax < limits.requestBodyBytesMax, 'an item must fit in a request');
assert(limits.groupCommitWritesMax <= limits.writeQueueMax, 'a group commit never exceeds the write queue');
assert(limits.scanLimitDefault <= limits.scanLimitMax, 'default scan limit within the max');
assert(limits.backoffMsMin < limits.backoffMsMax, 'backoff range');
assert(limits.backoffMsMin < limits.peerBackoffMsMax, 'peer backoff range');
assert(limits.forwardTimeoutMs >= limits.quorumTimeoutMs + 1_000, 'a forward outlasts the owner\'s quorum wait by a second: its commit and the round trip');
assert(limits.relayDelayMs >= 4 * limits.ackIntervalMs, 'a peer acks what it got directly well before it would be relayed');
assert(limits.idempotencyKeyRetentionMs >= 24 * 3600 * 1000, 'Idempotency-Keys are kept at least 24 h (CONTRACT.md)');
