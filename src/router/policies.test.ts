import { describe, expect, it } from 'vitest';
import { geolocationSchema } from '../config/router-schema.js';
import { silentLogger } from '../platform/env.js';
import { Geolocator } from './geolocation.js';
import { rankSites, type RouteRequest, type SiteView } from './policies.js';
import { seededRandom } from './testing/stub-site.js';

function view(id: string, over: Partial<SiteView> = {}): SiteView {
  return { id, region: undefined, location: undefined, index: 0, failoverRank: 0, weight: 1, dial: 100, rttMs: undefined, routable: true, ...over };
}
const three = (over: Record<string, Partial<SiteView>> = {}): SiteView[] =>
  ['us-east', 'eu-west', 'ap-south'].map((id, index) => view(id, { index, failoverRank: index, ...over[id] }));
const none: RouteRequest = { geo: undefined, home: undefined };
const ids = (sites: SiteView[]) => sites.map((s) => s.id);
const random = seededRandom(42);

describe('routing policies', () => {
  it('latency picks the lowest smoothed RTT, unmeasured sites last, config order on ties', () => {
    const sites = three({ 'us-east': { rttMs: 30 }, 'eu-west': { rttMs: 2 } });
    expect(ids(rankSites(sites, ['latency'], none, random, true).sites)).toEqual(['eu-west', 'us-east', 'ap-south']);
  });

  it('skips unhealthy sites, falls back to the next healthy one', () => {
    const sites = three({ 'us-east': { rttMs: 30 }, 'eu-west': { rttMs: 2, routable: false } });
    expect(ids(rankSites(sites, ['latency'], none, random, true).sites)).toEqual(['us-east', 'ap-south']);
  });

  it('fails open to every site, or closed to none, when no site is healthy', () => {
    const sites = three({ 'us-east': { routable: false }, 'eu-west': { routable: false }, 'ap-south': { routable: false } });
    const open = rankSites(sites, ['failover'], none, random, true);
    expect(open.failedOpen).toBe(true);
    expect(ids(open.sites)).toEqual(['us-east', 'eu-west', 'ap-south']);
    expect(rankSites(sites, ['failover'], none, random, false).sites).toEqual([]);
  });

  it('failover follows its order', () => {
    const sites = three({ 'us-east': { failoverRank: 2 }, 'eu-west': { failoverRank: 0 }, 'ap-south': { failoverRank: 1 } });
    expect(ids(rankSites(sites, ['failover'], none, random, true).sites)).toEqual(['eu-west', 'ap-south', 'us-east']);
  });

  it('affinity goes to the named home site (id or region) while it is healthy', () => {
    const sites = three({ 'ap-south': { region: 'ap-south-1' } });
    expect(ids(rankSites(sites, ['affinity', 'failover'], { geo: undefined, home: 'eu-west' }, random, true).sites)[0]).toBe('eu-west');
    expect(ids(rankSites(sites, ['affinity', 'failover'], { geo: undefined, home: 'ap-south-1' }, random, true).sites)[0]).toBe('ap-south');
    const homeDown = three({ 'eu-west': { routable: false } });
    expect(ids(rankSites(homeDown, ['affinity', 'failover'], { geo: undefined, home: 'eu-west' }, random, true).sites)).toEqual(['us-east', 'ap-south']);
  });

  it('geolocation maps CIDRs and trusted headers to sites, else the nearest site, else the default', () => {
    const geo = new Geolocator(
      silentLogger,
      geolocationSchema.parse({
        cidrs: { '10.0.0.0/8': 'eu-west', '10.9.0.0/16': 'ap-south-1', '2001:db8::/32': 'us-east' },
        header: 'x-client-region',
        trustedProxies: ['192.168.0.0/16'],
        countries: { JP: 'ap-south' },
        defaultSite: 'ap-south',
      }),
      undefined,
    );
    const sites = three({
      'us-east': { location: { lat: 38.9, lon: -77.4 } },
      'eu-west': { location: { lat: 53.3, lon: -6.3 } },
      'ap-south': { region: 'ap-south-1' },
    });
    const first = (r: RouteRequest) => rankSites(sites, ['geolocation', 'failover'], r, random, true).sites[0]!.id;
    expect(first({ geo: geo.locate('10.1.2.3', '10.1.2.3', undefined), home: undefined })).toBe('eu-west');
    expect(first({ geo: geo.locate('10.9.2.3', '10.9.2.3', undefined), home: undefined })).toBe('ap-south');
    expect(first({ geo: geo.locate('2001:db8::7', '2001:db8::7', undefined), home: undefined })).toBe('us-east');
    // the header is believed only from a trusted proxy
    expect(first({ geo: geo.locate('172.16.0.1', '192.168.1.1', 'JP'), home: undefined })).toBe('ap-south');
    expect(first({ geo: geo.locate('172.16.0.1', '192.168.1.1', 'eu-west'), home: undefined })).toBe('eu-west');
    expect(first({ geo: geo.locate('10.1.2.3', '10.1.2.3', 'us-east'), home: undefined })).toBe('eu-west');
    // unknown client: the default site
    expect(first({ geo: geo.locate('172.16.0.1', '172.16.0.1', undefined), home: undefined })).toBe('ap-south');
    // coordinates known (as from a City mmdb): the nearest site with a location
    const paris = { target: undefined, lat: 48.85, lon: 2.35, defaultSite: 'ap-south' };
    expect(ids(rankSites(sites, ['geolocation'], { geo: paris, home: undefined }, random, true).sites)).toEqual(['eu-west', 'us-east', 'ap-south']);
  });

  it('weighted shares follow weights times dials (seeded, within statistical bounds)', () => {
    const rnd = seededRandom(7);
    const count = (sites: SiteView[], n: number) => {
      const c = new Map<string, number>();
      for (let i = 0; i < n; i++) {
        const id = rankSites(sites, ['weighted'], none, rnd, true).sites[0]!.id;
        c.set(id, (c.get(id) ?? 0) + 1);
      }
      return c;
    };
    const n = 6000;
    const even = count(three(), n);
    for (const id of ['us-east', 'eu-west', 'ap-south']) expect(Math.abs(even.get(id)! / n - 1 / 3)).toBeLessThan(0.03);
    const skewed = count(three({ 'us-east': { weight: 2 }, 'ap-south': { dial: 50 } }), n);
    // weights 2 : 1 : 0.5
    expect(Math.abs(skewed.get('us-east')! / n - 2 / 3.5)).toBeLessThan(0.03);
    expect(Math.abs(skewed.get('ap-south')! / n - 0.5 / 3.5)).toBeLessThan(0.03);
    const drained = count(three({ 'eu-west': { dial: 0 } }), n);
    expect(drained.get('eu-west')).toBeUndefined();
  });

  it('a dial below 100 spills that share of traffic to the next site in any other policy', () => {
    const rnd = seededRandom(11);
    const sites = three({ 'us-east': { rttMs: 1, dial: 30 }, 'eu-west': { rttMs: 2 }, 'ap-south': { rttMs: 3 } });
    let toUsEast = 0;
    const n = 5000;
    for (let i = 0; i < n; i++) if (rankSites(sites, ['latency'], none, rnd, true).sites[0]!.id === 'us-east') toUsEast++;
    expect(Math.abs(toUsEast / n - 0.3)).toBeLessThan(0.03);
  });

  it('a drained site (dial 0) takes traffic only when no other healthy site is left', () => {
    const sites = three({ 'us-east': { dial: 0 }, 'eu-west': { routable: false }, 'ap-south': { routable: false } });
    expect(ids(rankSites(sites, ['failover'], none, random, true).sites)).toEqual(['us-east']);
    const others = three({ 'us-east': { dial: 0 } });
    expect(ids(rankSites(others, ['failover'], none, random, true).sites)).toEqual(['eu-west', 'ap-south']);
  });
});
