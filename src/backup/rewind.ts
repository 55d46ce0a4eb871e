// `tandem rewind`: a table (or a key prefix of it) back to a closed second, in place, cluster-wide
// (ARCHITECTURE.md, "Rewind writes values, never old states").
//
//   1. The cut V(T): per origin, the highest seq whose commit clock ≤ T, read from the archive. T
//      must be closed: every site's current origin has an entry or a heartbeat past T there.
//   2. The table at the cut, rebuilt in a scratch directory from a snapshot under V(T) and every
//      origin's log up to it (restore.ts).
//   3. Each key at T or live now is sent to the executing site (POST /v1/tables/T/rewind/K, with
//      Idempotency-Key rewind:<id>:<table>:<key>), which decides inside the commit what to write.
//   4. A journal (id, V(T), executing site, session token, each key's outcome) is written as it goes:
//      `--resume ID` sends what is not done, `--undo ID` reverts keys whose latest write is still
//      the rewind's. It is done when every site covers its last dot.
// The journal is the rewind's own idempotency: a key is sent again only if no answer was recorded.
// A key whose answer was lost (a crash between the commit and the journal) is classified again on
// resume; for values that is harmless (the value at T is already there: unchanged), for a counter
// an increment could be repeated unless the site honours the Idempotency-Key.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decode } from '@msgpack/msgpack';
import { hlcFromHex, hlcMs } from '../core/hlc.js';
import { canonicalVector, dominates, joinVectors, parseDot, type VersionVector } from '../core/vector.js';
import type { JsonObject } from '../core/write.js';
import type { Env } from '../platform/env.js';
import type { Store } from '../store/types.js';
import { readCatalog, type Timeline } from './catalog.js';
import { BackupError } from './errors.js';
import type { Keyring } from './keyring.js';
import { decodeBytes } from './object-format.js';
import { executeRestore, planAt, type Progress, type RestoreApplier } from './restore.js';
import type { BackupTarget } from './targets/target.js';

export interface RewindSite {
  id: string;
  url: string;
}

export interface RewindKeyOutcome {
  class: string;
  action: string;
  now?: JsonObject | null;
  atT?: JsonObject | null;
  dot?: string;
  error?: string;
}

export interface RewindJournal {
  id: string;
  table: string;
  prefix: string;
  toTime: string;
  toTimeMs: number;
  cut: VersionVector;
  executingSite: string;
  overwrite: boolean;
  dryRun: boolean;
  /** the join of the rewind's write dots: done when every site's vector covers it */
  sessionToken: VersionVector;
  state: 'running' | 'written' | 'done' | 'undone';
  /** every key to consider, with its value at T */
  plan: { key: string; atT: JsonObject | null }[];
  keys: Record<string, RewindKeyOutcome>;
  undo?: Record<string, RewindKeyOutcome>;
}

export interface RewindDeps {
  env: Env;
  target: BackupTarget;
  keyring: Keyring | undefined;
  cluster: string;
  sites: RewindSite[];
  journalDir: string;
  scratchDir: string;
  /** opens a store being rebuilt for reading (a site node over it, for each table's join) */
  open(storePath: string, site: string): Promise<RestoreApplier & { store: Store; close(): Promise<void> }>;
  progress?: Progress;
  /** how many keys are in flight to the executing site at once */
  concurrency?: number;
}

export interface RewindSummary {
  id: string;
  table: string;
  prefix: string;
  toTime: string;
  cut: VersionVector;
  executingSite: string;
  dryRun: boolean;
  counts: Record<string, number>;
  written: number;
  skipped: { key: string; class: string; now: JsonObject | null; atT: JsonObject | null }[];
  errors: { key: string; error: string }[];
  coveredBy: string[];
  notCoveredBy: string[];
  done: boolean;
}

const fetchJson = async (env: Env, url: string, init: { method?: string; body?: unknown; headers?: Record<string, string> } = {}): Promise<{ status: number; body: unknown; headers: Record<string, string> }> => {
  const res = await env.transport.request({
    method: init.method ?? 'GET',
    url,
    headers: { ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}), ...init.headers },
    ...(init.body !== undefined ? { body: Buffer.from(JSON.stringify(init.body)) } : {}),
  });
  const chunks: Uint8Array[] = [];
  for await (const c of res.body) chunks.push(c);
  const text = Buffer.concat(chunks).toString();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: kept as text
  }
  return { status: res.status, body, headers: res.headers };
};

/** V(T) from the archive: per origin, the highest seq with commit clock ≤ T. */
export async function cutAt(target: BackupTarget, keyring: Keyring | undefined, timelines: Timeline[], toTimeMs: number): Promise<VersionVector> {
  const cut: VersionVector = {};
  for (const t of timelines) {
    let seq = 0;
    for (const seg of t.segs) {
      const h = seg.header;
      if (h.firstClock === undefined || h.lastClock === undefined) continue;
      if (hlcMs(hlcFromHex(h.firstClock)) > toTimeMs) break;
      if (hlcMs(hlcFromHex(h.lastClock)) <= toTimeMs) {
        seq = h.end![t.origin] ?? seq;
        continue;
      }
      const { body } = decodeBytes(seg.name, await target.get(seg.name), keyring);
      for (const [s, clock] of (decode(body) as { entries: [number, string, Uint8Array][] }).entries) if (hlcMs(hlcFromHex(clock)) <= toTimeMs) seq = s;
      break;
    }
    if (seq > 0) cut[t.origin] = seq;
  }
  return canonicalVector(cut);
}

/** Why T is not closed yet: a site whose current origin has nothing past T in the archive. */
export function notClosed(timelines: Timeline[], currentOrigins: Record<string, string>, toTimeMs: number): string[] {
  const reasons: string[] = [];
  for (const [site, origin] of Object.entries(currentOrigins)) {
    const t = timelines.find((x) => x.origin === origin);
    const newest = t?.segs[t.segs.length - 1]?.header;
    const pastT = newest !== undefined && ((newest.boundary !== undefined && newest.boundary.atMs > toTimeMs) || (newest.lastClock !== undefined && hlcMs(hlcFromHex(newest.lastClock)) > toTimeMs));
    if (!pastT) reasons.push(`site ${site} (origin ${origin}) has no entry or heartbeat after ${new Date(toTimeMs).toISOString()} in the archive yet`);
  }
  return reasons;
}

function journalPath(dir: string, id: string): string {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(id)) throw new BackupError('bad-input', `--resume/--undo: not a rewind id: ${id}`);
  return join(dir, `${id}.json`);
}

export function readJournal(dir: string, id: string): RewindJournal {
  const path = journalPath(dir, id);
  if (!existsSync(path)) throw new BackupError('bad-input', `no rewind ${id} in ${dir}`);
  return JSON.parse(readFileSync(path, 'utf8')) as RewindJournal;
}

function writeJournal(dir: string, j: RewindJournal): void {
  mkdirSync(dir, { recursive: true });
  const path = journalPath(dir, j.id);
  writeFileSync(`${path}.tmp`, JSON.stringify(j));
  renameSync(`${path}.tmp`, path);
}

async function currentOrigins(env: Env, sites: RewindSite[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const s of sites) {
    try {
      const r = await fetchJson(env, `${s.url}/v1/status`);
      if (r.status === 200) out[s.id] = (r.body as { origin: string }).origin;
    } catch {
      // unreachable: its newest archived origin stands for it below
    }
  }
  return out;
}

/** Plans a new rewind: the cut, the table at it, the keys; writes the journal (state running). */
export async function planRewind(
  deps: RewindDeps,
  o: { id: string; table: string; prefix: string; toTimeMs: number; overwrite: boolean; dryRun: boolean; executingSite?: string },
): Promise<RewindJournal> {
  const { env } = deps;
  if (o.toTimeMs > env.clock.wallMs()) throw new BackupError('not-closed', `--to-time ${new Date(o.toTimeMs).toISOString()} is in the future`);
  const timelines = await readCatalog(deps.target, deps.cluster);
  const origins = await currentOrigins(env, deps.sites);
  for (const s of deps.sites) if (origins[s.id] === undefined) {
    const newest = timelines.filter((t) => t.site === s.id).pop();
    if (newest) origins[s.id] = newest.origin;
  }
  const open = notClosed(timelines, origins, o.toTimeMs);
  if (open.length > 0) throw new BackupError('not-closed', `${new Date(o.toTimeMs).toISOString()} is not closed yet (retry in a few seconds): ${open.join('; ')}`);
  const cut = await cutAt(deps.target, deps.keyring, timelines, o.toTimeMs);
  const executing = deps.sites.find((s) => s.id === (o.executingSite ?? Object.keys(origins).find((id) => deps.sites.some((x) => x.id === id)) ?? deps.sites[0]!.id));
  if (executing === undefined) throw new BackupError('bad-input', `--site: ${o.executingSite} is not a site of the cluster`);
  const point = planAt(timelines, cut, executing.id);
  const dir = join(deps.scratchDir, `rewind-${o.id}`);
  rmSync(dir, { recursive: true, force: true });
  let opened: Awaited<ReturnType<RewindDeps['open']>> | undefined;
  const atT = new Map<string, JsonObject | null>();
  try {
    await executeRestore({
      target: deps.target,
      keyring: deps.keyring,
      timelines,
      point,
      storePath: join(dir, point.site, 'store.db'),
      stagingDir: join(dir, 'staging'),
      open: async (path) => (opened = await deps.open(path, point.site)),
      ...(deps.progress ? { progress: deps.progress } : {}),
    });
    // the replayed entries were committed without a sync: reads of the store wait for one
    await opened!.store.sync();
    for (let after: string | undefined; ; ) {
      const page = await opened!.store.scanAll(o.table, after, 1000);
      if (page.length === 0) break;
      after = page[page.length - 1]!.key;
      for (const r of page) if (r.key.startsWith(o.prefix)) atT.set(r.key, r.live ? (r.value as JsonObject) : null);
    }
  } finally {
    await opened?.close();
    rmSync(dir, { recursive: true, force: true });
  }
  // keys live now but not at T (created after it), from the executing site
  for (let cursor: string | null = null; ; ) {
    const q = `prefix=${encodeURIComponent(o.prefix)}&limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const r = await fetchJson(env, `${executing.url}/v1/tables/${encodeURIComponent(o.table)}/items?${q}`);
    if (r.status !== 200) throw new BackupError('refused', `site ${executing.id} refused the scan of ${o.table}: ${JSON.stringify(r.body)}`);
    const page = r.body as { items: { key: string }[]; cursor: string | null };
    for (const it of page.items) if (!atT.has(it.key)) atT.set(it.key, null);
    if (page.cursor === null) break;
    cursor = page.cursor;
  }
  const journal: RewindJournal = {
    id: o.id,
    table: o.table,
    prefix: o.prefix,
    toTime: new Date(o.toTimeMs).toISOString(),
    toTimeMs: o.toTimeMs,
    cut,
    executingSite: executing.id,
    overwrite: o.overwrite,
    dryRun: o.dryRun,
    sessionToken: {},
    state: 'running',
    plan: [...atT].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([key, value]) => ({ key, atT: value })),
    keys: {},
  };
  if (!o.dryRun) writeJournal(deps.journalDir, journal);
  return journal;
}

async function sendAll(deps: RewindDeps, j: RewindJournal, items: { key: string; body: Record<string, unknown> }[], into: Record<string, RewindKeyOutcome>, phase: string): Promise<void> {
  const site = deps.sites.find((s) => s.id === j.executingSite);
  if (site === undefined) throw new BackupError('bad-input', `the rewind's executing site ${j.executingSite} is not in the config`);
  let next = 0;
  let done = 0;
  let sinceJournal = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= items.length) return;
      const { key, body } = items[i]!;
      let outcome: RewindKeyOutcome;
      for (let attempt = 0; ; attempt++) {
        try {
          const r = await fetchJson(deps.env, `${site.url}/v1/tables/${encodeURIComponent(j.table)}/rewind/${encodeURIComponent(key)}`, {
            method: 'POST',
            body,
            headers: { 'idempotency-key': `rewind:${j.id}:${j.table}:${key}`.slice(0, 128) },
          });
          if (r.status === 200) outcome = r.body as RewindKeyOutcome;
          else if (r.status === 503 && attempt < 5) {
            await deps.env.timers.sleep(200 * (attempt + 1));
            continue;
          } else outcome = { class: 'error', action: 'failed', error: `HTTP ${r.status}: ${JSON.stringify(r.body).slice(0, 300)}` };
        } catch (e) {
          if (attempt < 5) {
            await deps.env.timers.sleep(200 * (attempt + 1));
            continue;
          }
          outcome = { class: 'error', action: 'failed', error: (e as Error).message };
        }
        break;
      }
      into[key] = outcome;
      if (outcome.dot !== undefined) {
        const { origin, seq } = parseDot(outcome.dot);
        j.sessionToken = joinVectors(j.sessionToken, { [origin]: seq });
      }
      done++;
      deps.progress?.(phase, done, items.length);
      if (++sinceJournal >= 200 && !j.dryRun) {
        sinceJournal = 0;
        writeJournal(deps.journalDir, j);
      }
    }
  };
  await Promise.all(Array.from({ length: deps.concurrency ?? 16 }, () => worker()));
  if (!j.dryRun) writeJournal(deps.journalDir, j);
}

/** Sends every planned key not yet answered; waits until every site covers the rewind's writes. */
export async function runRewind(deps: RewindDeps, j: RewindJournal): Promise<RewindSummary> {
  const pending = j.plan.filter((p) => j.keys[p.key] === undefined || j.keys[p.key]!.action === 'failed');
  await sendAll(
    deps,
    j,
    pending.map((p) => ({ key: p.key, body: { rewindId: j.id, cut: j.cut, atT: p.atT, overwrite: j.overwrite, dryRun: j.dryRun } })),
    j.keys,
    j.dryRun ? 'classify keys' : 'rewind keys',
  );
  const errors = Object.entries(j.keys).filter(([, o]) => o.action === 'failed');
  if (errors.length === 0 && !j.dryRun) j.state = 'written';
  const coverage = j.dryRun ? { covered: [], notCovered: [] } : await waitCovered(deps, j.sessionToken);
  if (j.state === 'written' && coverage.notCovered.length === 0) j.state = 'done';
  if (!j.dryRun) writeJournal(deps.journalDir, j);
  return summarize(j, j.keys, coverage);
}

/** Reverts the keys whose latest write is still the rewind's own, to what they were before it. */
export async function undoRewind(deps: RewindDeps, j: RewindJournal): Promise<RewindSummary> {
  j.undo ??= {};
  const items = Object.entries(j.keys)
    .filter(([key, o]) => o.action === 'written' && o.dot !== undefined && (j.undo![key] === undefined || j.undo![key]!.action === 'failed'))
    .map(([key, o]) => ({ key, body: { rewindId: j.id, cut: {}, atT: o.now ?? null, overwrite: true, dryRun: false, onlyIfLatest: o.dot } }));
  await sendAll(deps, j, items, j.undo, 'undo keys');
  const coverage = await waitCovered(deps, j.sessionToken);
  if (Object.values(j.undo).every((o) => o.action !== 'failed')) j.state = 'undone';
  writeJournal(deps.journalDir, j);
  return summarize(j, j.undo, coverage);
}

async function waitCovered(deps: RewindDeps, token: VersionVector): Promise<{ covered: string[]; notCovered: string[] }> {
  const deadline = deps.env.clock.monotonicMs() + 60_000;
  const covered = new Set<string>();
  while (covered.size < deps.sites.length && deps.env.clock.monotonicMs() < deadline) {
    for (const s of deps.sites) {
      if (covered.has(s.id)) continue;
      try {
        const r = await fetchJson(deps.env, `${s.url}/v1/status`);
        if (r.status === 200 && dominates((r.body as { vector: VersionVector }).vector, token)) covered.add(s.id);
      } catch {
        // unreachable now: asked again
      }
    }
    if (covered.size < deps.sites.length) await deps.env.timers.sleep(100);
  }
  return { covered: [...covered].sort(), notCovered: deps.sites.map((s) => s.id).filter((id) => !covered.has(id)) };
}

function summarize(j: RewindJournal, outcomes: Record<string, RewindKeyOutcome>, coverage: { covered: string[]; notCovered: string[] }): RewindSummary {
  const counts: Record<string, number> = {};
  for (const o of Object.values(outcomes)) counts[o.class] = (counts[o.class] ?? 0) + 1;
  return {
    id: j.id,
    table: j.table,
    prefix: j.prefix,
    toTime: j.toTime,
    cut: j.cut,
    executingSite: j.executingSite,
    dryRun: j.dryRun,
    counts,
    written: Object.values(outcomes).filter((o) => o.action === 'written').length,
    skipped: Object.entries(outcomes)
      .filter(([, o]) => o.action === 'skipped' || o.action === 'would-write')
      .map(([key, o]) => ({ key, class: o.class, now: o.now ?? null, atT: o.atT ?? null })),
    errors: Object.entries(outcomes)
      .filter(([, o]) => o.action === 'failed')
      .map(([key, o]) => ({ key, error: o.error ?? 'failed' })),
    coveredBy: coverage.covered,
    notCoveredBy: coverage.notCovered,
    done: !j.dryRun && coverage.notCovered.length === 0 && Object.values(outcomes).every((o) => o.action !== 'failed'),
  };
}
