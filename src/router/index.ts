// The global router (issue 4): an HTTP reverse proxy and an authoritative DNS server that send
// each client to the best healthy site under the configured policies. `startRouter` runs one in
// process (for `tandem router`, `tandem up`, tests and drills).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ClusterConfig, SiteConfig } from '../config/schema.js';
import { ConfigError } from '../config/load.js';
import type { PolicyName } from '../config/router-schema.js';
import type { Env } from '../platform/env.js';
import { realEnv } from '../platform/real/real-env.js';
import { limits } from '../limits.js';
import { adminPrefix, handleAdmin, routerStatus, type RouterStatus } from './admin-api.js';
import { answerDnsQuery, type DnsSite, type DnsZone } from './dns-answer.js';
import { DnsServer } from './dns-server.js';
import { Geolocator } from './geolocation.js';
import { HealthChecker } from './health-checker.js';
import { HttpProxy, sendProblem, UpstreamPools } from './http-proxy.js';
import { policyChain, rankSites } from './policies.js';
import { routerMetrics } from './router-metrics.js';
import { SiteTable, type SiteRuntime } from './site-table.js';

export type { RouterStatus } from './admin-api.js';
export type { SiteView, RouteRequest, Ranking } from './policies.js';

/** How often a stopping router looks whether its in-flight requests are done. */
const drainPollMs = 20;

export interface RouterOptions {
  /** Clock, timers, random, transport (health checks) and log. Default: a real Env, closed on stop. */
  env?: Env;
  /** This router's id, in status and metrics. Default `router`. */
  id?: string;
  /** Overrides `router.listen` (`127.0.0.1:0` for a free port). */
  listen?: string;
  /** Overrides `router.dns.listen`; `null` turns DNS off. */
  dnsListen?: string | null;
  /** Longest wait for in-flight requests on stop. Default `limits.shutdownDrainMsMax`. */
  drainMsMax?: number;
}

export interface RunningRouter {
  /** `http://host:port` of the HTTP proxy. */
  url: string;
  /** Where DNS answers (UDP and TCP), when configured. */
  dnsAddress: { host: string; port: number } | undefined;
  /** The DNS zone served, when configured. */
  dnsZone: string | undefined;
  status(): RouterStatus;
  setDial(siteId: string, percent: number): boolean;
  /** Adopts a new site list: checks of removed sites stop; new ones are checked at once (routed by config order meanwhile). */
  updateSites(sites: readonly SiteConfig[]): Promise<void>;
  /** Stops accepting, lets in-flight requests finish (bounded), then closes everything. */
  stop(): Promise<void>;
}

export function splitHostPort(listen: string): { host: string; port: number } {
  const m = /^\[([0-9a-fA-F:]+)\]:(\d+)$/.exec(listen) ?? /^([^:]+):(\d+)$/.exec(listen);
  if (!m) throw new ConfigError([`router.listen: expected host:port, got ${listen}`], 'router');
  return { host: m[1]!, port: Number(m[2]) };
}

function hostForUrl(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** Site references inside `router:` must name configured sites (or regions, where allowed). */
export function validateRouterReferences(config: ClusterConfig): void {
  const ids = new Set(config.sites.map((s) => s.id));
  const names = new Set([...ids, ...config.sites.flatMap((s) => (s.region === undefined ? [] : [s.region]))]);
  const r = config.router;
  const problems: string[] = [];
  for (const id of Object.keys(r.weights)) if (!ids.has(id)) problems.push(`router.weights.${id}: unknown site ${id}`);
  for (const id of Object.keys(r.dials)) if (!ids.has(id)) problems.push(`router.dials.${id}: unknown site ${id}`);
  r.failoverOrder.forEach((id, i) => {
    if (!ids.has(id)) problems.push(`router.failoverOrder.${i}: unknown site ${id}`);
  });
  if (r.geolocation.defaultSite !== undefined && !ids.has(r.geolocation.defaultSite))
    problems.push(`router.geolocation.defaultSite: unknown site ${r.geolocation.defaultSite}`);
  for (const [range, target] of Object.entries(r.geolocation.cidrs))
    if (!names.has(target)) problems.push(`router.geolocation.cidrs.${range}: unknown site or region ${target}`);
  for (const [code, target] of Object.entries(r.geolocation.countries))
    if (!names.has(target)) problems.push(`router.geolocation.countries.${code}: unknown site or region ${target}`);
  if (problems.length > 0) throw new ConfigError(problems, 'config');
}

function dnsSiteOf(site: SiteRuntime): DnsSite {
  return { id: site.id, hostname: site.target.hostname, port: site.target.port };
}

export async function startRouter(config: ClusterConfig, options: RouterOptions = {}): Promise<RunningRouter> {
  validateRouterReferences(config);
  const ownedEnv = options.env === undefined ? realEnv() : undefined;
  const env: Env = options.env ?? ownedEnv!;
  const routerId = options.id ?? 'router';
  const log = env.log.child({ component: 'router', router: routerId });
  const rc = config.router;
  const chain: readonly PolicyName[] = policyChain(rc.policy);

  const geolocator = Geolocator.fromConfig(log, rc.geolocation);
  const table = new SiteTable(config.sites, rc, env.clock, log);
  const pools = new UpstreamPools(rc);
  const tables = new Map(Object.entries(config.tables).map(([name, t]) => [name, { owned: t.pattern !== 'local', durability: t.durability }] as const));
  const proxy = new HttpProxy({ ...env, log }, rc, table, pools, geolocator, chain, tables);
  table.onCheck((site) => proxy.siteChecked(site));
  const checker = new HealthChecker(env, rc.healthCheck, table);
  const metrics = routerMetrics(table, routerId);
  let firstRoundDone = false;
  const adminContext = {
    table,
    routerId,
    policy: chain,
    failOpen: rc.failOpen,
    adminToken: rc.adminToken,
    metrics,
    isReady: () => firstRoundDone,
  };

  // A starting router is not blind: it checks every site once before it takes requests.
  await checker.start();
  firstRoundDone = true;

  const server: Server = createServer((req, res) => {
    if (req.url !== undefined && req.url.startsWith(adminPrefix)) {
      handleAdmin(adminContext, req, res).catch((err: unknown) => {
        log.error({ err: (err as Error).message }, 'router admin request failed');
        sendProblem(res, { type: 'internal', title: 'Internal error', status: 500, detail: 'the router could not answer' });
      });
      return;
    }
    proxy.handle(req, res);
  });
  server.keepAliveTimeout = 65_000;
  const { host, port } = splitHostPort(options.listen ?? rc.listen);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await checker.stop();
    await pools.close();
    await ownedEnv?.close();
    throw err;
  }
  const bound = server.address() as AddressInfo;
  const url = `http://${hostForUrl(host)}:${bound.port}`;

  let dns: DnsServer | undefined;
  let dnsZone: string | undefined;
  const dnsListen = options.dnsListen === undefined ? rc.dns?.listen : options.dnsListen ?? undefined;
  if (rc.dns !== undefined && dnsListen !== undefined) {
    const dnsConfig = rc.dns;
    const dnsHostPort = splitHostPort(dnsListen);
    const usesClientLocation = chain.includes('geolocation');
    const zone: DnsZone = {
      zone: dnsConfig.zone,
      name: dnsConfig.name,
      ttl: dnsConfig.ttl,
      addressesMax: dnsConfig.addressesMax,
      serverHost: dnsHostPort.host,
      allSites: () => table.list().map(dnsSiteOf),
      rank: (clientIp) => {
        const geo = usesClientLocation ? geolocator.locate(clientIp, undefined, undefined) : undefined;
        const ranking = rankSites(table.views(), chain, { geo, home: undefined }, env.random, rc.failOpen);
        const sites = ranking.sites.flatMap((v) => {
          const s = table.get(v.id);
          return s === undefined ? [] : [dnsSiteOf(s)];
        });
        const weights = chain.includes('weighted') ? new Map(ranking.sites.map((v) => [v.id, v.weight * v.dial])) : undefined;
        return { sites, weights };
      },
    };
    dns = new DnsServer({ ...env, log }, (query, clientIp) => answerDnsQuery(query, clientIp, zone, usesClientLocation));
    try {
      await dns.start(dnsHostPort.host, dnsHostPort.port);
    } catch (err) {
      server.close();
      await checker.stop();
      await pools.close();
      await ownedEnv?.close();
      throw err;
    }
    dnsZone = dnsConfig.zone;
  }
  log.info({ url, dns: dns?.address, policy: chain }, 'router listening');

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      log.info({ inFlight: proxy.inFlight }, 'router stopping');
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const drainMsMax = options.drainMsMax ?? limits.shutdownDrainMsMax;
      const started = env.clock.monotonicMs();
      while (proxy.inFlight > 0 && env.clock.monotonicMs() - started < drainMsMax) {
        await env.timers.sleep(drainPollMs);
        server.closeIdleConnections();
      }
      server.closeAllConnections();
      await Promise.all([closed, dns?.stop(), checker.stop()]);
      await pools.close();
      await ownedEnv?.close();
      log.info({}, 'router stopped');
    })();
    return stopping;
  };

  return {
    url,
    dnsAddress: dns?.address,
    dnsZone,
    status: () => routerStatus(table, routerId, chain, rc.failOpen, firstRoundDone),
    setDial: (siteId, percent) => table.setDial(siteId, percent),
    async updateSites(sites) {
      const { removed } = table.replaceSites(sites);
      await Promise.all(removed.map((id) => checker.stopSite(id)));
      await checker.start();
      await pools.retain(new Set(table.list().map((s) => s.target.origin)));
    },
    stop,
  };
}
