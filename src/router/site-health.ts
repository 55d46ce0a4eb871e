// The health of one site as the router sees it: a pure state machine fed by active checks and by
// what happens to proxied requests (passive). No clock, no I/O: the caller passes events in.
//
//                 checkPassed                        checkFailed × unhealthyAfter
//   ┌──────────┐ ───────────► ┌─────────┐ ──────────────────────────────────────► ┌──────┐
//   │ starting │              │ healthy │   connectionFailed (refused, reset,     │ down │
//   └──────────┘ ───────────► └─────────┘   timeout) or requestFailed × N ──────► └──────┘
//        checkFailed, connectionFailed ▲                                            │
//        ──────────────────────────────┼──────────────────────────────────────────► │
//                                      └──────── checkPassed × healthyAfter ────────┘
//
// `starting` counts as routable (config order) until the first check round decides, so a starting
// router is never blind. A site goes `down` from active checks only after `unhealthyAfter`
// consecutive failures (hysteresis), at once on a connection error or timeout of a real request,
// and after `statusFailuresToEject` consecutive 500/502/504 answers. Which events are the site's
// own is decided by the proxy (attribution.ts): 503 is never a failure (every site answers it
// during an owner failover), nor a timeout of a request the site may have handed to another site. Only `healthyAfter` consecutive passing checks bring a
// `down` site back.
import { assert } from '../platform/assert.js';

export type HealthState = 'starting' | 'healthy' | 'down';
export type HealthEvent = 'checkPassed' | 'checkFailed' | 'requestSucceeded' | 'requestFailed' | 'connectionFailed';

export interface HealthThresholds {
  unhealthyAfter: number;
  healthyAfter: number;
  statusFailuresToEject: number;
}

export interface SiteHealth {
  state: HealthState;
  /** Consecutive passing checks (reset by a failing one). */
  passes: number;
  /** Consecutive failing checks (reset by a passing one). */
  failures: number;
  /** Consecutive 500/502/504 answers to proxied requests (reset by any other answer). */
  requestFailures: number;
}

export const initialSiteHealth: SiteHealth = { state: 'starting', passes: 0, failures: 0, requestFailures: 0 };

type Transition = (h: SiteHealth, t: HealthThresholds) => SiteHealth;

const down = (h: SiteHealth): SiteHealth => ({ ...h, state: 'down', passes: 0 });
const stay = (h: SiteHealth): SiteHealth => h;

const transitions: Record<HealthState, Record<HealthEvent, Transition>> = {
  starting: {
    checkPassed: (h) => ({ ...h, state: 'healthy', passes: 1, failures: 0, requestFailures: 0 }),
    checkFailed: (h) => ({ ...down(h), failures: 1 }),
    requestSucceeded: (h) => ({ ...h, requestFailures: 0 }),
    requestFailed: (h, t) =>
      h.requestFailures + 1 >= t.statusFailuresToEject
        ? { ...down(h), requestFailures: h.requestFailures + 1 }
        : { ...h, requestFailures: h.requestFailures + 1 },
    connectionFailed: down,
  },
  healthy: {
    checkPassed: (h) => ({ ...h, passes: h.passes + 1, failures: 0 }),
    checkFailed: (h, t) =>
      h.failures + 1 >= t.unhealthyAfter
        ? { ...down(h), failures: h.failures + 1 }
        : { ...h, passes: 0, failures: h.failures + 1 },
    requestSucceeded: (h) => (h.requestFailures === 0 ? h : { ...h, requestFailures: 0 }),
    requestFailed: (h, t) =>
      h.requestFailures + 1 >= t.statusFailuresToEject
        ? { ...down(h), requestFailures: h.requestFailures + 1 }
        : { ...h, requestFailures: h.requestFailures + 1 },
    connectionFailed: down,
  },
  down: {
    checkPassed: (h, t) =>
      h.passes + 1 >= t.healthyAfter
        ? { state: 'healthy', passes: h.passes + 1, failures: 0, requestFailures: 0 }
        : { ...h, passes: h.passes + 1, failures: 0 },
    checkFailed: (h) => ({ ...h, passes: 0, failures: h.failures + 1 }),
    // Requests that still reach a down site (fail-open, or in flight when it went down) change
    // nothing: only active checks bring it back.
    requestSucceeded: stay,
    requestFailed: stay,
    connectionFailed: (h) => (h.passes === 0 ? h : { ...h, passes: 0 }),
  },
};

export function nextSiteHealth(h: SiteHealth, event: HealthEvent, t: HealthThresholds): SiteHealth {
  assert(t.unhealthyAfter >= 1 && t.healthyAfter >= 1 && t.statusFailuresToEject >= 1, 'health thresholds are at least 1');
  return transitions[h.state][event](h, t);
}

/** Whether new requests may go to a site in this state. */
export function isRoutable(state: HealthState): boolean {
  return state !== 'down';
}
