// The drill's load generator, run in its own process (`node dist/drill/load-generator.js SPEC`):
// sends the seeded open-loop plan at its intended times (latency counts from those, so a slow
// cluster cannot hide behind a slow sender), caps what is in flight (what is shed counts as
// failed), runs a few closed-loop clients for session and list-append histories, and appends every
// operation's record to the history file as it completes. It reports progress on stdout (JSON lines)
// and, at the end, how far its own event loop lagged: over 50 ms makes the drill inconclusive.
import { createWriteStream, readFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Agent, request } from 'undici';
import { SeededRandom } from '../platform/sim/random.js';
import { realTimers } from '../platform/real/real-env.js';
import { outcomeOf, outcomeOfError, problemName, type OpKind, type OpRecord } from './op-history.js';
import { bodyOf, planWorkload, type PlannedOp, type WorkloadSpec } from './workload.js';

export interface GeneratorSpec {
  workload: WorkloadSpec;
  routerUrl: string;
  siteUrls: Record<string, string>;
  historyPath: string;
  inFlightMax: number;
  opTimeoutMs: number;
  /** closed-loop session clients on a `local` table */
  session?: { table: string; clients: number };
  /** closed-loop list-append clients on a `global` table (strong reads, If-Match appends) */
  list?: { table: string; clients: number; keys: number };
}

export interface GeneratorProgress {
  type: 'progress' | 'done';
  atMs: number;
  sent: number;
  ok: number;
  failed: number;
  unknown: number;
  shed: number;
  inFlight: number;
  eventLoopDelayMaxMs: number;
  scheduleLagMaxMs: number;
  /** the worst event-loop delay since the previous report */
  recentDelayMaxMs: number;
}

const responseBytesMax = 1 << 20;

async function main(): Promise<void> {
  const spec = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as GeneratorSpec;
  // the drill's zero (process.hrtime.bigint() of the drill process, decimal) arrives on stdin once
  // the cluster is up; no line means the drill ended before its load
  const zeroLine = await new Promise<string | undefined>((resolve) => {
    let text = '';
    process.stdin.on('data', (c: Buffer) => {
      text += c.toString();
      if (text.includes('\n')) resolve(text.slice(0, text.indexOf('\n')));
    });
    process.stdin.on('end', () => resolve(text.includes('\n') ? text.slice(0, text.indexOf('\n')) : undefined));
  });
  if (zeroLine === undefined || !/^\d+$/.test(zeroLine.trim())) return;
  const zero = BigInt(zeroLine.trim());
  const nowMs = () => Number(process.hrtime.bigint() - zero) / 1e6;
  const agent = new Agent({ connections: 128, connect: { timeout: Math.min(1000, spec.opTimeoutMs) }, headersTimeout: spec.opTimeoutMs, bodyTimeout: spec.opTimeoutMs });
  const out = createWriteStream(spec.historyPath, { flags: 'w' });
  const counts = { sent: 0, ok: 0, failed: 0, unknown: 0, shed: 0, inFlight: 0 };
  let scheduleLagMaxMs = 0;
  let measuring = false;
  let stopping = false;
  // the histograms record the whole timer interval: the lag is what exceeds the resolution
  const resolutionMs = 10;
  const lagMs = (h: { max: number }) => Math.max(0, h.max / 1e6 - resolutionMs);
  const lag = monitorEventLoopDelay({ resolution: resolutionMs });
  lag.enable();
  const recent = monitorEventLoopDelay({ resolution: resolutionMs });
  recent.enable();
  let closedId = 1_000_000_000;

  const record = (r: OpRecord) => {
    counts[r.outcome]++;
    out.write(`${JSON.stringify(r)}\n`);
  };
  const progress = (type: GeneratorProgress['type']) => {
    const p: GeneratorProgress = { type, atMs: Math.round(nowMs()), ...counts, eventLoopDelayMaxMs: lagMs(lag), scheduleLagMaxMs, recentDelayMaxMs: lagMs(recent) };
    recent.reset();
    process.stdout.write(`${JSON.stringify(p)}\n`);
  };

  const urlOf = (via: string, path: string) => `${via === 'router' ? spec.routerUrl : spec.siteUrls[via]}${path}`;
  const itemPath = (table: string, key: string) => `/v1/tables/${encodeURIComponent(table)}/items/${encodeURIComponent(key)}`;

  /** Sends one request and fills in the outcome, answer and read fields of `r`. */
  const send = async (
    r: OpRecord,
    method: string,
    path: string,
    headers: Record<string, string>,
    body: unknown,
  ): Promise<{ json: Record<string, unknown> | undefined; headers: Record<string, string | string[] | undefined> }> => {
    r.sentMs = nowMs();
    try {
      const res = await request(urlOf(r.via, path), {
        method: method as 'GET',
        headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        dispatcher: agent,
        signal: AbortSignal.timeout(spec.opTimeoutMs),
      });
      const text = await res.body.text();
      if (text.length > responseBytesMax) throw new Error('answer too large');
      let json: Record<string, unknown> | undefined;
      try {
        json = text === '' ? undefined : (JSON.parse(text) as Record<string, unknown>);
      } catch {
        json = undefined;
      }
      const problem = res.statusCode >= 400 ? problemName(json?.['type']) : undefined;
      const outcomeHeader = res.headers['tandem-outcome'];
      r.status = res.statusCode;
      r.outcome = outcomeOf(r.op, res.statusCode, problem, typeof outcomeHeader === 'string' ? outcomeHeader : undefined);
      if (problem !== undefined) r.reason = problem;
      const site = res.headers['tandem-site'];
      if (typeof site === 'string') r.site = site;
      if (typeof json?.['dot'] === 'string') r.dot = json['dot'];
      if (typeof json?.['version'] === 'string') r.version = json['version'];
      r.endMs = nowMs();
      return { json, headers: res.headers };
    } catch (e) {
      const err = e as { code?: string; name?: string; cause?: { code?: string } };
      const code = err.code ?? err.cause?.code ?? err.name;
      r.outcome = outcomeOfError(code);
      r.reason = code ?? 'error';
      r.endMs = nowMs();
      return { json: undefined, headers: {} };
    }
  };

  const newRecord = (p: Omit<OpRecord, 'sentMs' | 'endMs' | 'outcome'>): OpRecord => ({ ...p, sentMs: 0, endMs: 0, outcome: 'unknown' });

  const runOpen = async (op: PlannedOp): Promise<void> => {
    const r = newRecord({
      id: op.id,
      client: 'open',
      op: op.op,
      table: op.table,
      key: op.key,
      via: op.via,
      consistency: op.consistency,
      intendedMs: op.intendedMs,
      ...(op.durability ? { durability: op.durability } : {}),
      ...(op.writeId ? { writeId: op.writeId } : {}),
      ...(op.patch ? { patch: op.patch } : {}),
      ...(op.field ? { field: op.field } : {}),
      ...(op.amount !== undefined ? { amount: op.amount } : {}),
    });
    const headers: Record<string, string> = {};
    if (op.consistency === 'strong') headers['tandem-consistency'] = 'strong';
    if (op.durability) headers['tandem-durability'] = op.durability;
    const methods: Record<OpKind, string> = { get: 'GET', scan: 'GET', put: 'PUT', patch: 'PATCH', delete: 'DELETE' };
    const path = op.op === 'scan' ? `/v1/tables/${encodeURIComponent(op.table)}/items?prefix=${encodeURIComponent(op.key)}&limit=20` : itemPath(op.table, op.key);
    const { json } = await send(r, methods[op.op], path, headers, bodyOf(op));
    if (r.outcome === 'ok' && op.op === 'get') {
      const value = json?.['value'] as Record<string, unknown> | undefined;
      r.read = { found: r.status === 200, ...(typeof value?.['w'] === 'string' ? { writeId: value['w'] } : {}) };
    }
    if (r.outcome === 'ok' && op.op === 'scan') r.read = { found: true, count: Array.isArray(json?.['items']) ? (json['items'] as unknown[]).length : 0 };
    record(r);
  };

  // ---------- the open loop ----------
  const inFlight = new Set<Promise<void>>();
  const plan = planWorkload(spec.workload);
  let next = plan.next();
  const openDone = new Promise<void>((resolve) => {
    const tick = () => {
      if (stopping) return resolve();
      const now = nowMs();
      if (!measuring && now >= 0) {
        // the warm-up is over: lag counts from here
        measuring = true;
        lag.reset();
      }
      while (!next.done && next.value.intendedMs <= now) {
        const op = next.value;
        next = plan.next();
        counts.sent++;
        if (op.intendedMs >= 0) scheduleLagMaxMs = Math.max(scheduleLagMaxMs, now - op.intendedMs);
        if (inFlight.size >= spec.inFlightMax) {
          counts.shed++;
          const at = nowMs();
          record({ id: op.id, client: 'open', op: op.op, table: op.table, key: op.key, via: op.via, consistency: op.consistency, intendedMs: op.intendedMs, sentMs: at, endMs: at, outcome: 'failed', reason: 'shed', ...(op.writeId ? { writeId: op.writeId } : {}) });
          continue;
        }
        const p: Promise<void> = runOpen(op).finally(() => inFlight.delete(p));
        inFlight.add(p);
      }
      counts.inFlight = inFlight.size;
      if (next.done) return resolve();
      realTimers.after(Math.max(0, next.value.intendedMs - nowMs()), tick);
    };
    tick();
  });

  // ---------- closed-loop clients ----------
  const random = new SeededRandom(spec.workload.seed).fork('closed-loop');
  const sites = Object.keys(spec.siteUrls);
  const pickVia = (r: SeededRandom) => (r.chance(0.5) ? 'router' : sites[r.int(sites.length)]!);
  const pause = (ms: number) => realTimers.sleep(ms);

  const sessionClient = async (c: number, table: string): Promise<void> => {
    const r0 = random.fork(`session-${c}`);
    let token: string | undefined;
    for (let i = 0; !stopping && nowMs() < spec.workload.loadMs; i++) {
      const key = `sess${c}-${i % 3}`;
      const writeId = `s${spec.workload.seed}-${c}-${i}`;
      const w = newRecord({ id: closedId++, client: `session-${c}`, op: 'put', table, key, via: pickVia(r0), consistency: 'session', writeId, intendedMs: nowMs(), session: true });
      const put = await send(w, 'PUT', itemPath(table, key), token ? { 'tandem-session': token } : {}, { w: writeId });
      const t = put.headers['tandem-session'];
      if (w.outcome === 'ok' && typeof t === 'string') token = t;
      record(w);
      const rd = newRecord({ id: closedId++, client: `session-${c}`, op: 'get', table, key, via: pickVia(r0), consistency: 'session', intendedMs: nowMs(), session: true });
      const got = await send(rd, 'GET', itemPath(table, key), { 'tandem-consistency': 'session', ...(token ? { 'tandem-session': token } : {}) }, undefined);
      if (rd.outcome === 'ok') {
        const value = got.json?.['value'] as Record<string, unknown> | undefined;
        rd.read = { found: rd.status === 200, ...(typeof value?.['w'] === 'string' ? { writeId: value['w'] } : {}) };
        const t2 = got.headers['tandem-session'];
        if (typeof t2 === 'string') token = t2;
      }
      record(rd);
      await pause(20 + r0.int(30));
    }
  };

  const listClient = async (c: number, table: string, keys: number): Promise<void> => {
    const r0 = random.fork(`list-${c}`);
    for (let i = 0; !stopping && nowMs() < spec.workload.loadMs; i++) {
      const key = `list${r0.int(keys)}`;
      const rd = newRecord({ id: closedId++, client: `list-${c}`, op: 'get', table, key, via: 'router', consistency: 'strong', intendedMs: nowMs() });
      const got = await send(rd, 'GET', itemPath(table, key), { 'tandem-consistency': 'strong' }, undefined);
      let items: string[] | undefined;
      if (rd.outcome === 'ok') {
        const value = got.json?.['value'] as Record<string, unknown> | undefined;
        items = rd.status === 200 && Array.isArray(value?.['items']) ? (value['items'] as string[]) : [];
        rd.read = { found: rd.status === 200, items };
      }
      record(rd);
      if (items !== undefined) {
        const element = `l${spec.workload.seed}-${c}-${i}`;
        const w = newRecord({ id: closedId++, client: `list-${c}`, op: 'put', table, key, via: 'router', consistency: 'strong', writeId: element, element, intendedMs: nowMs() });
        const pre: Record<string, string> = rd.status === 200 && rd.version ? { 'if-match': `"${rd.version}"` } : { 'if-none-match': '*' };
        await send(w, 'PUT', itemPath(table, key), pre, { w: element, items: [...items, element] });
        record(w);
      }
      await pause(20 + r0.int(30));
    }
  };

  const closed: Promise<void>[] = [];
  for (let c = 0; c < (spec.session?.clients ?? 0); c++) closed.push(sessionClient(c, spec.session!.table));
  for (let c = 0; c < (spec.list?.clients ?? 0); c++) closed.push(listClient(c, spec.list!.table, spec.list!.keys));

  let ticker = realTimers.after(500, function report() {
    progress('progress');
    ticker = realTimers.after(500, report);
  });
  process.once('SIGTERM', () => {
    stopping = true;
  });
  await openDone;
  await Promise.all(closed);
  await Promise.all(inFlight);
  ticker.cancel();
  lag.disable();
  recent.disable();
  counts.inFlight = 0;
  await new Promise<void>((resolve) => out.end(resolve));
  progress('done');
  await agent.close();
}

main().catch((e: unknown) => {
  process.stderr.write(`load generator: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
