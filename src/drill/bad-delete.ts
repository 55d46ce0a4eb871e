// The bad-delete drill's actions on a running cluster (CONTRACT.md, "Drills"): items seeded under a
// key prefix before the load; at the fault, a bulk delete of the whole prefix at one site (batches of
// deletes, as a careless script would send them), which replicates everywhere, then writes after it
// (two prefix keys written again, keys outside the prefix); at the heal, the real `tandem rewind
// --table --prefix --to-time <a second before the delete>` as a child process of the CLI, until it is
// done cluster-wide. Every write it makes is an operation of the drill's history (client
// `bad-delete`; the rewind's writes, read from its journal, client `rewind`), so the lost-write
// checker judges them like any other.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { cliEntry, childNodeArgs } from '../cluster/local-cluster.js';
import type { JsonObject } from '../core/write.js';
import { limits } from '../limits.js';
import { realClock, realTimers } from '../platform/real/real-env.js';
import type { BadDeleteRecording, RecordedRewind } from './bad-delete-check.js';
import { outcomeOf, outcomeOfError, problemName, type OpRecord } from './op-history.js';

export interface BadDeleteOptions {
  table: string;
  prefix: string;
  /** how many items to seed */
  items: number;
  sites: { id: string; url: string }[];
  /** the cluster's config file (the rewind command reads the sites and the backup target there) */
  configPath: string;
  journalDir: string;
  msSinceZero: () => number;
  /** gives the drill's history its records */
  record: (r: OpRecord) => void;
}

/** The drill's own records get ids above the generator's (open loop from 0, closed loops from 1e9). */
const firstId = 2_000_000_000;
const waitEverywhereMs = 30_000;
const rewindAttemptsMax = 60;

interface Answer {
  status: number;
  json: Record<string, unknown> | undefined;
  outcomeHeader: string | undefined;
  site: string | undefined;
}

async function send(method: 'GET' | 'PUT' | 'POST', url: string, body?: unknown): Promise<Answer> {
  const res = await request(url, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.body.text();
  let json: Record<string, unknown> | undefined;
  try {
    json = text === '' ? undefined : (JSON.parse(text) as Record<string, unknown>);
  } catch {
    json = undefined;
  }
  const h = res.headers['tandem-outcome'];
  const site = res.headers['tandem-site'];
  return { status: res.statusCode, json, outcomeHeader: typeof h === 'string' ? h : undefined, site: typeof site === 'string' ? site : undefined };
}

export class BadDelete {
  readonly recording: BadDeleteRecording;
  private nextId = firstId;
  private seededAtWallMs = 0;

  constructor(private readonly o: BadDeleteOptions) {
    this.recording = {
      table: o.table,
      prefix: o.prefix,
      seedSite: o.sites[0]!.id,
      deleteSite: '',
      seeded: {},
      deleted: [],
      deleteAtMs: null,
      deleteWallMs: null,
      goneEverywhereAfterMs: null,
      rewrittenAfter: {},
      untouched: {},
      rewind: null,
    };
  }

  private url(site: string): string {
    return this.o.sites.find((s) => s.id === site)!.url;
  }

  private keyOf(i: number): string {
    return `${this.o.prefix}${String(i).padStart(6, '0')}`;
  }

  /** Writes batches of puts or deletes at `site`; records every op; returns the keys acknowledged. */
  private async batch(site: string, op: 'put' | 'delete', items: { key: string; value?: JsonObject; writeId?: string }[]): Promise<string[]> {
    const acked: string[] = [];
    for (let at = 0; at < items.length; at += limits.batchOpsMax) {
      const chunk = items.slice(at, at + limits.batchOpsMax);
      const sentMs = this.o.msSinceZero();
      const ops = chunk.map((i) => (op === 'put' ? { op, table: this.o.table, key: i.key, value: i.value } : { op, table: this.o.table, key: i.key }));
      let answer: Answer | undefined;
      let code: string | undefined;
      try {
        answer = await send('POST', `${this.url(site)}/v1/batch`, { ops });
      } catch (e) {
        const err = e as { code?: string; name?: string; cause?: { code?: string } };
        code = err.code ?? err.cause?.code ?? err.name;
      }
      const endMs = this.o.msSinceZero();
      const outcome = answer ? outcomeOf(op, answer.status, answer.status >= 400 ? problemName(answer.json?.['type']) : undefined, answer.outcomeHeader) : outcomeOfError(code);
      const dots = new Map<string, string>();
      for (const it of (answer?.json?.['items'] as { key: string; dot: string }[] | undefined) ?? []) dots.set(it.key, it.dot);
      for (const i of chunk) {
        const dot = dots.get(i.key);
        this.o.record({
          id: this.nextId++,
          client: 'bad-delete',
          op,
          table: this.o.table,
          key: i.key,
          via: site,
          consistency: 'eventual',
          ...(i.writeId ? { writeId: i.writeId } : {}),
          intendedMs: sentMs,
          sentMs,
          endMs,
          outcome,
          ...(answer ? { status: answer.status } : { reason: code ?? 'error' }),
          ...(answer?.site ? { site: answer.site } : {}),
          ...(dot ? { dot } : {}),
        });
        if (outcome === 'ok') acked.push(i.key);
      }
    }
    return acked;
  }

  /** How many items of the prefix `site` holds (a scan, paged). */
  private async countAt(site: string): Promise<number> {
    let n = 0;
    for (let cursor: string | null = null, page = 0; page < 1000; page++) {
      const q = `prefix=${encodeURIComponent(this.o.prefix)}&limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const r = await send('GET', `${this.url(site)}/v1/tables/${encodeURIComponent(this.o.table)}/items?${q}`);
      if (r.status !== 200) throw new Error(`scan of ${this.o.table} at ${site} answered ${r.status}`);
      n += (r.json?.['items'] as unknown[]).length;
      cursor = r.json?.['cursor'] as string | null;
      if (cursor === null) break;
    }
    return n;
  }

  /** Waits until every site holds `count` items of the prefix; returns ms waited, or null at the bound. */
  private async everySiteHolds(count: number): Promise<number | null> {
    const t0 = performance.now();
    while (performance.now() - t0 < waitEverywhereMs) {
      const counts = await Promise.all(this.o.sites.map((s) => this.countAt(s.id).catch(() => -1)));
      if (counts.every((c) => c === count)) return Math.round(performance.now() - t0);
      await realTimers.sleep(100);
    }
    return null;
  }

  /** Before the load: the items, written at the first site, held by every site. */
  async seed(): Promise<void> {
    const items = Array.from({ length: this.o.items }, (_, i) => {
      const key = this.keyOf(i);
      const writeId = `bad-delete-seed-${i}`;
      return { key, writeId, value: { w: writeId, n: i, name: `item ${i} of the bad-delete drill` } satisfies JsonObject };
    });
    const acked = await this.batch(this.recording.seedSite, 'put', items);
    if (acked.length < items.length) throw new Error(`bad-delete: ${items.length - acked.length} of ${items.length} seed writes failed at ${this.recording.seedSite}`);
    for (const i of items) this.recording.seeded[i.key] = i.value;
    if ((await this.everySiteHolds(items.length)) === null) throw new Error(`bad-delete: the ${items.length} seeded items did not reach every site within ${waitEverywhereMs} ms`);
    this.seededAtWallMs = realClock.wallMs();
  }

  /** The fault: the whole prefix deleted at `site`; then writes after the delete elsewhere. */
  async bulkDelete(site: string): Promise<string> {
    // T, a second before the delete, must come after every seed write
    const wait = this.seededAtWallMs + 1100 - realClock.wallMs();
    if (wait > 0) await realTimers.sleep(wait);
    const r = this.recording;
    r.deleteSite = site;
    r.deleteAtMs = Math.round(this.o.msSinceZero());
    r.deleteWallMs = realClock.wallMs();
    const keys = Object.keys(r.seeded);
    r.deleted = await this.batch(site, 'delete', keys.map((key) => ({ key })));
    r.goneEverywhereAfterMs = await this.everySiteHolds(0);
    const gone = r.goneEverywhereAfterMs === null ? 'NOT gone from every site' : `gone from every site ${r.goneEverywhereAfterMs} ms later`;
    // after the delete, at another site: two prefix keys written again (changed after T: the rewind
    // skips them), and keys outside the prefix (with a name close to it) the rewind must not touch
    const other = this.o.sites.find((s) => s.id !== site)?.id ?? site;
    const again = [keys[0], keys[Math.floor(keys.length / 2)]].filter((k): k is string => k !== undefined);
    const outside = Array.from({ length: 5 }, (_, i) => `${this.o.prefix.replace(/\/$/, '')}-after/${i}`);
    const writes = [
      ...again.map((key, i) => ({ key, writeId: `bad-delete-again-${i}`, into: r.rewrittenAfter })),
      ...outside.map((key, i) => ({ key, writeId: `bad-delete-after-${i}`, into: r.untouched })),
    ];
    const values = new Map(writes.map((w) => [w.key, { w: w.writeId, writtenAfterTheDelete: true } satisfies JsonObject]));
    const acked = new Set(await this.batch(other, 'put', writes.map((w) => ({ key: w.key, writeId: w.writeId, value: values.get(w.key)! }))));
    for (const w of writes) if (acked.has(w.key)) w.into[w.key] = values.get(w.key)!;
    // as an operator would find them by the time of the rewind: at every site
    const everywhere = await this.everySiteReads(writes.filter((w) => acked.has(w.key)).map((w) => ({ key: w.key, writeId: w.writeId })));
    return `deleted ${r.deleted.length} of ${keys.length} items of ${r.table}/${r.prefix}* at ${site}; ${gone}; ${acked.size} writes after it at ${other}, ${everywhere === null ? 'NOT at every site' : `at every site ${everywhere} ms later`}`;
  }

  /** Waits until every site reads each key's write; returns ms waited, or null at the bound. */
  private async everySiteReads(writes: { key: string; writeId: string }[]): Promise<number | null> {
    const t0 = performance.now();
    const reads = async (site: string, w: { key: string; writeId: string }) => {
      const a = await send('GET', `${this.url(site)}/v1/tables/${encodeURIComponent(this.o.table)}/items/${encodeURIComponent(w.key)}`);
      return a.status === 200 && (a.json?.['value'] as Record<string, unknown> | undefined)?.['w'] === w.writeId;
    };
    while (performance.now() - t0 < waitEverywhereMs) {
      const seen = await Promise.all(this.o.sites.flatMap((s) => writes.map((w) => reads(s.id, w).catch(() => false))));
      if (seen.every(Boolean)) return Math.round(performance.now() - t0);
      await realTimers.sleep(100);
    }
    return null;
  }

  /** The heal: the real `tandem rewind`, asked again while T is not closed, until done cluster-wide. */
  async rewind(): Promise<string> {
    const r = this.recording;
    if (r.deleteWallMs === null) throw new Error('the rewind has no delete to undo');
    const toTime = new Date(r.deleteWallMs - 1000).toISOString();
    const startedAtMs = this.o.msSinceZero();
    const t0 = performance.now();
    const rec: RecordedRewind = { toTime, startedAtMs: Math.round(startedAtMs), durationMs: 0, attempts: 0, exitCode: null, id: null, done: false, written: 0, counts: {}, errors: [], notCoveredBy: [], keys: {}, error: null };
    r.rewind = rec;
    const args = ['rewind', '--config', this.o.configPath, '--table', r.table, '--prefix', r.prefix, '--to-time', toTime, '--json', '--journal-dir', this.o.journalDir];
    for (;;) {
      rec.attempts++;
      const run = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        execFile(process.execPath, [...childNodeArgs(), cliEntry, ...args], { maxBuffer: 256 << 20, timeout: 300_000 }, (err, stdout, stderr) =>
          resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr }),
        );
      });
      rec.exitCode = run.code;
      const last = run.stdout.trim().split('\n').pop() ?? '';
      let answer: Record<string, unknown> | undefined;
      try {
        answer = last.startsWith('{') ? (JSON.parse(last) as Record<string, unknown>) : undefined;
      } catch {
        answer = undefined;
      }
      if (answer === undefined) {
        rec.error = `no JSON answer (exit ${run.code}): ${run.stderr.trim().slice(0, 500)}`;
        break;
      }
      if (answer['code'] === 'not-closed' && rec.attempts < rewindAttemptsMax) {
        await realTimers.sleep(500);
        continue;
      }
      if (answer['ok'] === false && typeof answer['error'] === 'string') rec.error = answer['error'];
      rec.id = typeof answer['id'] === 'string' ? answer['id'] : null;
      rec.done = answer['done'] === true;
      rec.written = typeof answer['written'] === 'number' ? answer['written'] : 0;
      rec.counts = (answer['counts'] as Record<string, number> | undefined) ?? {};
      rec.errors = (answer['errors'] as { key: string; error: string }[] | undefined) ?? [];
      rec.notCoveredBy = (answer['notCoveredBy'] as string[] | undefined) ?? [];
      break;
    }
    rec.durationMs = Math.round(performance.now() - t0);
    const journal = rec.id === null ? undefined : join(this.o.journalDir, `${rec.id}.json`);
    if (journal !== undefined && existsSync(journal)) {
      const j = JSON.parse(readFileSync(journal, 'utf8')) as { executingSite: string; keys: Record<string, { class: string; action: string; dot?: string }> };
      for (const [key, o] of Object.entries(j.keys)) {
        rec.keys[key] = { class: o.class, action: o.action, ...(o.dot ? { dot: o.dot } : {}) };
        if (o.action !== 'written' || o.dot === undefined) continue;
        const at = this.o.msSinceZero();
        this.o.record({ id: this.nextId++, client: 'rewind', op: 'put', table: r.table, key, via: j.executingSite, consistency: 'eventual', intendedMs: startedAtMs, sentMs: startedAtMs, endMs: at, outcome: 'ok', site: j.executingSite, dot: o.dot });
      }
    }
    if (rec.error !== null) throw new Error(`rewind to ${toTime}: ${rec.error}`);
    const skipped = Object.values(rec.keys).filter((k) => k.action === 'skipped').length;
    return `rewind ${rec.id} to ${toTime}: ${rec.written} written, ${skipped} skipped, ${rec.done ? 'done at every site' : `NOT done (exit ${rec.exitCode})`} in ${rec.durationMs} ms (${rec.attempts} runs)`;
  }
}
