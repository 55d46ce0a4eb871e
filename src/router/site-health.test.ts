import { describe, expect, it } from 'vitest';
import { initialSiteHealth, isRoutable, nextSiteHealth, type HealthEvent, type SiteHealth } from './site-health.js';

const t = { unhealthyAfter: 3, healthyAfter: 2, statusFailuresToEject: 3 };
const run = (events: HealthEvent[], from: SiteHealth = initialSiteHealth) => events.reduce((h, e) => nextSiteHealth(h, e, t), from);

describe('site health state machine', () => {
  it('a starting site is routable and the first check decides', () => {
    expect(isRoutable(initialSiteHealth.state)).toBe(true);
    expect(run(['checkPassed']).state).toBe('healthy');
    expect(run(['checkFailed']).state).toBe('down');
  });

  it('goes down only after unhealthyAfter consecutive failed checks (hysteresis)', () => {
    const healthy = run(['checkPassed']);
    expect(run(['checkFailed', 'checkFailed'], healthy).state).toBe('healthy');
    expect(run(['checkFailed', 'checkFailed', 'checkPassed', 'checkFailed', 'checkFailed'], healthy).state).toBe('healthy');
    expect(run(['checkFailed', 'checkFailed', 'checkFailed'], healthy).state).toBe('down');
  });

  it('comes back only after healthyAfter consecutive passing checks', () => {
    const down = run(['checkFailed']);
    expect(run(['checkPassed'], down).state).toBe('down');
    expect(run(['checkPassed', 'checkFailed', 'checkPassed'], down).state).toBe('down');
    expect(run(['checkPassed', 'checkPassed'], down).state).toBe('healthy');
  });

  it('a connection error or timeout of a real request ejects at once', () => {
    expect(run(['checkPassed', 'connectionFailed']).state).toBe('down');
    expect(run(['connectionFailed']).state).toBe('down');
  });

  it('500/502/504 answers eject after statusFailuresToEject in a row; a success in between resets', () => {
    const healthy = run(['checkPassed']);
    expect(run(['requestFailed', 'requestFailed', 'requestSucceeded', 'requestFailed', 'requestFailed'], healthy).state).toBe('healthy');
    expect(run(['requestFailed', 'requestFailed', 'requestFailed'], healthy).state).toBe('down');
  });

  it('requests that reach a down site do not bring it back', () => {
    const down = run(['checkFailed']);
    expect(run(['requestSucceeded', 'requestSucceeded', 'requestSucceeded'], down).state).toBe('down');
    // a passive failure while recovering restarts the count of passing checks
    expect(run(['checkPassed', 'connectionFailed', 'checkPassed'], down).state).toBe('down');
  });

  it('every state decides every event', () => {
    const events: HealthEvent[] = ['checkPassed', 'checkFailed', 'requestSucceeded', 'requestFailed', 'connectionFailed'];
    for (const state of ['starting', 'healthy', 'down'] as const) {
      for (const e of events) expect(() => nextSiteHealth({ ...initialSiteHealth, state }, e, t)).not.toThrow();
    }
  });
});
