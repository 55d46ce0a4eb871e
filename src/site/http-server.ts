// The site node's HTTP surface (CONTRACT.md, "Data API"), on fastify: validation, problem+json
// errors, ETags, session tokens, forwarding of owner-only writes, health, status and metrics.
// Domain logic lives in SiteNode; this file translates HTTP to it and back.
import { Readable } from 'node:stream';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { Counter } from 'prom-client';
import { RequestError } from '../core/errors.js';
import { readBody, type Env, type RequestHandler } from '../platform/env.js';
import { classifyUpstreamError } from '../platform/upstream-errors.js';
import { limits } from '../limits.js';
import type { ItemRecord } from '../store/types.js';
import type { ItemOp } from '../core/write.js';
import type { SiteMetrics } from './metrics.js';
import type { TopologyService } from '../topology/topology-service.js';
import { registerTopologyRoutes } from './topology-api.js';
import { protocolVersion } from '../replication/protocol.js';
import { SiteNode, type BatchOp, type Consistency, type Durability, type ReplayedWrite, type WriteOutcome } from './site-node.js';
import { decodeSession, encodeSession, joinSession, lostWrites, type Session, type SessionWrite } from './session.js';
import { rewindItem, validateRewindRequest } from './rewind.js';
import { canonicalVector, siteOfOrigin, type VersionVector } from '../core/vector.js';
import {
  decodeCursor,
  encodeCursor,
  oneOf,
  parseIdempotencyKey,
  parseIfMatch,
  parseIfNoneMatch,
  parseLimit,
  validateBatch,
  validateKey,
  validatePatch,
  validatePut,
} from './validate.js';

export interface PeerStatus {
  connected: boolean;
  lagEntries: number;
  lagMs: number;
}

/** What replication (and later topology) adds to the node's HTTP surface. */
export interface SiteServerHooks {
  peers?: () => Record<string, PeerStatus>;
  /** extra readiness condition: caught up with reachable peers */
  ready?: () => { ready: boolean; reason?: string };
  /** waits until the write `dot` (of any origin) is durable on enough sites for the durability level */
  awaitDurability?: (dot: string, level: Durability) => Promise<boolean>;
  /** whether enough data sites were heard from lately to confirm a write of this durability */
  quorumReachable?: (level: 'quorum' | 'all') => { ok: boolean; heard: number; needed: number };
  /**
   * The data sites quorum writes do not count on now (`down` under `topology.degradedDurability:
   * allow`): a quorum write confirmed meanwhile is answered with `Tandem-Durability: degraded`.
   */
  degradedSites?: () => string[];
  /** a connected peer whose vector covers `token` (a session read this site cannot serve yet goes there) */
  coveringPeer?: (token: VersionVector) => string | undefined;
  /** peer API handler (replication feed, snapshots, repair), mounted under /v1/peer/ */
  peerHandler?: RequestHandler;
  epoch?: () => number;
  /** the topology driver: GET /v1/topology and the operator actions (topology-api.ts) */
  topology?: TopologyService;
  /** where a peer is reached (members added online are not in the config) */
  peerUrl?: (site: string) => string | undefined;
  /** the site's continuous backup (`tandem backup now`, status) */
  backup?: { now(): Promise<unknown>; status(): unknown };
}

export interface SiteServerOptions {
  env: Env;
  node: SiteNode;
  metrics: SiteMetrics;
  hooks?: SiteServerHooks;
  sessionWaitMs?: number;
  /** how long a request forwarded to an owner may take; tests shorten it */
  forwardTimeoutMs?: number;
}

const problemType = (t: string) => `https://tandem.dev/problems/${t}`;
const consistencies = ['eventual', 'session', 'strong'] as const;
const durabilities = ['local', 'quorum', 'all'] as const;
const scanParams = new Set(['prefix', 'start', 'end', 'limit', 'cursor']);
const forwardedHeader = 'tandem-forwarded-by';
const replayedHeader = 'idempotent-replayed';

export function buildSiteServer(options: SiteServerOptions): FastifyInstance {
  const { node, metrics, env } = options;
  const hooks = options.hooks ?? {};
  const sessionWaitMs = options.sessionWaitMs ?? 2_000;
  const forwardTimeoutMs = options.forwardTimeoutMs ?? limits.forwardTimeoutMs;
  const degradedWritesName = 'tandem_degraded_durability_writes_total';
  const degradedWrites =
    (metrics.registry.getSingleMetric(degradedWritesName) as Counter<'level'> | undefined) ??
    new Counter({
    name: degradedWritesName,
    help: 'Quorum (or all) writes confirmed while data sites were down (degradedDurability: allow): at risk, answered with Tandem-Durability: degraded',
    labelNames: ['level'] as const,
    registers: [metrics.registry],
  });
  const app = Fastify({
    logger: false,
    bodyLimit: limits.requestBodyBytesMax,
    routerOptions: { maxParamLength: 4 * limits.keyBytesMax },
    return503OnClosing: true,
    frameworkErrors: (error, _req, reply) =>
      sendProblem(reply, RequestError.badRequest(`malformed request: ${error.message}`, [{ path: 'url', message: error.message }])),
    forceCloseConnections: false,
  });

  app.addHook('onResponse', (req, reply, done) => {
    metrics.requests.inc({ route: req.routeOptions.url ?? 'unmatched', method: req.method, status: String(reply.statusCode) });
    done();
  });

  app.setErrorHandler((error: unknown, req, reply) => {
    if (error instanceof RequestError) return sendProblem(reply, error);
    const e = error as { statusCode?: number; code?: string; message?: string };
    if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
      const status = e.statusCode as RequestError['status'];
      const detail =
        e.code === 'FST_ERR_CTP_BODY_TOO_LARGE'
          ? `request body exceeds ${limits.requestBodyBytesMax} bytes`
          : e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE'
            ? `unsupported Content-Type "${String(req.headers['content-type'] ?? '')}"; send application/json`
            : `malformed request: ${e.message ?? 'invalid'}`;
      return sendProblem(reply, new RequestError(status, (e.code ?? 'bad-request').toLowerCase(), 'Bad request', detail));
    }
    env.log.error({ err: error, url: req.url }, 'internal error');
    return reply
      .code(500)
      .type('application/problem+json')
      .send({ type: problemType('internal'), title: 'Internal error', status: 500, detail: 'internal error; see the site log' });
  });

  app.setNotFoundHandler((req, reply) => {
    const dotKey = /^\/v1\/tables\/[^/?]+\/items\/((?:\.|%2[eE]){1,2})(?:\?|$)/.exec(req.url);
    if (dotKey) return sendProblem(reply, RequestError.badRequest('invalid key: "." and ".." are not valid keys', [{ path: 'key', message: 'reserved key' }]));
    return sendProblem(reply, RequestError.notFound(`no route for ${req.method} ${req.url.split('?')[0]}`));
  });

  // JSON bodies are decoded strictly: invalid UTF-8 is refused, never stored with U+FFFD in its
  // place. An empty body is no body, because many clients send Content-Type: application/json on
  // every request; a route that needs a body says so (validate.ts). A DELETE takes no body, so one
  // sent with it is ignored unread, as most servers do. Fastify's own parser still does the
  // parsing: it refuses __proto__ and constructor.prototype keys.
  const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
  const parseJsonText = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (req, raw: Buffer, done) => {
    if (raw.length === 0 || req.method === 'DELETE') return done(null, undefined);
    let text: string;
    try {
      text = strictUtf8.decode(raw);
    } catch {
      return done(RequestError.badRequest('body: not valid UTF-8', [{ path: 'body', message: 'invalid UTF-8' }]), undefined);
    }
    parseJsonText(req, text, (err, value) => (err ? done(invalidJson(text), undefined) : done(null, value)));
  });

  const siteHeader = (reply: FastifyReply) => reply.header('tandem-site', node.siteId);

  app.addHook('onRequest', (req, reply, done) => {
    siteHeader(reply);
    if (!node.serving && !req.url.startsWith('/health'))
      return done(RequestError.unavailable('not-serving', 'this site is starting or shutting down'));
    done();
  });

  // ---------- health, status, metrics ----------
  app.get('/health', async () => ({ status: 'ok', site: node.siteId }));
  app.get('/ready', async (_req, reply) => {
    const extra = node.originConfirmed ? (hooks.ready?.() ?? { ready: true }) : { ready: false, reason: 'confirming with its peers how much of its origin they hold (no writes until then)' };
    if (!node.serving || !extra.ready) {
      return reply.code(503).send({ ready: false, site: node.siteId, reason: extra.reason ?? 'not serving' });
    }
    return { ready: true, site: node.siteId };
  });
  app.get('/v1/status', async () => ({
    site: node.siteId,
    origin: node.origin,
    epoch: hooks.topology?.epoch() ?? hooks.epoch?.() ?? Math.max(0, node.membership().epoch),
    protocol: protocolVersion,
    tables: [...node.tables.keys()],
    vector: canonicalVector(node.vector()),
    peers: hooks.peers?.() ?? {},
    digests: await node.store.digests(),
    // up to where this site's log is compacted: a site restored below it cannot catch up by log
    logFloor: canonicalVector(node.store.logFloor()),
    ...(hooks.backup ? { backup: hooks.backup.status() } : {}),
  }));
  app.post('/v1/backup/now', async () => {
    if (!hooks.backup) throw RequestError.notFound(`site ${node.siteId} has no backup configured (config backup.target)`);
    return hooks.backup.now();
  });
  app.get('/metrics', async (_req, reply) => {
    reply.type(metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  // ---------- items ----------
  const tableParam = (req: FastifyRequest) => node.table((req.params as { table: string }).table);
  const keyParam = (req: FastifyRequest) => validateKey((req.params as { key: string }).key);
  const sessionOf = (req: FastifyRequest): Session | undefined => {
    const raw = header(req, 'tandem-session');
    if (raw === undefined) return undefined;
    const session = decodeSession(raw);
    assertSessionHolds(session);
    return session;
  };
  /** 410 when a failover voided one of the session's writes (acknowledged at local durability). */
  const assertSessionHolds = (session: Session): void => {
    const topology = hooks.topology;
    const lost = lostWrites(session, topology === undefined ? undefined : (unit, origin, seq, epoch) => topology.counts(unit, origin, seq, epoch));
    if (lost.length > 0)
      throw new RequestError(
        410,
        'session-lost',
        'Session lost',
        `this session's write${lost.length > 1 ? 's' : ''} ${lost.join(', ')} ${lost.length > 1 ? 'were' : 'was'} voided by a failover (acknowledged at local durability, not yet replicated when the owner failed): the session cannot read its own writes any more; start a new session (drop Tandem-Session)`,
        [],
        { lost },
      );
  };

  app.get('/v1/tables/:table/items/:key', async (req, reply) => {
    const table = tableParam(req);
    const key = keyParam(req);
    const consistency = oneOf('Tandem-Consistency', header(req, 'tandem-consistency'), consistencies) ?? 'eventual';
    const session = sessionOf(req);
    const ifNoneMatch = parseIfNoneMatch(header(req, 'if-none-match'), false);
    if (consistency === 'strong') {
      if (table.config.pattern === 'local')
        throw RequestError.badRequest(
          `Tandem-Consistency: strong is not available on table ${table.name} (pattern local: multi-master LWW cannot be linearizable); use a global or partitioned table`,
          [{ path: 'header.tandem-consistency', message: 'strong needs a global or partitioned table' }],
        );
      await node.resolveHomes([{ table: table.name, key }], 'read');
      const owner = node.writeOwner(table, key);
      if (owner !== undefined) return forward(req, reply, owner);
      node.assertStrongReadable(table, key);
    }
    const via = await waitSession(req, consistency, session);
    if (via !== undefined) return forward(req, reply, via, 'session');
    const rec = await node.get(table, key);
    if (consistency === 'strong' && table.config.durability !== 'local') {
      // a strong read of a quorum table shows only quorum-durable states: it waits for the write it
      // would show (still gathering acks) — and answers only while the lease still holds
      const latest = rec?.state.w.d ?? (await node.store.getItem(table.name, key))?.state.w.d;
      if (latest !== undefined && latest !== '' && hooks.awaitDurability !== undefined && !(await hooks.awaitDurability(latest, table.config.durability)))
        throw new RequestError(503, 'durability-timeout', 'Service unavailable', `the latest write of ${key} (${latest}) is not yet ${table.config.durability}-durable: a strong read does not show it; retry`, [], { retryAfterS: 1 });
      // the state read before the wait is the answer: a later write, unacknowledged when this read began, need not show
      node.assertStrongReadable(table, key);
    }
    if (!rec) throw RequestError.notFound(`item ${key} not found in table ${table.name}`);
    if (session !== undefined) reply.header('tandem-session', encodeSession(joinSession(session, rec.state.c)));
    reply.header('etag', `"${rec.version}"`);
    if (ifNoneMatch && (ifNoneMatch.any || ifNoneMatch.versions.includes(rec.version))) return reply.code(304).send();
    return { key, value: rec.value, version: rec.version, origin: rec.origin };
  });

  const writeRoute = (op: (req: FastifyRequest) => ItemOp) => async (req: FastifyRequest, reply: FastifyReply) => {
    const table = tableParam(req);
    const key = keyParam(req);
    const durability = oneOf('Tandem-Durability', header(req, 'tandem-durability'), durabilities) ?? table.config.durability;
    oneOf('Tandem-Consistency', header(req, 'tandem-consistency'), consistencies);
    const session = sessionOf(req);
    const ifMatch = parseIfMatch(header(req, 'if-match'));
    const ifNoneMatch = parseIfNoneMatch(header(req, 'if-none-match'), true);
    const idempotencyKey = parseIdempotencyKey(header(req, 'idempotency-key'));
    const itemOp = op(req);
    const attempt = async (parked: boolean) => {
      await node.resolveHomes([{ table: table.name, key }], 'write');
      const owner = node.writeOwner(table, key);
      // an owner the voters have not heard from for half a lease (paused, dead, cut off) would hold a
      // forward until its timeout (502, outcome unknown): the write is not sent; the loop below waits
      // for the owner to renew or for a failover, and answers 503 (nothing written) if neither comes
      if (owner !== undefined && hooks.topology?.ownerSilent(owner))
        throw new RequestError(503, 'owner-unavailable', 'Service unavailable', `the owner ${owner} of this item has not renewed its lease at a majority of voters for half a lease (paused, down or cut off); nothing was written: retry (a failover moves its units if it stays silent)`, [], { retryAfterS: 1, ownerSilent: true });
      if (owner !== undefined) return forward(req, reply, owner, 'owner', parked);
      await refuseWithoutQuorum(durability);
      const outcome = await node.write(table, key, itemOp, {
        ...(ifMatch !== undefined ? { ifMatch } : {}),
        ...(ifNoneMatch?.any ? { ifNoneMatch: true } : {}),
        ...(durability !== 'local' ? { awaitsAck: true } : {}),
        ...(idempotencyKey !== undefined ? { idempotencyKey } : {}),
      });
      if ('replayed' in outcome) return answerReplay(reply, outcome, durability, session);
      return answerWrite(reply, outcome, durability, session);
    };
    // Ownership in motion (a handover fencing the item here, a new owner renewing its lease or
    // pulling up to its cut, a unit revoked and not yet installed) refuses a write before anything
    // is written; it is tried again for a bounded time, so a planned move costs clients latency, not
    // errors. A handover's parked write then goes to the new owner (never committed here: no duplicate).
    const topology = hooks.topology;
    const forwarded = header(req, forwardedHeader) !== undefined;
    const deadline = env.clock.monotonicMs() + (forwarded ? limits.ownerWaitForwardedMs : node.config.topology.switchoverWaitMs);
    let parked = false;
    // an unreachable owner is tried again with backoff (each try is a connection attempt); a moving
    // or silent one costs nothing to ask again, and a planned move wants the write through promptly
    let unreachableTries = 0;
    for (;;) {
      const epoch = topology?.epoch();
      try {
        return await attempt(parked);
      } catch (e) {
        if (!(e instanceof RequestError && (e.type === 'owner-changed' || e.extra.ownerSilent === true || e.extra.ownerUnreachable === true) && topology !== undefined && epoch !== undefined)) throw e;
        const left = deadline - env.clock.monotonicMs();
        if (left <= 0) throw e;
        if (e.extra.parked === true) {
          parked = true;
          await topology.waitForEpochAfter(epoch, left);
        } else await env.timers.sleep(Math.min(left, e.extra.ownerUnreachable === true ? limits.ownerRetryMs * 2 ** Math.min(unreachableTries++, 3) : limits.ownerRetryMs));
      }
    }
  };

  app.put('/v1/tables/:table/items/:key', writeRoute((req) => validatePut(req.body)));
  app.patch('/v1/tables/:table/items/:key', writeRoute((req) => validatePatch(req.body)));
  app.delete('/v1/tables/:table/items/:key', writeRoute(() => ({ op: 'delete' })));

  app.get('/v1/tables/:table/items', async (req, reply) => {
    const table = tableParam(req);
    const q = req.query as Record<string, string | string[] | undefined>;
    for (const [name, v] of Object.entries(q)) {
      if (!scanParams.has(name))
        throw RequestError.badRequest(`unknown query parameter ${name}; expected ${[...scanParams].join(', ')}`, [
          { path: `query.${name}`, message: 'unknown parameter' },
        ]);
      if (Array.isArray(v)) throw RequestError.badRequest(`query parameter ${name} given twice`, [{ path: `query.${name}`, message: 'repeated' }]);
    }
    const str = (name: string) => q[name] as string | undefined;
    const limit = parseLimit(str('limit'));
    const consistency = oneOf('Tandem-Consistency', header(req, 'tandem-consistency'), consistencies) ?? 'eventual';
    if (consistency === 'strong')
      throw RequestError.badRequest('Tandem-Consistency: strong is not available for scans', [
        { path: 'header.tandem-consistency', message: 'strong scans are not supported' },
      ]);
    const session = sessionOf(req);
    const via = await waitSession(req, consistency, session);
    if (via !== undefined) return forward(req, reply, via, 'session');
    for (const name of ['prefix', 'start', 'end'] as const) {
      const v = str(name);
      if (v !== undefined && Buffer.byteLength(v) > limits.keyBytesMax)
        throw RequestError.badRequest(`${name}: at most ${limits.keyBytesMax} bytes`, [{ path: `query.${name}`, message: 'too long' }]);
    }
    const cursor = str('cursor');
    const items = await node.scan(table, {
      ...(str('start') !== undefined ? { start: str('start')! } : {}),
      ...(str('end') !== undefined ? { end: str('end')! } : {}),
      ...(str('prefix') !== undefined ? { prefix: str('prefix')! } : {}),
      ...(cursor !== undefined ? { after: decodeCursor(cursor, 'scan') } : {}),
      limit,
    });
    if (session !== undefined) reply.header('tandem-session', encodeSession(joinSession(session, node.vector())));
    const last = items[items.length - 1];
    return {
      items: items.map((r) => ({ key: r.key, value: r.value, version: r.version, origin: r.origin })),
      cursor: items.length === limit && last ? encodeCursor(last.key) : null,
    };
  });

  app.post('/v1/batch', async (req, reply) => {
    const ops = validateBatch(req.body);
    const session = sessionOf(req);
    const durability = oneOf('Tandem-Durability', header(req, 'tandem-durability'), durabilities);
    const idempotencyKey = parseIdempotencyKey(header(req, 'idempotency-key'));
    const batchOps: BatchOp[] = ops.map((o) => ({ op: o.itemOp.op, table: node.table(o.table).name, key: o.key, itemOp: o.itemOp }));
    await node.resolveHomes(batchOps, 'write');
    const owners = new Set(ops.map((o) => node.writeOwner(node.table(o.table), o.key) ?? node.siteId));
    if (owners.size > 1 || (owners.size === 1 && !owners.has(node.siteId))) {
      if (owners.size === 1 && !ops.some((o) => node.table(o.table).config.pattern === 'local'))
        return forward(req, reply, [...owners][0]!);
      throw RequestError.badRequest('a batch must not span owners: every item must be writable at one site', [
        { path: 'body.ops', message: `items are owned by ${[...owners].join(', ')}` },
      ]);
    }
    const level = durability ?? strongestDurability(ops.map((o) => node.table(o.table).config.durability));
    await refuseWithoutQuorum(level);
    const outcomes = await node.batch(batchOps, { ...(level !== 'local' ? { awaitsAck: true } : {}), ...(idempotencyKey !== undefined ? { idempotencyKey } : {}) });
    if (!Array.isArray(outcomes)) {
      await ensureDurable({ dot: outcomes.dot, version: outcomes.items[0]!.version, wrote: true }, level, reply);
      reply.header(replayedHeader, 'true');
      reply.header('tandem-session', encodeSession(joinSession(session, { [outcomes.origin]: outcomes.seq })));
      const origin = siteOfOrigin(outcomes.origin);
      return { items: outcomes.items.map((i) => ({ table: i.table, key: i.key, version: i.version, dot: outcomes.dot, origin })) };
    }
    await ensureDurable(outcomeFacts(outcomes[0]!), level, reply);
    ensureAcknowledgeable(outcomes[0]!);
    if (outcomes.length > 0) {
      const s = joinSession(session, outcomes[0]!.record.state.c, voidable(outcomes[0]!, level));
      reply.header('tandem-session', encodeSession(outcomes.reduce((acc, o) => joinSession(acc, o.record.state.c), s)));
    }
    return {
      items: outcomes.map((o) => ({ table: o.record.table, key: o.record.key, version: o.record.version, dot: o.dot, origin: node.siteId })),
    };
  });

  // tandem rewind: one item back to its value at a cut, decided inside the commit (site/rewind.ts)
  app.post('/v1/tables/:table/rewind/:key', async (req, reply) => {
    const table = tableParam(req);
    const key = keyParam(req);
    const body = validateRewindRequest(req.body);
    await node.resolveHomes([{ table: table.name, key }], 'write');
    const owner = node.writeOwner(table, key);
    if (owner !== undefined) return forward(req, reply, owner);
    const answer = await rewindItem(env, node, table, key, body);
    if (answer.dot !== undefined) reply.header('tandem-session', encodeSession(joinSession(sessionOf(req), { [answer.dot.slice(0, answer.dot.lastIndexOf(':'))]: Number(answer.dot.slice(answer.dot.lastIndexOf(':') + 1)) })));
    return answer;
  });

  app.get('/v1/tables/:table/conflicts', async (req) => {
    const table = tableParam(req);
    const q = req.query as Record<string, string | undefined>;
    for (const name of Object.keys(q))
      if (name !== 'cursor' && name !== 'limit')
        throw RequestError.badRequest(`unknown query parameter ${name}; expected cursor, limit`, [{ path: `query.${name}`, message: 'unknown parameter' }]);
    const afterRaw = q.cursor === undefined ? '0' : decodeCursor(q.cursor, 'conflict');
    if (!/^\d{1,15}$/.test(afterRaw)) throw RequestError.badRequest('cursor: not a conflict cursor', [{ path: 'query.cursor', message: 'malformed' }]);
    const limit = parseLimit(q.limit);
    const rows = await node.store.conflicts(table.name, Number(afterRaw), limit);
    const last = rows[rows.length - 1];
    return {
      conflicts: rows.map(({ record: c }) => ({
        key: c.key,
        reason: c.reason ?? 'concurrent',
        field: c.field === '' ? undefined : c.field,
        winner: c.winner,
        loser: { value: c.loser.deleted ? null : c.loser.value, deleted: c.loser.deleted, version: c.loser.version, origin: c.loser.origin, dot: c.loserDot },
        at: new Date(c.atMs).toISOString(),
      })),
      cursor: last ? encodeCursor(String(last.id)) : (q.cursor ?? null),
    };
  });

  if (hooks.topology) registerTopologyRoutes(app, { env, node, topology: hooks.topology, send: sendProblem });

  // ---------- peer API ----------
  if (hooks.peerHandler) {
    const peerHandler = hooks.peerHandler;
    app.addContentTypeParser('application/msgpack', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
    app.all('/v1/peer/*', async (req, reply) => {
      const ac = new AbortController();
      reply.raw.on('close', () => ac.abort());
      const res = await peerHandler({
        method: req.method,
        path: req.url,
        headers: flatHeaders(req.headers),
        body: Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0),
        signal: ac.signal,
      });
      reply.code(res.status);
      for (const [k, v] of Object.entries(res.headers)) reply.header(k, v);
      return reply.send(Readable.from(res.body));
    });
  }

  /**
   * Waits (bounded) until this site covers the session token. If it does not, the read goes to a
   * connected peer that does (returned), unless it was forwarded here already; else 503.
   */
  async function waitSession(req: FastifyRequest, consistency: Consistency, session: Session | undefined): Promise<string | undefined> {
    if (consistency !== 'session' || session === undefined) return undefined;
    if (await node.waitForSession(session.v, sessionWaitMs)) {
      // the wait may have let in a failover's cut that voids a write of this session (its entry then
      // arrives, and is not applied): the read would show the item without it; 410 instead
      assertSessionHolds(session);
      return undefined;
    }
    const covering = header(req, forwardedHeader) === undefined ? hooks.coveringPeer?.(session.v) : undefined;
    if (covering !== undefined) return covering;
    throw sessionUnavailable();
  }

  function sessionUnavailable(detail = `site ${node.siteId} has not yet received this session's writes, nor has a peer it reaches; retry, or reset the session`) {
    return new RequestError(503, 'session-unavailable', 'Session unavailable', detail, [], { retryAfterS: 1 });
  }

  /**
   * Waits for the durability asked. Also when nothing was written (a delete of a tombstone): the
   * answer says the item is deleted at that level, and the tombstone (of any origin) may be on
   * this site alone so far.
   */
  async function ensureDurable(outcome: { dot: string; version: string; wrote: boolean }, level: Durability, reply?: FastifyReply): Promise<void> {
    if (level === 'local') return;
    // the quorum counted over the active sites only: say so (a site may go down or come back during the wait: either counts)
    const degradedBefore = hooks.degradedSites?.() ?? [];
    const ok = hooks.awaitDurability ? await hooks.awaitDurability(outcome.dot, level) : node.config.sites.length === 1;
    if (!ok) {
      const what = outcome.wrote ? `the write was committed at ${siteOfOrigin(outcome.dot.slice(0, outcome.dot.lastIndexOf(':')))}` : `the item was deleted already (by ${outcome.dot})`;
      throw new RequestError(504, 'durability-timeout', 'Durability timeout', `${what} but not confirmed ${level} in time; its outcome is unknown`, [], {
        version: outcome.version,
        dot: outcome.dot,
      });
    }
    const degraded = [...new Set([...degradedBefore, ...(hooks.degradedSites?.() ?? [])])];
    if (degraded.length > 0 && reply !== undefined) {
      reply.header('tandem-durability', 'degraded');
      reply.header('tandem-degraded-sites', degraded.join(','));
      degradedWrites.inc({ level });
    }
  }

  /**
   * A write of owned items is acknowledged only while the owner's lease is still certainly valid
   * once the write became acknowledgeable (after its fsync, or its quorum): a lease that ran out
   * meanwhile may have let a new owner cut the write off. Its outcome is then unknown.
   */
  function ensureAcknowledgeable(outcome: WriteOutcome): void {
    if (node.acknowledgeable(outcome)) return;
    throw new RequestError(504, 'lease-expired', 'Outcome unknown', `the write was committed at ${node.siteId} but its lease expired before it could be acknowledged; its outcome is unknown (a new owner may have cut it off)`, [], {
      version: outcome.record.version,
      dot: outcome.dot,
    });
  }

  /**
   * A quorum (or all) write that could not be confirmed is refused before it is committed, rather
   * than committed and answered 504 with an unknown outcome (ARCHITECTURE.md, "Degraded durability").
   */
  async function refuseWithoutQuorum(level: Durability): Promise<void> {
    if (level === 'local' || hooks.quorumReachable === undefined) return;
    // peers reconnecting (this site just started, or a link just came back) get a moment first
    const deadline = env.clock.monotonicMs() + limits.quorumReachWaitMs;
    for (;;) {
      const q = hooks.quorumReachable(level);
      if (q.ok) return;
      if (env.clock.monotonicMs() >= deadline)
        throw RequestError.unavailable(
          'quorum-unavailable',
          `a ${level} write needs ${q.needed} data sites and ${node.siteId} has heard from only ${q.heard} lately; nothing was written` +
            (node.config.topology.degradedDurability === 'refuse' ? ' (topology.degradedDurability: refuse; with allow, a site marked down stops counting)' : ''),
          2,
        );
      await env.timers.sleep(limits.ownerRetryMs);
    }
  }

  function outcomeFacts(outcome: WriteOutcome): { dot: string; version: string; wrote: boolean } {
    return { dot: outcome.dot, version: outcome.record.version, wrote: outcome.wrote };
  }

  /**
   * A repeat under a known Idempotency-Key: the first write's answer, once that write is as durable
   * as this request asks (the first may still be waiting for its quorum).
   */
  async function answerReplay(reply: FastifyReply, first: ReplayedWrite, durability: Durability, session: Session | undefined) {
    const item = first.items[0]!;
    await ensureDurable({ dot: first.dot, version: item.version, wrote: true }, durability, reply);
    if (!node.acknowledgeable(first))
      throw new RequestError(504, 'lease-expired', 'Outcome unknown', `the first write under this Idempotency-Key (${first.dot}) cannot be confirmed: ${node.siteId} lost its lease meanwhile; its outcome is unknown`, [], { dot: first.dot });
    reply.header(replayedHeader, 'true');
    reply.header('etag', `"${item.version}"`);
    reply.header('tandem-session', encodeSession(joinSession(session, { [first.origin]: first.seq })));
    return { key: item.key, version: item.version, dot: first.dot, origin: item.origin };
  }

  async function answerWrite(reply: FastifyReply, outcome: WriteOutcome, durability: Durability, session: Session | undefined) {
    await ensureDurable(outcomeFacts(outcome), durability, reply);
    ensureAcknowledgeable(outcome);
    const rec: ItemRecord = outcome.record;
    reply.header('etag', `"${rec.version}"`);
    reply.header('tandem-session', encodeSession(joinSession(session, rec.state.c, voidable(outcome, durability))));
    return { key: rec.key, version: rec.version, dot: outcome.dot, origin: rec.origin };
  }

  /**
   * Sends the request on to `owner` (an item's owner, or for 'session' a peer covering the session).
   * When it fails, a read is safe to retry (503). So is a write that certainly never left this
   * site; any other failed write may have been applied at the owner: 502 with
   * Tandem-Outcome: unknown, which clients and routers must not repeat blindly.
   */
  async function forward(req: FastifyRequest, reply: FastifyReply, owner: string, why: 'owner' | 'session' = 'owner', parked = false) {
    // one hop: a site forwarded to that no longer owns the item says so, unless it parked the write
    // through a handover (then it knows the new owner for certain, and sends it one hop further)
    const hops = header(req, forwardedHeader)?.split(',') ?? [];
    if (why === 'owner' && hops.length > 0 && !(parked && hops.length < 2))
      throw RequestError.unavailable('owner-changed', `site ${node.siteId} is not the owner of this item (forwarded by ${hops.join(', ')}; the owner is ${owner} now); nothing was written: retry`);
    const ownerUrl = hooks.peerUrl?.(owner) ?? node.config.sites.find((s) => s.id === owner)?.url;
    if (ownerUrl === undefined) throw RequestError.unavailable('owner-unavailable', `no address known for the owner ${owner}`);
    const headers: Record<string, string> = { [forwardedHeader]: [...hops, node.siteId].join(',') };
    for (const h of ['if-match', 'if-none-match', 'tandem-consistency', 'tandem-durability', 'tandem-session', 'idempotency-key'])
      if (header(req, h) !== undefined) headers[h] = header(req, h)!;
    const body = req.body === undefined ? undefined : Buffer.from(JSON.stringify(req.body));
    if (body) headers['content-type'] = 'application/json';
    const ac = new AbortController();
    let timedOut = false;
    const timer = env.timers.after(forwardTimeoutMs, () => {
      timedOut = true;
      ac.abort(new Error(`no answer within ${forwardTimeoutMs} ms`));
    });
    let res;
    let bytes;
    try {
      res = await env.transport.request({ method: req.method, url: `${ownerUrl}${req.url}`, headers, ...(body ? { body } : {}), signal: ac.signal });
      bytes = await readBody(res.body, limits.requestBodyBytesMax);
    } catch (e) {
      const failure = timedOut ? `no answer within ${forwardTimeoutMs} ms` : (e as Error).message;
      if (why === 'session') throw sessionUnavailable(`site ${node.siteId} has not yet received this session's writes and ${owner}, which has, did not answer (${failure})`);
      if (req.method === 'GET') throw RequestError.unavailable('owner-unavailable', `the owner ${owner} of this item is unreachable (${failure})`);
      // nothing left this site (refused, no connection): the owner-wait loop may try again, as for a
      // silent owner, until the owner answers or a failover moves the item
      if (res === undefined && classifyUpstreamError(e) === 'not-sent')
        throw new RequestError(503, 'owner-unavailable', 'Service unavailable', `the owner ${owner} of this item is unreachable (${failure}); nothing was written: retry`, [], { retryAfterS: 1, ownerUnreachable: true });
      return reply
        .code(502)
        .header('tandem-outcome', 'unknown')
        .type('application/problem+json')
        .send({
          type: problemType('outcome-unknown'),
          title: 'Outcome unknown',
          status: 502,
          detail: `this write was sent to the owner ${owner} but no answer came back (${failure}): its outcome is unknown, it may or may not have been applied; read the item before repeating it`,
        });
    } finally {
      timer.cancel();
    }
    // the owner moved on between our look-up and its answer, and it wrote nothing: the caller's
    // bounded owner-wait loop looks the owner up again instead of handing the client a 503
    if (why === 'owner' && res.status === 503) {
      const moved = ownerChangedDetail(bytes);
      if (moved !== undefined) throw RequestError.unavailable('owner-changed', `${owner} answered: ${moved}`);
    }
    reply.code(res.status);
    for (const h of ['content-type', 'etag', 'tandem-session', 'retry-after', 'tandem-durability', 'tandem-degraded-sites', replayedHeader]) if (res.headers[h]) reply.header(h, res.headers[h]);
    reply.header('tandem-site', res.headers['tandem-site'] ?? owner);
    return reply.send(Buffer.from(bytes));
  }

  return app;
}

/** The detail of a forwarded 503 `owner-changed` answer (nothing was written there), else undefined. */
function ownerChangedDetail(bytes: Uint8Array): string | undefined {
  try {
    const p = JSON.parse(Buffer.from(bytes).toString('utf8')) as { type?: unknown; detail?: unknown };
    return p.type === problemType('owner-changed') ? String(p.detail ?? 'owner changed') : undefined;
  } catch {
    return undefined;
  }
}

/** An owned write acknowledged at `local` durability: a failover may still void it, so its session remembers it. */
function voidable(outcome: WriteOutcome, durability: Durability): SessionWrite | undefined {
  if (outcome.owned === undefined || durability !== 'local' || !outcome.wrote) return undefined;
  return { dot: outcome.dot, units: outcome.owned.units, epoch: outcome.owned.epoch };
}

function strongestDurability(levels: Durability[]): Durability {
  return levels.includes('all') ? 'all' : levels.includes('quorum') ? 'quorum' : 'local';
}

function header(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name];
  if (v === undefined) return undefined;
  if (Array.isArray(v))
    throw RequestError.badRequest(`${name}: given more than once`, [{ path: `header.${name}`, message: 'repeated header' }]);
  return v;
}

function flatHeaders(h: FastifyRequest['headers']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined) out[k] = Array.isArray(v) ? v.join(', ') : v;
  return out;
}

/** Why fastify's JSON parser refused a body (cold path: parses again for the position of the error). */
function invalidJson(text: string): RequestError {
  try {
    JSON.parse(text);
  } catch (e) {
    return RequestError.badRequest(`body: not valid JSON (${(e as Error).message})`, [{ path: 'body', message: 'invalid JSON' }]);
  }
  return RequestError.badRequest('body: __proto__ and constructor.prototype keys are not allowed', [{ path: 'body', message: 'forbidden key' }]);
}

function sendProblem(reply: FastifyReply, error: RequestError) {
  const body: Record<string, unknown> = {
    type: problemType(error.type),
    title: error.title,
    status: error.status,
    detail: error.message,
  };
  if (error.errors.length > 0) body.errors = error.errors;
  for (const [k, v] of Object.entries(error.extra)) if (k !== 'retryAfterS') body[k] = v;
  if (error.status === 503) reply.header('retry-after', String(error.extra.retryAfterS ?? 1));
  return reply.code(error.status).type('application/problem+json').send(body);
}
