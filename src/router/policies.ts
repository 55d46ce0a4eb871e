// Routing policies: pure functions that order the sites for one request (HTTP or DNS). The first
// site is the choice; the rest, in order, are where retries go. Policies combine as a chain: each
// gives every site a key (lower is better) and later policies break the ties of earlier ones, with
// config order last. Dials: under `weighted` they scale the weights; under every other chain a
// site with dial d takes d% of the traffic the chain sends it and the rest spills to the next
// site — the Global Accelerator traffic dial.
import { assert, unreachable } from '../platform/assert.js';
import type { PolicyName } from '../config/router-schema.js';
import type { Random } from '../platform/env.js';
import type { ClientGeo } from './geolocation.js';

/** What a policy may know about a site: config plus the router's local measurements. */
export interface SiteView {
  id: string;
  region: string | undefined;
  location: { lat: number; lon: number } | undefined;
  /** Position in the config's site list. */
  index: number;
  /** Position in the `failover` order. */
  failoverRank: number;
  weight: number;
  /** 0..100 */
  dial: number;
  /** Smoothed RTT of health checks; undefined until measured. */
  rttMs: number | undefined;
  routable: boolean;
}

/** What a policy may know about a request. */
export interface RouteRequest {
  /** Where the client is, as far as geolocation can tell (computed once per request). */
  geo: ClientGeo | undefined;
  /** The home site named by the affinity header or cookie: a site id or region. */
  home: string | undefined;
}

export type PolicyKey = (site: SiteView, request: RouteRequest, random: Random) => number;

const unmeasuredRttMs = 1e9;
const earthRadiusKm = 6371;

function matchesSite(site: SiteView, name: string): boolean {
  return site.id === name || site.region === name;
}

export function distanceKm(a: { lat: number; lon: number }, b: { lat: number; lon: number }): number {
  const rad = Math.PI / 180;
  const dLat = (b.lat - a.lat) * rad;
  const dLon = (b.lon - a.lon) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * earthRadiusKm * Math.asin(Math.min(1, Math.sqrt(h)));
}

const halfEarthKm = Math.PI * earthRadiusKm;

export const policyKeys: Record<PolicyName, PolicyKey> = {
  latency: (site) => site.rttMs ?? unmeasuredRttMs,
  failover: (site) => site.failoverRank,
  affinity: (site, request) => (request.home !== undefined && matchesSite(site, request.home) ? 0 : 1),
  // 0: the site the client maps to; 1..2: nearer sites first, when both locations are known;
  // 2: the default site; 3: the rest.
  geolocation: (site, request) => {
    const geo = request.geo;
    if (geo?.target !== undefined && matchesSite(site, geo.target)) return 0;
    if (geo?.lat !== undefined && geo.lon !== undefined && site.location !== undefined) {
      return 1 + Math.min(1, distanceKm({ lat: geo.lat, lon: geo.lon }, site.location) / halfEarthKm) * 0.999;
    }
    if (geo?.defaultSite !== undefined && site.id === geo.defaultSite) return 2;
    return 3;
  },
  // Weighted random order without replacement (Efraimidis–Spirakis): key = -ln(u) / w.
  weighted: (site, _request, random) => {
    const w = site.weight * (site.dial / 100);
    if (w <= 0) return Infinity;
    return -Math.log(1 - random.next()) / w;
  },
};

export function policyChain(policy: PolicyName | readonly PolicyName[]): readonly PolicyName[] {
  const chain = typeof policy === 'string' ? [policy] : policy;
  assert(chain.length > 0, 'a policy chain names at least one policy');
  for (const name of chain) {
    switch (name) {
      case 'latency':
      case 'failover':
      case 'affinity':
      case 'geolocation':
      case 'weighted':
        break;
      default:
        unreachable(name);
    }
  }
  return chain;
}

export interface Ranking {
  /** The sites to try, best first. Empty: nothing may be tried (fail closed). */
  sites: SiteView[];
  /** Whether the ranking ignores health because no site is healthy (fail open). */
  failedOpen: boolean;
}

/**
 * Orders the sites for one request. Candidates are the healthy sites with a dial above 0; drained
 * healthy sites only when no other is healthy; every site when none is healthy and the router fails
 * open; none when it fails closed.
 */
export function rankSites(
  sites: readonly SiteView[],
  chain: readonly PolicyName[],
  request: RouteRequest,
  random: Random,
  failOpen: boolean,
): Ranking {
  let candidates = sites.filter((s) => s.routable && s.dial > 0);
  let failedOpen = false;
  if (candidates.length === 0) candidates = sites.filter((s) => s.routable);
  if (candidates.length === 0) {
    if (!failOpen) return { sites: [], failedOpen: false };
    candidates = [...sites];
    failedOpen = true;
  }
  if (candidates.length === 1) return { sites: candidates, failedOpen };

  const keyed = candidates.map((site) => ({ site, keys: chain.map((name) => policyKeys[name](site, request, random)) }));
  keyed.sort((a, b) => {
    for (let i = 0; i < a.keys.length; i++) {
      const d = a.keys[i]! - b.keys[i]!;
      if (d !== 0 && !Number.isNaN(d)) return d;
    }
    return a.site.index - b.site.index;
  });
  const ordered = keyed.map((k) => k.site);
  if (!chain.includes('weighted')) spillByDial(ordered, random);
  return { sites: ordered, failedOpen };
}

/**
 * Moves to the front the first site (in order) that accepts the request with probability dial/100;
 * when none accepts, the site with the highest dial takes it.
 */
function spillByDial(ordered: SiteView[], random: Random): void {
  let chosen = -1;
  let highest = 0;
  for (let i = 0; i < ordered.length; i++) {
    const dial = ordered[i]!.dial;
    if (dial >= 100 || random.next() * 100 < dial) {
      chosen = i;
      break;
    }
    if (dial > ordered[highest]!.dial) highest = i;
  }
  if (chosen < 0) chosen = highest;
  if (chosen > 0) {
    const [site] = ordered.splice(chosen, 1);
    ordered.unshift(site!);
  }
}
