// The router's local view of every site: health (site-health.ts), smoothed RTT, dial, weight and
// request counters. Everything the router decides comes from here (static stability: nothing
// outside this process is asked at routing time). Policies read `views()`, a snapshot rebuilt only
// when something in it changes, so the per-request path allocates nothing for it.
import type { RouterConfig } from '../config/router-schema.js';
import type { SiteConfig } from '../config/schema.js';
import type { Clock, Logger } from '../platform/env.js';
import { assert } from '../platform/assert.js';
import { initialSiteHealth, isRoutable, nextSiteHealth, type HealthEvent, type HealthState, type HealthThresholds, type SiteHealth } from './site-health.js';
import type { SiteView } from './policies.js';

/** RTT smoothing: weight of a new sample in the moving average. */
const rttSmoothing = 0.3;
/** The window behind "share of requests" in the status API. */
const shareWindowSeconds = 10;

export interface SiteTarget {
  /** `http://host:port`, for the upstream pool. */
  origin: string;
  /** Path prefix of the target URL without a trailing slash ('' for none). */
  basePath: string;
  hostname: string;
  port: number;
}

export function parseTarget(url: string): SiteTarget {
  const u = new URL(url);
  const port = u.port === '' ? (u.protocol === 'https:' ? 443 : 80) : Number(u.port);
  return {
    origin: `${u.protocol}//${u.host}`,
    basePath: u.pathname.replace(/\/+$/, ''),
    hostname: u.hostname.replace(/^\[|\]$/g, ''),
    port,
  };
}

/** Counts events per second over a sliding window of whole seconds. */
class RecentCounter {
  private readonly counts = new Array<number>(shareWindowSeconds).fill(0);
  private readonly seconds = new Array<number>(shareWindowSeconds).fill(-1);

  add(nowMs: number): void {
    const sec = Math.floor(nowMs / 1000);
    const slot = sec % shareWindowSeconds;
    if (this.seconds[slot] !== sec) {
      this.seconds[slot] = sec;
      this.counts[slot] = 0;
    }
    this.counts[slot]! += 1;
  }

  total(nowMs: number): number {
    const sec = Math.floor(nowMs / 1000);
    let sum = 0;
    for (let i = 0; i < shareWindowSeconds; i++) {
      if (sec - this.seconds[i]! < shareWindowSeconds) sum += this.counts[i]!;
    }
    return sum;
  }
}

export interface SiteRuntime {
  readonly config: SiteConfig;
  readonly id: string;
  readonly index: number;
  readonly target: SiteTarget;
  /** The site node, whose readiness is checked. */
  readonly nodeUrl: string;
  health: SiteHealth;
  rttMs: number | undefined;
  dial: number;
  weight: number;
  failoverRank: number;
  /** `answered`: the probe got an HTTP answer (a failed check that got none: paused, dead or cut off). */
  lastCheck: { ok: boolean; answered: boolean; atWallMs: number; detail: string | undefined } | undefined;
  /** Responses forwarded to clients, by status. */
  readonly responses: Map<number, number>;
  /** Attempts sent to this site (forwarded, retried or failed). */
  attempts: number;
  readonly recent: RecentCounter;
}

export type TransitionListener = (site: SiteRuntime, from: HealthState, to: HealthState, event: HealthEvent) => void;
export type CheckListener = (site: SiteRuntime) => void;

/**
 * Whether the router takes a site for unresponsive: down, and its latest check got no answer at all.
 * Requests it holds that another site could have made slow (router/attribution.ts) wait no longer.
 */
export function isUnresponsive(site: SiteRuntime): boolean {
  return site.health.state === 'down' && site.lastCheck?.answered === false;
}

export class SiteTable {
  private readonly sites = new Map<string, SiteRuntime>();
  private snapshot: SiteView[] = [];
  private readonly listeners: TransitionListener[] = [];
  private readonly checkListeners: CheckListener[] = [];
  private readonly thresholds: HealthThresholds;
  readonly recentTotal = new RecentCounter();
  /** Requests answered with 503 because no site could be tried. */
  noSiteAvailable = 0;
  /** Retries on another site, by `from|to|reason`. */
  readonly retries = new Map<string, number>();
  /** Health transitions, by `site|to`. */
  readonly transitions = new Map<string, number>();
  /** Writes answered 502 with `Tandem-Outcome: unknown`. */
  unknownOutcomes = 0;
  /** Requests that no site served and two sites failed alike: blamed on the request, not on the sites. */
  requestsBlamed = 0;

  constructor(
    sites: readonly SiteConfig[],
    private readonly config: RouterConfig,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {
    this.thresholds = {
      unhealthyAfter: config.healthCheck.unhealthyAfter,
      healthyAfter: config.healthCheck.healthyAfter,
      statusFailuresToEject: config.passive.statusFailuresToEject,
    };
    this.replaceSites(sites);
  }

  /** Adopts a new site list: known sites keep their state, removed ones are forgotten. */
  replaceSites(sites: readonly SiteConfig[]): { added: string[]; removed: string[] } {
    assert(sites.length > 0, 'a router needs at least one site');
    const before = new Map(this.sites);
    this.sites.clear();
    const order = [...this.config.failoverOrder, ...sites.map((s) => s.id).filter((id) => !this.config.failoverOrder.includes(id))];
    sites.forEach((config, index) => {
      const old = before.get(config.id);
      const targetUrl = config.app ?? config.url;
      const rank = order.indexOf(config.id);
      this.sites.set(config.id, {
        config,
        id: config.id,
        index,
        target: parseTarget(targetUrl),
        nodeUrl: config.url.replace(/\/+$/, ''),
        health: old?.health ?? initialSiteHealth,
        rttMs: old?.rttMs,
        dial: old?.dial ?? this.config.dials[config.id] ?? 100,
        weight: this.config.weights[config.id] ?? 1,
        failoverRank: rank < 0 ? order.length : rank,
        lastCheck: old?.lastCheck,
        responses: old?.responses ?? new Map(),
        attempts: old?.attempts ?? 0,
        recent: old?.recent ?? new RecentCounter(),
      });
    });
    this.rebuild();
    return {
      added: sites.filter((s) => !before.has(s.id)).map((s) => s.id),
      removed: [...before.keys()].filter((id) => !this.sites.has(id)),
    };
  }

  onTransition(listener: TransitionListener): void {
    this.listeners.push(listener);
  }

  /** Called after every active check's result is recorded. */
  onCheck(listener: CheckListener): void {
    this.checkListeners.push(listener);
  }

  get(id: string): SiteRuntime | undefined {
    return this.sites.get(id);
  }

  list(): SiteRuntime[] {
    return [...this.sites.values()];
  }

  /** The policies' view of the sites, in config order. Do not mutate. */
  views(): readonly SiteView[] {
    return this.snapshot;
  }

  report(id: string, event: HealthEvent): void {
    const site = this.sites.get(id);
    if (site === undefined) return; // removed while a check or request was in flight
    const from = site.health.state;
    const next = nextSiteHealth(site.health, event, this.thresholds);
    if (next === site.health) return;
    site.health = next;
    if (next.state !== from) {
      const key = `${id}|${next.state}`;
      this.transitions.set(key, (this.transitions.get(key) ?? 0) + 1);
      this.log.info({ site: id, from, to: next.state, event }, 'site health changed');
      this.rebuild();
      for (const l of this.listeners) l(site, from, next.state, event);
    }
  }

  recordCheck(id: string, ok: boolean, rttSampleMs: number | undefined, detail: string | undefined, answered = ok): void {
    const site = this.sites.get(id);
    if (site === undefined) return;
    site.lastCheck = { ok, answered: ok || answered, atWallMs: this.clock.wallMs(), detail };
    if (ok && rttSampleMs !== undefined) {
      site.rttMs = site.rttMs === undefined ? rttSampleMs : site.rttMs + rttSmoothing * (rttSampleMs - site.rttMs);
      this.rebuild();
    }
    this.report(id, ok ? 'checkPassed' : 'checkFailed');
    for (const l of this.checkListeners) l(site);
  }

  setDial(id: string, percent: number): boolean {
    assert(percent >= 0 && percent <= 100, 'a dial is a percentage');
    const site = this.sites.get(id);
    if (site === undefined) return false;
    if (site.dial !== percent) this.log.info({ site: id, from: site.dial, to: percent }, 'dial changed');
    site.dial = percent;
    this.rebuild();
    return true;
  }

  countAttempt(site: SiteRuntime): void {
    site.attempts += 1;
  }

  countResponse(site: SiteRuntime, status: number): void {
    site.responses.set(status, (site.responses.get(status) ?? 0) + 1);
    const now = this.clock.monotonicMs();
    site.recent.add(now);
    this.recentTotal.add(now);
  }

  countRetry(from: string, to: string, reason: string): void {
    const key = `${from}|${to}|${reason}`;
    this.retries.set(key, (this.retries.get(key) ?? 0) + 1);
  }

  /** The share of the last seconds' answered requests that this site served, 0..1. */
  recentShare(site: SiteRuntime): number {
    const now = this.clock.monotonicMs();
    const total = this.recentTotal.total(now);
    return total === 0 ? 0 : site.recent.total(now) / total;
  }

  private rebuild(): void {
    this.snapshot = [...this.sites.values()].map((s) => ({
      id: s.id,
      region: s.config.region,
      location: s.config.location,
      index: s.index,
      failoverRank: s.failoverRank,
      weight: s.weight,
      dial: s.dial,
      rttMs: s.rttMs,
      routable: isRoutable(s.health.state),
    }));
  }
}
