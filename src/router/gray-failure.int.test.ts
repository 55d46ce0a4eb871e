// Gray failure with real processes and sockets (issue #16): three stub site processes behind the
// router; `c` owns the `global` table `ledger` and is SIGSTOPped (it accepts connections and never
// answers). `a` and `b` stay healthy, but a write to `ledger` they take waits on their forward to
// the paused owner and comes back late — slowly but validly, 502 `Tandem-Outcome: unknown` — which
// is three times the router's upstream timeout. The router must not eject `a` or `b` for it (else it
// would eject every healthy site and fail open); it must eject `c`, and the requests `c` holds must
// be given up on and, where allowed, repeated elsewhere: no client sees an error on a local table.
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { Agent, request } from 'undici';
import { silentLogger } from '../platform/env.js';
import { realClock, realRandom, realTimers, realTransport } from '../platform/real/real-env.js';
import { startRouter, type RunningRouter } from './index.js';
import { routerTestConfig, sleep, stubSiteScript, waitFor } from './testing/stub-site.js';
import { freePort } from '../cluster/ports.js';

const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) {
    c.kill('SIGCONT');
    c.kill('SIGKILL');
  }
});

/** A stub site process; with `forwardMs`, its writes to `ledger` answer that late (a forward to a paused owner). */
async function spawnStub(id: string, forwardMs: number): Promise<{ id: string; url: string; child: ChildProcess }> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--input-type=module', '-e', stubSiteScript], {
    stdio: ['ignore', 'pipe', 'ignore'],
    env: { ...process.env, STUB_SITE: id, STUB_PORT: String(port), STUB_FORWARD_MS: String(forwardMs) },
  });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  await waitFor(() => out.includes('listening'), 15_000, `stub site ${id} to listen`);
  return { id, url: `http://127.0.0.1:${port}`, child };
}

interface Answer {
  table: string;
  status: number;
  site: string;
  outcome: string | undefined;
  /** The problem type as sent: the site's carry Tandem's URI prefix, the router's do not. */
  type: string | undefined;
  /** when the request was sent (realClock monotonic ms) */
  sentMs: number;
}

describe('gray failure: a paused owner', () => {
  const upstreamTimeoutMs = 300;
  const forwardMs = 3 * upstreamTimeoutMs;
  let router: RunningRouter;
  const transport = realTransport();

  it('ejects the paused site, never the healthy sites that answer its writes late, and hides the pause from local-table traffic', async () => {
    const [a, b, c] = await Promise.all([spawnStub('a', forwardMs), spawnStub('b', forwardMs), spawnStub('c', 0)]);
    router = await startRouter(
      routerTestConfig(
        [a!, b!, c!],
        {
          policy: 'weighted',
          upstreamTimeoutMs,
          forwardedTimeoutMs: 4 * forwardMs,
          healthCheck: { intervalMs: 100, timeoutMs: 300, unhealthyAfter: 2, healthyAfter: 2 },
        },
        { profiles: { pattern: 'local' }, ledger: { pattern: 'global', writeSite: 'c' } },
      ),
      { env: { clock: realClock, timers: realTimers, random: realRandom, transport, log: silentLogger }, dnsListen: null },
    );
    try {
      const agent = new Agent({ connections: 16 });
      const answers: Answer[] = [];
      const errors: string[] = [];
      let running = true;
      const send = async (method: string, table: string, key: string, body?: string) => {
        const sentMs = realClock.monotonicMs();
        try {
          const res = await request(`${router.url}/v1/tables/${table}/items/${key}`, { method: method as 'GET', body, dispatcher: agent });
          const text = await res.body.text();
          let type: string | undefined;
          if (String(res.headers['content-type']).startsWith('application/problem+json')) type = (JSON.parse(text) as { type?: string }).type;
          answers.push({ table, status: res.statusCode, site: String(res.headers['tandem-site']), outcome: res.headers['tandem-outcome'] as string | undefined, type, sentMs });
        } catch (err) {
          errors.push(`${method} ${table}/${key}: ${(err as Error).message}`);
        }
      };
      // closed loops: local-table traffic, and writes to the paused owner's table in their own loops
      const loops = [
        ...Array.from({ length: 3 }, async (_, w) => {
          for (let i = 0; running; i++) {
            await send('PUT', 'profiles', `w${w}-${i % 20}`, JSON.stringify({ i }));
            await send('GET', 'profiles', `w${w}-${i % 20}`);
          }
        }),
        ...Array.from({ length: 3 }, async (_, w) => {
          for (let i = 0; running; i++) await send('PATCH', 'ledger', `acct${w}`, '{"increment":{"n":1}}');
        }),
      ];
      await sleep(300);
      const downSeen = new Set<string>();
      const watch = setInterval(() => {
        for (const [id, s] of Object.entries(router.status().sites)) if (!s.healthy) downSeen.add(id);
      }, 10);
      c!.child.kill('SIGSTOP');
      const pausedAt = realClock.monotonicMs();
      await waitFor(() => !router.status().sites.c!.healthy, 10_000, 'the paused site to be ejected');
      const ejectMs = realClock.monotonicMs() - pausedAt;
      // a and b keep answering ledger writes late for a while: several forward delays
      await sleep(3 * forwardMs);
      running = false;
      await Promise.all(loops);
      clearInterval(watch);
      c!.child.kill('SIGCONT');
      await agent.close();

      expect(ejectMs).toBeLessThan(3_000); // checks: 2 × (100 + 300) ms, plus a loaded machine's slack
      expect([...downSeen]).toEqual(['c']);
      const metrics = await request(`${router.url}/_tandem/router/metrics`);
      const text = await metrics.body.text();
      expect(text).not.toMatch(/tandem_router_health_transitions_total\{site="(a|b)",to="down"/);
      expect(errors).toEqual([]);
      // local tables: every request answered, by a healthy site (PUT and GET held by the paused site were repeated)
      const local = answers.filter((x) => x.table === 'profiles');
      expect(local.length).toBeGreaterThan(20);
      expect(local.filter((x) => x.status >= 500)).toEqual([]);
      // ledger writes at a and b: the site's own late answer reached the client, not a router timeout
      const late = answers.filter((x) => x.table === 'ledger' && x.site !== 'c');
      expect(late.length).toBeGreaterThan(3);
      for (const x of late) expect(x).toMatchObject({ status: 502, outcome: 'unknown', type: 'https://tandem.dev/problems/outcome-unknown' });
      // those held by the paused site itself: given up on (a PATCH may have been applied: unknown);
      // c answered those sent before the pause itself (50 ms: the signal takes effect)
      for (const x of answers.filter((y) => y.table === 'ledger' && y.site === 'c' && y.sentMs > pausedAt + 50)) expect(x).toMatchObject({ status: 502, outcome: 'unknown', type: 'outcome-unknown' });
    } finally {
      await router.stop();
      await transport.close();
    }
  });
});
