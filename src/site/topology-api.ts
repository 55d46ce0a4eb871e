// The topology admin API of a site node (CONTRACT.md, "Topology"): GET /v1/topology, and the
// operator actions that move ownership — failover, switchover, evacuate, failback — each with
// --dry-run (the readiness checks and the plan, nothing changed). Only operators move ownership:
// `Authorization: Bearer <adminToken>`, or with no token configured, loopback clients only.
// Every change is kept in the topology history with who asked, why and when.
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { RequestError } from '../core/errors.js';
import { readBody, type Env } from '../platform/env.js';
import { protocolVersion } from '../replication/protocol.js';
import { majority, member, units, voters, type Topology } from '../topology/record.js';
import { additionRefusals, memberIdPattern, removalRefusals } from '../topology/members.js';
import type { MovePlan, TopologyService } from '../topology/topology-service.js';
import type { SiteNode } from './site-node.js';

export interface TopologyApiDeps {
  env: Env;
  node: SiteNode;
  topology: TopologyService;
  send: (reply: FastifyReply, error: RequestError) => unknown;
}

export interface ReadinessCheck {
  name: string;
  ok: boolean;
  detail: string;
}

/** How long an operator action waits for the new owners to be installed. */
const actionWaitMs = 30_000;

export function topologyView(topology: TopologyService): object {
  const t = topology.record();
  const leases: Record<string, { validForMs: number }> = {};
  const own = topology.leaseRemainingMs();
  if (own > 0) leases[topology.siteId] = { validForMs: Math.round(own) };
  return {
    epoch: t.epoch,
    members: t.members.map((m) => ({ id: m.id, kind: m.kind, state: m.state, ...(m.url ? { url: m.url } : {}) })),
    owners: t.owners,
    homes: t.homes,
    leases,
    cuts: t.cuts.slice(-100),
    ...(t.targets ? { targets: t.targets } : {}),
    ...(t.handover ? { handover: t.handover } : {}),
    history: t.history.slice(-50),
  };
}

export function registerTopologyRoutes(app: FastifyInstance, deps: TopologyApiDeps): void {
  const { node, topology, env } = deps;
  const config = node.config;

  app.get('/v1/topology', async (req) => {
    const q = req.query as Record<string, string | undefined>;
    const view = topologyView(topology) as Record<string, unknown>;
    if (q.history !== undefined) view.history = topology.record().history;
    return view;
  });

  const authorize = (req: FastifyRequest): string => {
    const token = config.adminToken;
    if (token !== undefined) {
      const got = /^Bearer (.+)$/.exec(String(req.headers.authorization ?? ''))?.[1];
      const ok = got !== undefined && got.length === token.length && timingSafeEqual(Buffer.from(got), Buffer.from(token));
      if (!ok) throw new RequestError(401, 'unauthorized', 'Unauthorized', 'topology changes need Authorization: Bearer <adminToken> (set TANDEM_ADMIN_TOKEN for the CLI)');
    } else if (!isLoopback(req.ip)) {
      throw new RequestError(401, 'unauthorized', 'Unauthorized', 'no adminToken is configured: only loopback clients may change the topology');
    }
    const operator = String(req.headers['tandem-operator'] ?? '').slice(0, 64);
    return operator !== '' ? `${operator}@${req.ip}` : `operator@${req.ip}`;
  };

  const body = (req: FastifyRequest): Record<string, unknown> => {
    const b = req.body;
    if (b === undefined) return {};
    if (b === null || typeof b !== 'object' || Array.isArray(b)) throw RequestError.badRequest('body: expected a JSON object', [{ path: 'body', message: 'expected an object' }]);
    return b as Record<string, unknown>;
  };
  const str = (b: Record<string, unknown>, name: string, required = false): string | undefined => {
    const v = b[name];
    if (v === undefined) {
      if (required) throw RequestError.badRequest(`body.${name}: required`, [{ path: `body.${name}`, message: 'required' }]);
      return undefined;
    }
    if (typeof v !== 'string' || v.length === 0 || v.length > 256) throw RequestError.badRequest(`body.${name}: expected a string`, [{ path: `body.${name}`, message: 'expected a string' }]);
    return v;
  };
  const knownSite = (id: string, path: string) => {
    const m = member(topology.record(), id);
    if (m === undefined || m.kind !== 'site') throw RequestError.badRequest(`${path}: ${id} is not a data site of this cluster`, [{ path, message: 'unknown site' }]);
  };
  const knownOwnedTable = (name: string) => {
    const t = config.tables[name];
    if (t === undefined) throw RequestError.badRequest(`body.table: unknown table ${name}`, [{ path: 'body.table', message: 'unknown table' }]);
    if (t.pattern === 'local') throw RequestError.badRequest(`body.table: ${name} is a local table: any site writes it, there is nothing to move`, [{ path: 'body.table', message: 'local table' }]);
  };

  /** Readiness of `target` to own units: healthy, caught up, knows every table, same protocol, a majority remains. */
  async function readiness(target: string, leaving?: string): Promise<ReadinessCheck[]> {
    const checks: ReadinessCheck[] = [];
    const rec = topology.record();
    const m = member(rec, target);
    checks.push({ name: 'member-active', ok: m?.state === 'active', detail: m ? `${target} is ${m.state}` : `${target} is not a member` });
    const url = m?.url ?? config.sites.find((s) => s.id === target)?.url;
    let status: { protocol?: number; tables?: string[]; peers?: Record<string, { lagEntries: number }> } | undefined;
    let ready = false;
    let why = 'unreachable';
    if (url !== undefined) {
      try {
        const r = await get(env, `${url}/ready`);
        ready = r.status === 200;
        why = ready ? 'ready' : String((r.json as { reason?: string } | undefined)?.reason ?? `answered ${r.status}`);
        const s = await get(env, `${url}/v1/status`);
        if (s.status === 200) status = s.json as typeof status;
      } catch (e) {
        why = `unreachable (${(e as Error).message})`;
      }
    }
    checks.push({ name: 'healthy', ok: ready, detail: `${target}: ${why}` });
    const lag = status?.peers ? Math.max(0, ...Object.values(status.peers).map((p) => p.lagEntries)) : undefined;
    checks.push({ name: 'caught-up', ok: lag !== undefined && lag <= 100, detail: lag === undefined ? 'unknown' : `${target} lags its peers by at most ${lag} entries` });
    const missing = status?.tables ? Object.keys(config.tables).filter((t) => !status!.tables!.includes(t)) : undefined;
    checks.push({ name: 'knows-every-table', ok: missing !== undefined && missing.length === 0, detail: missing === undefined ? 'unknown' : missing.length === 0 ? 'every table is known' : `${target} does not know ${missing.join(', ')}` });
    checks.push({ name: 'same-protocol', ok: status?.protocol === protocolVersion, detail: `${target} speaks ${status?.protocol ?? 'unknown'}, this site ${protocolVersion}` });
    const vs = voters(rec).filter((v) => v !== leaving);
    const need = majority(voters(rec).length);
    checks.push({ name: 'majority-remains', ok: vs.length >= need, detail: `${vs.length} voters remain of ${voters(rec).length}; a change needs ${need}` });
    return checks;
  }

  async function act(reply: FastifyReply, dryRun: boolean, plan: MovePlan[], checks: ReadinessCheck[], run: () => Promise<Topology>) {
    const refused = checks.filter((c) => !c.ok);
    if (dryRun || refused.length > 0) {
      reply.code(dryRun && refused.length === 0 ? 200 : 409);
      return { ok: refused.length === 0, dryRun, plan, checks, epoch: topology.epoch(), ...(refused.length > 0 ? { refused: refused.map((c) => `${c.name}: ${c.detail}`) } : {}) };
    }
    try {
      const rec = await run();
      return { ok: true, plan, checks, epoch: rec.epoch, topology: topologyView(topology) };
    } catch (e) {
      reply.code(409);
      return { ok: false, plan, checks, epoch: topology.epoch(), refused: [(e as Error).message] };
    }
  }

  app.post('/v1/admin/failover', async (req, reply) => {
    const by = authorize(req);
    const b = body(req);
    const table = str(b, 'table');
    const site = str(b, 'site');
    const to = str(b, 'to');
    const why = str(b, 'why') ?? (b.force === true ? 'operator forced failover' : 'operator failover');
    const dryRun = b.dryRun === true;
    if (b.force !== undefined && typeof b.force !== 'boolean') throw RequestError.badRequest('body.force: expected a boolean', [{ path: 'body.force', message: 'expected a boolean' }]);
    if ((table === undefined) === (site === undefined)) throw RequestError.badRequest('body: give exactly one of table or site', [{ path: 'body', message: 'table or site' }]);
    if (table !== undefined) knownOwnedTable(table);
    if (site !== undefined) knownSite(site, 'body.site');
    if (to !== undefined) knownSite(to, 'body.to');
    const args = { ...(table ? { table } : {}), ...(site ? { site } : {}), ...(to ? { to } : {}) };
    if (b.force === true) return forcedFailover(reply, args, { by, why }, dryRun, str(b, 'confirm'));
    const plan = topology.planFailover(args);
    if (plan.length === 0) return { ok: true, plan, checks: [], epoch: topology.epoch(), detail: 'nothing to move' };
    const targets = [...new Set(plan.map((m) => m.to))];
    const checks: ReadinessCheck[] = [];
    for (const t of targets) {
      if (t === '(none)') checks.push({ name: 'target', ok: false, detail: 'no serving site is left to take these units' });
      else for (const c of await readiness(t, site)) checks.push({ ...c, name: `${t}: ${c.name}` });
    }
    // a change needs a majority of the voters answering now, not only on paper
    const vs = voters(topology.record());
    const answering = await topology.reachableVoters();
    checks.push({
      name: 'majority-reachable',
      ok: answering.length >= majority(vs.length),
      detail: `${answering.length} of ${vs.length} voters answer (${answering.join(', ') || 'none'}); a change needs ${majority(vs.length)}${answering.length >= majority(vs.length) ? '' : ': without a majority only failover --force can move ownership (split-brain risk)'}`,
    });
    return act(reply, dryRun, plan, checks, async () => {
      // degradedDurability: allow — a failed site given up by the operator stops counting in quorums
      if (site !== undefined && config.topology.degradedDurability === 'allow' && !topology.isAliveAtMajority(site)) await topology.setMemberState(site, 'down', { by, why });
      return topology.failover(plan, { by, why }, actionWaitMs);
    });
  });

  /**
   * `failover --force` (topology/forced.ts): the plan (members marked down, moves, the cut it lowers,
   * what may be dropped, the split-brain risk) always; the forced epoch only with `confirm` equal to
   * the cluster's name, typed by the operator.
   */
  async function forcedFailover(reply: FastifyReply, args: { table?: string; site?: string; to?: string }, who: { by: string; why: string }, dryRun: boolean, confirm: string | undefined) {
    if (!dryRun && confirm !== config.cluster)
      throw RequestError.badRequest(`body.confirm: a forced failover needs the cluster's name typed as confirmation ("${config.cluster}"); run it with dryRun first to see the risk`, [
        { path: 'body.confirm', message: `expected the cluster name` },
      ]);
    try {
      const r = await topology.forceFailover(args, who, { dryRun, waitMs: actionWaitMs });
      const refused = r.refused;
      if (refused.length > 0 || dryRun) reply.code(refused.length > 0 ? 409 : 200);
      const dropped = r.installedCut === undefined ? r.plan.dropped : r.plan.dropped.map((d) => ({ ...d, cutSeq: r.installedCut!.find((c) => c.origin === d.origin)?.seq ?? d.cutSeq }));
      return {
        ok: refused.length === 0,
        dryRun,
        forced: true,
        epoch: r.topology?.epoch ?? topology.epoch(),
        plan: r.plan.moves,
        down: r.plan.down,
        votersAfter: r.plan.votersAfter,
        forcedEpoch: r.plan.epoch,
        cut: r.installedCut ?? r.plan.cut,
        dropped: dropped.filter((d) => d.heardSeq === undefined || d.heardSeq > d.cutSeq),
        risk: r.plan.risk,
        ...(refused.length > 0 ? { refused } : {}),
        ...(r.topology ? { topology: topologyView(topology) } : {}),
      };
    } catch (e) {
      reply.code(409);
      return { ok: false, forced: true, epoch: topology.epoch(), refused: [(e as Error).message] };
    }
  }

  app.post('/v1/admin/switchover', async (req, reply) => {
    const by = authorize(req);
    const b = body(req);
    const table = str(b, 'table', true)!;
    const to = str(b, 'to', true)!;
    knownOwnedTable(table);
    knownSite(to, 'body.to');
    const plan = topology.planFailover({ table, to });
    const checks = await readiness(to);
    return act(reply, b.dryRun === true, plan, checks, () => topology.switchover(plan, { by, why: str(b, 'why') ?? 'operator switchover' }, actionWaitMs));
  });

  app.post('/v1/admin/evacuate', async (req, reply) => {
    const by = authorize(req);
    const b = body(req);
    const site = str(b, 'site', true)!;
    knownSite(site, 'body.site');
    const plan = topology.planFailover({ site }).filter((m) => m.from === site);
    const checks: ReadinessCheck[] = [];
    for (const t of new Set(plan.map((m) => m.to))) {
      if (t === '(none)') checks.push({ name: 'target', ok: false, detail: 'no other serving site can take its units' });
      else for (const c of await readiness(t)) checks.push({ ...c, name: `${t}: ${c.name}` });
    }
    return act(reply, b.dryRun === true, plan, checks, async () => {
      const who = { by, why: str(b, 'why') ?? `evacuate ${site}` };
      await topology.setMemberState(site, 'draining', who);
      if (plan.length > 0) await topology.switchover(plan, who, actionWaitMs);
      return topology.setMemberState(site, 'evacuated', who);
    });
  });

  app.post('/v1/admin/failback', async (req, reply) => {
    const by = authorize(req);
    const b = body(req);
    const site = str(b, 'site', true)!;
    knownSite(site, 'body.site');
    const rec = topology.record();
    // what the site owned in the config (epoch 0) and owns no more
    const plan: MovePlan[] = units(rec)
      .filter((u) => rec.changes.some((c) => c.epoch === 0 && c.unit === u.unit && c.owner === site) && u.owner !== site)
      .map((u) => ({ unit: u.unit, from: u.owner, to: site }));
    const checks = await readiness(site);
    // an evacuated site is not active until failback: judge it by the rest
    const relaxed = checks.map((c) =>
      (c.name === 'member-active' && /is (draining|evacuated|down)/.test(c.detail)) || (c.name === 'healthy' && /(draining|evacuated)/.test(c.detail)) ? { ...c, ok: true } : c,
    );
    return act(reply, b.dryRun === true, plan, relaxed, async () => {
      const who = { by, why: str(b, 'why') ?? `failback ${site}` };
      await topology.setMemberState(site, 'active', who);
      if (plan.length > 0) await topology.switchover(plan, who, actionWaitMs);
      return topology.record();
    });
  });
  // membership online (topology/members.ts): add a joining site, remove a site with a final cut
  app.post('/v1/admin/members', async (req, reply) => {
    const by = authorize(req);
    const b = body(req);
    const id = str(b, 'id', true)!;
    const url = str(b, 'url', true)!;
    const region = str(b, 'region');
    if (!memberIdPattern.test(id)) throw RequestError.badRequest(`body.id: expected [a-z0-9-]{1,32}, got "${id.slice(0, 40)}"`, [{ path: 'body.id', message: 'expected [a-z0-9-]{1,32}' }]);
    if (!isHttpUrl(url)) throw RequestError.badRequest(`body.url: expected an http(s) URL, got "${url.slice(0, 80)}"`, [{ path: 'body.url', message: 'expected an http(s) URL' }]);
    const checks = additionRefusals(topology.record(), id, url);
    const plan: MovePlan[] = [];
    return act(reply, b.dryRun === true, plan, checks, () => topology.addMember({ id, url, ...(region !== undefined ? { region } : {}) }, { by, why: str(b, 'why') ?? `add ${id}` }));
  });

  app.delete('/v1/admin/members/:id', async (req, reply) => {
    const by = authorize(req);
    const id = (req.params as { id: string }).id;
    const q = req.query as Record<string, string | undefined>;
    const b = req.body === undefined || req.body === null ? {} : body(req);
    const dryRun = b.dryRun === true || q.dryRun === 'true' || q['dry-run'] !== undefined;
    if (!memberIdPattern.test(id)) throw RequestError.badRequest(`id: expected [a-z0-9-]{1,32}, got "${id.slice(0, 40)}"`, [{ path: 'id', message: 'expected [a-z0-9-]{1,32}' }]);
    if (member(topology.record(), id) === undefined) throw RequestError.notFound(`no member ${id} in topology epoch ${topology.epoch()}`);
    const checks = removalRefusals(topology.record(), id);
    return act(reply, dryRun, [], checks, () => topology.removeMember(id, { by, why: str(b, 'why') ?? q.why?.slice(0, 256) ?? `remove ${id}` }, actionWaitMs));
  });
}

function isHttpUrl(u: string): boolean {
  try {
    const p = new URL(u);
    return (p.protocol === 'http:' || p.protocol === 'https:') && p.pathname === '/' && p.search === '';
  } catch {
    return false;
  }
}

function isLoopback(ip: string): boolean {
  return ip === '127.0.0.1' || ip === '::1' || ip === '::ffff:127.0.0.1' || ip.startsWith('127.');
}

async function get(env: Env, url: string): Promise<{ status: number; json: unknown }> {
  const ac = new AbortController();
  const timer = env.timers.after(2_000, () => ac.abort(new Error('timeout')));
  try {
    const res = await env.transport.request({ method: 'GET', url, headers: {}, signal: ac.signal });
    const bytes = await readBody(res.body, 1 << 20);
    let json: unknown;
    try {
      json = JSON.parse(Buffer.from(bytes).toString('utf8'));
    } catch {
      json = undefined;
    }
    return { status: res.status, json };
  } finally {
    timer.cancel();
  }
}
