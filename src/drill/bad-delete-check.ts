// The bad-delete drill's own check, run on the recording (so `tandem drill check DIR` runs it again):
// at every site, every item the bulk delete took and nothing wrote since is back with the value it
// had; the prefix keys written after the delete hold what was written then (the rewind skipped them);
// the keys outside the prefix written after the delete hold what was written; the rewind wrote no key
// outside its prefix and overwrote none of them (conflict records of reason `rewound`).
import { canonicalJson, type JsonValue } from '../core/canonical-json.js';
import type { JsonObject } from '../core/write.js';
import { itemRef, type ConflictRecord, type SiteFinal } from './checkers.js';
import type { Slo } from './scenarios.js';

/** What the rewind command answered (`tandem rewind --json`), and its journal's per-key outcomes. */
export interface RecordedRewind {
  toTime: string;
  /** ms since the drill's zero */
  startedAtMs: number;
  durationMs: number;
  /** runs of the command (it is asked again while T is not closed yet) */
  attempts: number;
  exitCode: number | null;
  id: string | null;
  done: boolean;
  written: number;
  counts: Record<string, number>;
  errors: { key: string; error: string }[];
  notCoveredBy: string[];
  /** the journal: each key's class, what the rewind did, the dot it wrote */
  keys: Record<string, { class: string; action: string; dot?: string }>;
  /** why it did not run to the end (a refusal, a crash, no JSON answer) */
  error: string | null;
}

export interface BadDeleteRecording {
  table: string;
  prefix: string;
  seedSite: string;
  deleteSite: string;
  /** key → the value written before the fault */
  seeded: Record<string, JsonObject>;
  /** seeded keys whose delete was acknowledged */
  deleted: string[];
  /** ms since the drill's zero, and wall ms, at which the bulk delete started */
  deleteAtMs: number | null;
  deleteWallMs: number | null;
  /** how long after the delete started no site showed an item of the prefix (null: not within the bound) */
  goneEverywhereAfterMs: number | null;
  /** prefix keys written again after the delete (changed after T: the rewind must skip them) */
  rewrittenAfter: Record<string, JsonObject>;
  /** keys outside the prefix written after the delete (the rewind must not touch them) */
  untouched: Record<string, JsonObject>;
  rewind: RecordedRewind | null;
}

const listMax = 50;

export interface BadDeleteReport {
  table: string;
  prefix: string;
  deleteSite: string;
  toTime: string | null;
  seeded: number;
  deleted: number;
  /** deleted items nothing wrote since: what the rewind must bring back */
  toRestore: number;
  /** of those, the items back with their value at every site: count and a bounded list */
  restored: number;
  restoredKeys: string[];
  /** deleted items not back (or not with their value) at some site: count and a bounded list */
  notRestoredCount: number;
  notRestored: { site: string; key: string; why: string }[];
  /** keys the rewind skipped (changed or created after T), bounded */
  skippedCount: number;
  skipped: { key: string; class: string }[];
  /** keys written after the delete (outside the prefix, or rewritten inside it) checked at every site */
  untouchedChecked: number;
  untouchedChangedCount: number;
  untouchedChanged: { site: string | null; key: string; why: string }[];
  rewindId: string | null;
  rewindMs: number | null;
  rewindDone: boolean;
  goneEverywhereAfterMs: number | null;
  passed: boolean;
  failures: string[];
}

const same = (a: unknown, b: unknown) => canonicalJson(a as JsonValue) === canonicalJson(b as JsonValue);
const shown = (v: unknown) => (v === undefined ? 'absent' : JSON.stringify(v));

export function checkBadDelete(rec: BadDeleteRecording, finals: SiteFinal[], conflicts: ConflictRecord[], slo: NonNullable<Slo['rewind']>): BadDeleteReport {
  const failures: string[] = [];
  const seededCount = Object.keys(rec.seeded).length;
  const rewind = rec.rewind;
  if (rec.deleted.length < seededCount) failures.push(`bad-delete: the bulk delete took ${rec.deleted.length} of ${seededCount} seeded items`);
  if (rec.deleted.length > 0 && rec.goneEverywhereAfterMs === null) failures.push('bad-delete: the delete did not reach every site');
  if (rewind === null) failures.push('bad-delete: the rewind did not run');
  else if (rewind.error !== null || rewind.exitCode !== 0 || !rewind.done)
    failures.push(
      `bad-delete: the rewind did not complete (exit ${rewind.exitCode}${rewind.error ? `: ${rewind.error}` : ''}${rewind.errors.length > 0 ? `; ${rewind.errors.length} keys failed, first ${rewind.errors[0]!.key}: ${rewind.errors[0]!.error}` : ''}${rewind.notCoveredBy.length > 0 ? `; not covered by ${rewind.notCoveredBy.join(', ')}` : ''})`,
    );

  const notRestored: BadDeleteReport['notRestored'] = [];
  const notBackSomewhere = new Set<string>();
  const changed: BadDeleteReport['untouchedChanged'] = [];
  const value = (f: SiteFinal, key: string) => {
    const item = f.items.get(itemRef(rec.table, key));
    return item?.live ? item.value : undefined;
  };
  for (const f of finals) {
    for (const key of rec.deleted) {
      const now = value(f, key);
      const rewritten = rec.rewrittenAfter[key];
      if (rewritten !== undefined) {
        if (!same(now, rewritten)) changed.push({ site: f.site, key, why: `written after the delete as ${shown(rewritten)}, now ${shown(now)}` });
      } else if (!same(now, rec.seeded[key])) {
        notBackSomewhere.add(key);
        notRestored.push({ site: f.site, key, why: now === undefined ? 'absent' : `holds ${shown(now)}, not ${shown(rec.seeded[key])}` });
      }
    }
    for (const [key, written] of Object.entries(rec.untouched)) {
      const now = value(f, key);
      if (!same(now, written)) changed.push({ site: f.site, key, why: `written after the delete as ${shown(written)}, now ${shown(now)}` });
    }
  }
  // the rewind's own account: no write outside its prefix, none over a key written after the delete
  for (const [key, o] of Object.entries(rewind?.keys ?? {}))
    if (o.action === 'written' && (!key.startsWith(rec.prefix) || rec.rewrittenAfter[key] !== undefined)) changed.push({ site: null, key, why: `the rewind wrote it (${o.class})` });
  const rewound = new Set<string>();
  for (const c of conflicts)
    if (c.reason === 'rewound' && c.table === rec.table && !rewound.has(c.key) && (!c.key.startsWith(rec.prefix) || rec.rewrittenAfter[c.key] !== undefined)) {
      rewound.add(c.key);
      changed.push({ site: c.site, key: c.key, why: `the rewind overwrote ${c.loserDot}` });
    }

  const restoredTarget = rec.deleted.filter((k) => rec.rewrittenAfter[k] === undefined);
  const restoredKeys = restoredTarget.filter((k) => !notBackSomewhere.has(k));
  if (finals.length === 0) failures.push('bad-delete: no site\'s final state was read');
  if (notRestored.length > 0 && slo.restoredAllSites)
    failures.push(
      `bad-delete: ${notBackSomewhere.size} of ${restoredTarget.length} deleted items not restored at every site (${notRestored
        .slice(0, 5)
        .map((n) => `${n.key} at ${n.site}: ${n.why}`)
        .join('; ')})`,
    );
  if (changed.length > slo.untouchedChangedMax)
    failures.push(`bad-delete: ${changed.length} untouched keys changed (SLO ${slo.untouchedChangedMax}): ${changed.slice(0, 5).map((c) => `${c.key}${c.site ? ` at ${c.site}` : ''}: ${c.why}`).join('; ')}`);

  const skipped = Object.entries(rewind?.keys ?? {})
    .filter(([, o]) => o.action === 'skipped')
    .map(([key, o]) => ({ key, class: o.class }));
  return {
    table: rec.table,
    prefix: rec.prefix,
    deleteSite: rec.deleteSite,
    toTime: rewind?.toTime ?? null,
    seeded: seededCount,
    deleted: rec.deleted.length,
    toRestore: restoredTarget.length,
    restored: restoredKeys.length,
    restoredKeys: restoredKeys.slice(0, listMax),
    notRestoredCount: notRestored.length,
    notRestored: notRestored.slice(0, listMax),
    skippedCount: skipped.length,
    skipped: skipped.slice(0, listMax),
    untouchedChecked: Object.keys(rec.untouched).length + Object.keys(rec.rewrittenAfter).length,
    untouchedChangedCount: changed.length,
    untouchedChanged: changed.slice(0, listMax),
    rewindId: rewind?.id ?? null,
    rewindMs: rewind === null ? null : Math.round(rewind.durationMs),
    rewindDone: rewind?.done ?? false,
    goneEverywhereAfterMs: rec.goneEverywhereAfterMs,
    passed: failures.length === 0,
    failures,
  };
}
