// The `router:` section of the cluster config. Owned by the router; the cluster schema embeds it.
// Every key has a default, so `router: {}` (or no section at all) is a working router.
import { isIP } from 'node:net';
import { z } from 'zod';
import { limits } from '../limits.js';

const hostPort = z.string().regex(/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'expected host:port');
const siteRef = z.string().regex(/^[a-z0-9-]{1,32}$/, 'expected a site id [a-z0-9-]{1,32}');
/** A site id or a site's `region` label. */
const siteOrRegion = z.string().min(1).max(64);
const cidr = z
  .string()
  .regex(/^(\d{1,3}(\.\d{1,3}){3}|[0-9a-fA-F:.]+)\/\d{1,3}$/, 'expected a CIDR such as 10.0.0.0/8 or 2001:db8::/32')
  .refine((v) => {
    const [address, bits] = v.split('/') as [string, string];
    const family = isIP(address);
    return family !== 0 && Number(bits) <= (family === 4 ? 32 : 128);
  }, 'expected a CIDR: a valid IPv4 or IPv6 address and a prefix of at most 32 (IPv4) or 128 (IPv6) bits');

export const policyNames = ['latency', 'geolocation', 'weighted', 'failover', 'affinity'] as const;
export type PolicyName = (typeof policyNames)[number];

export const healthCheckSchema = z.strictObject({
  /** Checked on every site node (`site.url`): readiness, not mere liveness. */
  path: z.string().startsWith('/').default('/ready'),
  /** Checked on the site's app when `site.app` differs from `site.url` (calculated health: both must pass). */
  appPath: z.string().startsWith('/').default('/health'),
  intervalMs: z.number().int().min(10).max(60_000).default(250),
  timeoutMs: z.number().int().min(10).max(60_000).default(500),
  unhealthyAfter: z.number().int().min(1).max(100).default(3),
  healthyAfter: z.number().int().min(1).max(100).default(2),
  expectStatus: z.number().int().min(100).max(599).default(200),
  bodyMatch: z.string().optional(),
  /** When set, a site whose `/v1/status` reports a peer lag above this bound counts as unhealthy. */
  lagMsMax: z.number().int().min(1).optional(),
});

export const dnsSchema = z.strictObject({
  listen: hostPort,
  zone: z.string().min(1).default('tandem.local'),
  name: z.string().min(1).default('app'),
  ttl: z.number().int().min(0).max(86_400).default(5),
  /** Most A/AAAA records in one answer, best first (Route 53 answers one; multivalue answers up to 8). */
  addressesMax: z.number().int().min(1).max(8).default(1),
});

export const geolocationSchema = z.strictObject({
  /** Client address ranges to a site id or region: `{ "10.1.0.0/16": "eu-west" }`. Longest prefix wins. */
  cidrs: z.record(cidr, siteOrRegion).default({}),
  /** A header carrying the client's region, site id or country code, believed only from `trustedProxies`. */
  header: z.string().min(1).optional(),
  trustedProxies: z.array(cidr).default(['127.0.0.0/8', '::1/128']),
  /** A MaxMind GeoIP2/GeoLite2 `.mmdb` file (Country or City): country code, then nearest site `location`. */
  mmdb: z.string().min(1).optional(),
  /** ISO country codes (from the header or the mmdb) to a site id or region: `{ "FR": "eu-west" }`. */
  countries: z.record(z.string().min(1), siteOrRegion).default({}),
  /** Where clients of no known location go first. */
  defaultSite: siteRef.optional(),
});

export const affinitySchema = z.strictObject({
  /** Request header naming the home site (a site id or region). */
  header: z.string().min(1).default('tandem-home'),
  /** Cookie naming the home site, when the header is absent. */
  cookie: z.string().min(1).default('tandem_home'),
});

export const retrySchema = z.strictObject({
  /** Attempts per request, the first one included. */
  attemptsMax: z.number().int().min(1).max(10).default(3),
  /** No new attempt starts once this much time has passed since the request arrived. */
  budgetMs: z.number().int().min(1).max(120_000).default(10_000),
  /** Request bodies up to this size are kept so that the request can be retried on another site. */
  bodyBytesMax: z.number().int().min(0).max(64 * 1024 * 1024).default(4 * 1024 * 1024),
  /**
   * Wait before sending again a write a site answered with 503 "nothing was written" (the owner is
   * moving): to another site this long, to a site already tried its Retry-After (within budgetMs).
   */
  backoffMs: z.number().int().min(0).max(10_000).default(limits.backoffMsMin),
});

export const passiveHealthSchema = z.strictObject({
  /**
 * Consecutive 500/502/504 answers that eject a site (refused connections, resets and timeouts of
 * requests the site serves alone eject at once). Not 503, 502 `Tandem-Outcome: unknown`, 504
 * `durability-timeout`: a healthy site answers those when another site fails (router/attribution.ts).
 */
  statusFailuresToEject: z.number().int().min(1).max(1000).default(3),
});

export const routerSchema = z.strictObject({
  listen: hostPort.default('127.0.0.1:7100'),
  /** One policy, or a chain where each later policy breaks the ties of the earlier ones: `[affinity, latency]`. */
  policy: z.union([z.enum(policyNames), z.array(z.enum(policyNames)).min(1).max(5)]).default('latency'),
  dns: dnsSchema.optional(),
  healthCheck: healthCheckSchema.default(() => healthCheckSchema.parse({})),
  passive: passiveHealthSchema.default(() => passiveHealthSchema.parse({})),
  /** When no site is healthy: true routes to every site anyway (Route 53 style), false answers 503. */
  failOpen: z.boolean().default(true),
  /** `failover` policy order; sites not named come after, in config order. Default: config order. */
  failoverOrder: z.array(siteRef).default([]),
  /** `weighted` policy weights per site (default 1 each; 0 takes a site out of weighted rotation). */
  weights: z.record(siteRef, z.number().min(0).max(1000)).default({}),
  /** Initial traffic dials per site, 0..100 (default 100). Changed at run time by `tandem dial`. */
  dials: z.record(siteRef, z.number().min(0).max(100)).default({}),
  affinity: affinitySchema.default(() => affinitySchema.parse({})),
  geolocation: geolocationSchema.default(() => geolocationSchema.parse({})),
  retry: retrySchema.default(() => retrySchema.parse({})),
  /**
   * Longest wait for an upstream's response headers (and between body chunks) for a request the
   * site serves alone: a paused site is ejected by it.
   */
  upstreamTimeoutMs: z.number().int().min(10).max(600_000).default(3_000),
  /**
   * Longest wait for the response headers of a request the site may hand to another site (a write
   * forwarded to its owner, a quorum write, a session or strong read; router/attribution.ts). Longer
   * than the site's own budget — its forward timeout (limits.forwardTimeoutMs) after at most a
   * session read's 2 s wait — so that the site answers first, definitively (503 nothing written,
   * 504, or 502 Tandem-Outcome: unknown). Once the router takes the site for down, such a request
   * waits no longer than upstreamTimeoutMs. Never shorter than upstreamTimeoutMs.
   */
  forwardedTimeoutMs: z.number().int().min(10).max(600_000).default(limits.forwardTimeoutMs + 2_000),
  connectTimeoutMs: z.number().int().min(10).max(60_000).default(1_000),
  /** Pooled keep-alive connections per site. */
  upstreamConnectionsMax: z.number().int().min(1).max(4096).default(256),
  /** When set, `PUT /_tandem/router/dials/*` needs `Authorization: Bearer <adminToken>`. */
  adminToken: z.string().min(16).optional(),
});

export type RouterConfig = z.infer<typeof routerSchema>;
export type HealthCheckConfig = z.infer<typeof healthCheckSchema>;
export type GeolocationConfig = z.infer<typeof geolocationSchema>;
export type DnsConfig = z.infer<typeof dnsSchema>;
