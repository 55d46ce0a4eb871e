// Prometheus metrics of one site node (prom-client), on a registry of its own.
import { Counter, Histogram, Registry, Gauge, collectDefaultMetrics } from 'prom-client';

export class SiteMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'tandem_http_requests_total',
    help: 'HTTP requests served, by route and status',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [this.registry],
  });
  readonly writes = new Counter({ name: 'tandem_writes_total', help: 'Items written locally', registers: [this.registry] });
  readonly idempotentReplays = new Counter({
    name: 'tandem_idempotent_replays_total',
    help: 'Writes repeated under a known Idempotency-Key: answered with the first answer, nothing written',
    registers: [this.registry],
  });
  readonly conflicts = new Counter({
    name: 'tandem_conflicts_total',
    help: 'Concurrent values that lost and went to the conflict feed',
    registers: [this.registry],
  });
  readonly voidedItems = new Counter({
    name: 'tandem_voided_items_total',
    help: 'Owned items of peers\' entries not applied: beyond the cut of a move of their unit',
    registers: [this.registry],
  });
  readonly voidBacklog = new Gauge({
    name: 'tandem_void_backlog_items',
    help: 'Void owned items kept here until their owner compensates them',
    registers: [this.registry],
  });
  readonly voidBacklogOverflow = new Counter({
    name: 'tandem_void_backlog_overflow_total',
    help: 'Void owned items found while the void backlog was full: not applied, but not kept for compensation either (logged as errors)',
    registers: [this.registry],
  });
  readonly leaseRemainingMs = new Gauge({
    name: 'tandem_lease_remaining_ms',
    help: 'ms left on this site\'s topology lease (0: none)',
    registers: [this.registry],
  });
  readonly topologyEpoch = new Gauge({ name: 'tandem_topology_epoch', help: 'The newest topology epoch this site knows', registers: [this.registry] });
  readonly clockSkewAlarms = new Counter({
    name: 'tandem_clock_skew_alarms_total',
    help: 'Remote timestamps ahead of the local clock by more than clockSkewMsMax',
    registers: [this.registry],
  });
  readonly commitSize = new Histogram({
    name: 'tandem_group_commit_size',
    help: 'Requests per durable transaction',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
    registers: [this.registry],
  });
  readonly commitMs = new Histogram({
    name: 'tandem_group_commit_ms',
    help: 'Duration of a durable transaction including fsync, ms',
    buckets: [0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250],
    registers: [this.registry],
  });
  readonly peerConnected = new Gauge({
    name: 'tandem_peer_connected',
    help: '1 when the pull stream from the peer is connected',
    labelNames: ['peer'] as const,
    registers: [this.registry],
  });
  readonly peerLagEntries = new Gauge({
    name: 'tandem_peer_lag_entries',
    help: 'Entries the peer has that this site has not applied',
    labelNames: ['peer'] as const,
    registers: [this.registry],
  });
  readonly peerLagMs = new Gauge({
    name: 'tandem_peer_lag_ms',
    help: 'Age of the oldest entry from the peer not yet applied, ms',
    labelNames: ['peer'] as const,
    registers: [this.registry],
  });
  /**
   * Replication lag as this site sees it: from a peer's write (its hlc, taken before the origin
   * commits and acks) to the moment the entry is applied and visible here, by origin site. Fine
   * buckets, so a p99 against a target of tens of ms can be read off it (Tandem's own bench does).
   */
  readonly replicationLagMs = new Histogram({
    name: 'tandem_replication_visible_lag_ms',
    help: 'From the origin write (hlc) to visible at this site, ms, by origin site',
    labelNames: ['origin'] as const,
    buckets: [1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 35, 40, 45, 50, 60, 75, 100, 150, 200, 300, 500, 1000, 2000, 5000, 10_000, 30_000],
    registers: [this.registry],
  });
  /** Entries that came in on peer feeds: applied, already here (sent by two peers at once), or quarantined (their merge failed). */
  readonly entriesReceived = new Counter({
    name: 'tandem_replication_entries_received_total',
    help: 'Log entries received from peers, by result: applied, a duplicate of one already here, or quarantined (logged, items not applied)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly repairs = new Counter({
    name: 'tandem_antientropy_repairs_total',
    help: 'Items repaired by anti-entropy',
    registers: [this.registry],
  });

  /** Custom merges that fell back to LWW, per table: `deterministic` (every site alike) or not (the wall-clock safety net). */
  private readonly mergeFallbackSources = new Map<string, { failures(): number; nondeterministicFailures(): number }>();
  readonly customMergeFallbacks = new Gauge({
    name: 'tandem_custom_merge_fallbacks',
    help: 'Custom merges that fell back to last-writer-wins since start, by table and kind (deterministic: a bound or an error, alike on every site; nondeterministic: the wall-clock safety net fired)',
    labelNames: ['table', 'kind'] as const,
    registers: [this.registry],
    collect: () => {
      for (const [table, m] of this.mergeFallbackSources) {
        this.customMergeFallbacks.set({ table, kind: 'deterministic' }, m.failures());
        this.customMergeFallbacks.set({ table, kind: 'nondeterministic' }, m.nondeterministicFailures());
      }
    },
  });

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics) collectDefaultMetrics({ register: this.registry });
  }

  watchCustomMerge(table: string, merge: { failures(): number; nondeterministicFailures(): number }): void {
    this.mergeFallbackSources.set(table, merge);
  }

  observeCommit(size: number, ms: number): void {
    this.commitSize.observe(size);
    this.commitMs.observe(ms);
  }
}
