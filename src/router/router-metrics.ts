// The router's Prometheus metrics. The request path only bumps plain counters in the site table;
// the values are copied into prom-client at scrape time, so a request costs no label hashing.
import { Counter, Gauge, Registry } from 'prom-client';
import type { SiteTable } from './site-table.js';

export function routerMetrics(table: SiteTable, routerId: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ router: routerId });

  new Counter({
    name: 'tandem_router_requests_total',
    help: 'Requests answered through the router, by serving site and status.',
    labelNames: ['site', 'status'],
    registers: [registry],
    collect() {
      this.reset();
      for (const site of table.list()) {
        for (const [status, n] of site.responses) this.inc({ site: site.id, status: String(status) }, n);
      }
    },
  });
  new Counter({
    name: 'tandem_router_upstream_attempts_total',
    help: 'Attempts sent to each site, retries included.',
    labelNames: ['site'],
    registers: [registry],
    collect() {
      this.reset();
      for (const site of table.list()) this.inc({ site: site.id }, site.attempts);
    },
  });
  new Counter({
    name: 'tandem_router_retries_total',
    help: 'Requests retried on another site (a failover of that request), by sites and reason.',
    labelNames: ['from', 'to', 'reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [key, n] of table.retries) {
        const [from, to, reason] = key.split('|');
        this.inc({ from: from!, to: to!, reason: reason! }, n);
      }
    },
  });
  new Counter({
    name: 'tandem_router_health_transitions_total',
    help: 'Site health state changes, by site and new state.',
    labelNames: ['site', 'to'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [key, n] of table.transitions) {
        const [site, to] = key.split('|');
        this.inc({ site: site!, to: to! }, n);
      }
    },
  });
  new Counter({
    name: 'tandem_router_failovers_total',
    help: 'Sites taken out of rotation (health went down), by site.',
    labelNames: ['site'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [key, n] of table.transitions) {
        const [site, to] = key.split('|');
        if (to === 'down') this.inc({ site: site! }, n);
      }
    },
  });
  new Counter({
    name: 'tandem_router_unknown_outcomes_total',
    help: 'Writes answered 502 with Tandem-Outcome: unknown.',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(table.unknownOutcomes);
    },
  });
  new Counter({
    name: 'tandem_router_requests_blamed_total',
    help: 'Requests that no site served and two sites answered with the same 500/502/504: not counted against the sites.',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(table.requestsBlamed);
    },
  });
  new Counter({
    name: 'tandem_router_no_site_total',
    help: 'Requests answered 503 because no site could be tried (fail closed).',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(table.noSiteAvailable);
    },
  });
  new Gauge({
    name: 'tandem_router_site_healthy',
    help: '1 when the site takes new requests, 0 when it is down.',
    labelNames: ['site'],
    registers: [registry],
    collect() {
      this.reset();
      for (const site of table.list()) this.set({ site: site.id }, site.health.state === 'down' ? 0 : 1);
    },
  });
  new Gauge({
    name: 'tandem_router_site_rtt_seconds',
    help: 'Smoothed round-trip time of health checks.',
    labelNames: ['site'],
    registers: [registry],
    collect() {
      this.reset();
      for (const site of table.list()) if (site.rttMs !== undefined) this.set({ site: site.id }, site.rttMs / 1000);
    },
  });
  new Gauge({
    name: 'tandem_router_site_dial_percent',
    help: 'Traffic dial of each site, 0..100.',
    labelNames: ['site'],
    registers: [registry],
    collect() {
      this.reset();
      for (const site of table.list()) this.set({ site: site.id }, site.dial);
    },
  });
  return registry;
}
