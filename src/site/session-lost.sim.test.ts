// 410 session-lost (ARCHITECTURE.md, "Retries and reads across a move"): a session that wrote to an
// owned table at `local` durability, on an owner that was cut off before the write left it, holds a
// dot the failover voided. Every site that knows the cut answers that session 410 naming the dot,
// instead of serving it a state without its own write; a new session (or an old-style token) is
// served; a quorum-acknowledged write never puts a session at risk.
import { describe, expect, it } from 'vitest';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { SimCluster, type SimSite } from '../cluster/sim-cluster.js';
import { buildSiteServer } from './http-server.js';
import { SiteMetrics } from './metrics.js';
import { decodeSession, encodeSession, joinSession, lostWrites } from './session.js';

const seed = Number(process.env['SEED'] ?? 41);
const leaseMs = 1_000;

describe('session-lost (simulation)', () => {
  it(`a session holding a voided write gets 410 at every site that knows the cut (seed ${seed})`, async () => {
    const cluster = await SimCluster.create({
      seed,
      sites: 3,
      network: { oneWayDelayMsMean: 5, oneWayDelayMsJitter: 3 },
      heartbeatMs: 100,
      topology: { leaseMs, commitBudgetMs: 100, driftRateMax: 0.01 },
      tables: {
        ledger: { pattern: 'global', writeSite: 'us-east', failoverOrder: ['us-east', 'eu-west', 'ap-south'], durability: 'quorum' },
        profiles: { pattern: 'local' },
      },
    });
    const { world } = cluster;
    const apps = new Map<string, FastifyInstance>();
    const app = (s: SimSite) => {
      let a = apps.get(s.id);
      if (a === undefined) {
        a = buildSiteServer({ env: s.env, node: s.node, metrics: new SiteMetrics(), hooks: {
            topology: s.topology!,
            coveringPeer: (token) => s.replicator.coveringPeer(token),
            quorumReachable: (level) => s.replicator.quorumReachable(level),
            awaitDurability: (dot, level) => (level === 'local' ? Promise.resolve(true) : s.replicator.awaitDurability(dot, level)),
          },
        });
        apps.set(s.id, a);
      }
      return a;
    };
    // a request answered while the simulated world runs
    const send = async (site: string, req: InjectOptions): Promise<LightMyRequestResponse> => {
      let res: LightMyRequestResponse | undefined;
      void app(cluster.site(site)!).inject(req).then((r) => (res = r));
      await world.runUntil(() => res !== undefined, { timeoutMs: 10_000 });
      return res!;
    };
    const json = { 'content-type': 'application/json' };
    try {
      await world.runUntil(() => cluster.siteIds.every((id) => cluster.site(id)!.node.originConfirmed), { timeoutMs: 10_000 });
      await world.runFor(2 * leaseMs);
      expect(cluster.site('us-east')!.topology!.record().owners['ledger']).toBe('us-east');

      // a quorum write first: it puts the session at no risk
      const safe = await send('us-east', { method: 'PUT', url: '/v1/tables/ledger/items/safe', headers: json, payload: { v: 0 } });
      expect(safe.statusCode).toBe(200);
      expect(decodeSession(safe.headers['tandem-session'] as string).w).toEqual([]);

      // the owner is cut off; a local-durability write there is acknowledged under its lease and goes nowhere
      world.network.partition({ kind: 'isolate-site', site: 'us-east' });
      const w = await send('us-east', { method: 'PUT', url: '/v1/tables/ledger/items/k', headers: { ...json, 'tandem-durability': 'local', 'tandem-session': safe.headers['tandem-session'] as string }, payload: { v: 1 } });
      expect(w.statusCode).toBe(200);
      const dot = w.json().dot as string;
      const token = w.headers['tandem-session'] as string;
      expect(decodeSession(token).w.map((x) => x.dot)).toEqual([dot]);

      // the lease lapses, eu-west is promoted with a cut below the write
      const knowsCut = (id: string) => cluster.site(id)!.topology!.record().owners['ledger'] === 'eu-west';
      await world.runUntil(() => knowsCut('eu-west') && knowsCut('ap-south'), { timeoutMs: 20_000 });
      const lostAt = await send('eu-west', { method: 'GET', url: '/v1/tables/ledger/items/k', headers: { 'tandem-session': token, 'tandem-consistency': 'session' } });
      expect(lostAt.statusCode).toBe(410);
      expect(lostAt.headers['content-type']).toMatch(/application\/problem\+json/);
      expect(lostAt.json()).toMatchObject({ type: 'https://tandem.dev/problems/session-lost', status: 410, lost: [dot] });
      // a write in the lost session is refused too (nothing written), on any table
      const refused = await send('ap-south', { method: 'PUT', url: '/v1/tables/profiles/items/p', headers: { ...json, 'tandem-session': token }, payload: { v: 1 } });
      expect(refused.statusCode).toBe(410);
      expect((await send('ap-south', { method: 'GET', url: '/v1/tables/profiles/items/p' })).statusCode).toBe(404);
      // without the session, or with the session's vector alone (an old-style token), reads are served
      expect((await send('eu-west', { method: 'GET', url: '/v1/tables/ledger/items/k' })).statusCode).toBe(404);
      const bare = Buffer.from(JSON.stringify(decodeSession(token).v)).toString('base64url');
      expect((await send('eu-west', { method: 'GET', url: '/v1/tables/ledger/items/safe', headers: { 'tandem-session': bare } })).statusCode).toBe(200);

      // healed, the old owner learns the cut and answers the same
      world.network.heal();
      await world.runUntil(() => knowsCut('us-east'), { timeoutMs: 20_000 });
      expect((await send('us-east', { method: 'GET', url: '/v1/tables/profiles/items/x', headers: { 'tandem-session': token } })).statusCode).toBe(410);
    } catch (e) {
      throw new Error(`replay: SEED=${seed} npx vitest run src/site/session-lost.sim.test.ts\n${(e as Error).stack ?? String(e)}`, { cause: e });
    } finally {
      for (const a of apps.values()) await a.close();
      await cluster.stop();
    }
  });

  it('tokens: old bare vectors decode, writes are bounded, malformed writes are 400', () => {
    const s = decodeSession(encodeSession({ v: { 'us-east.a1': 3 }, w: [] }));
    expect(s).toEqual({ v: { 'us-east.a1': 3 }, w: [] });
    expect(decodeSession(Buffer.from('{"us-east.a1":3}').toString('base64url'))).toEqual({ v: { 'us-east.a1': 3 }, w: [] });
    let t = s;
    for (let i = 1; i <= 20; i++) t = joinSession(t, { 'us-east.a1': i }, { dot: `us-east.a1:${i}`, units: ['ledger'], epoch: 2 });
    expect(t.w.map((x) => x.dot)).toEqual([13, 14, 15, 16, 17, 18, 19, 20].map((i) => `us-east.a1:${i}`));
    expect(decodeSession(encodeSession(t))).toEqual(t);
    expect(lostWrites(t, (_u, _o, seq) => seq !== 15)).toEqual(['us-east.a1:15']);
    expect(lostWrites(t, undefined)).toEqual([]);
    for (const bad of [{ v: {}, w: [['nodot', ['ledger'], 1]] }, { v: {}, w: [['us-east.a1:1', [], 1]] }, { v: {}, w: [['us-east.a1:1', ['ledger'], -1]] }, { v: [], w: [] }])
      expect(() => decodeSession(Buffer.from(JSON.stringify(bad)).toString('base64url'))).toThrow(/Tandem-Session/);
  });
});
