// The site's side of `tandem rewind`: one item set back to its value at a cut, decided inside the
// commit (core/rewind.ts) at this site, the executing one (or the owner, for owned tables: the
// HTTP layer forwards). A value the rewind overwrote goes to the conflict feed with reason
// `rewound`. `onlyIfLatest` (undo): only while the item's latest write is still that dot.
import { RequestError } from '../core/errors.js';
import { decideRewind, opTo, type RewindClass } from '../core/rewind.js';
import type { JsonObject } from '../core/write.js';
import type { VersionVector } from '../core/vector.js';
import type { Env } from '../platform/env.js';
import type { SiteNode } from './site-node.js';
import type { TableRuntime } from './tables.js';

export interface RewindItemRequest {
  rewindId: string;
  cut: VersionVector;
  /** the value at the cut (null: absent or deleted then) */
  atT: JsonObject | null;
  overwrite: boolean;
  dryRun: boolean;
  onlyIfLatest?: string;
}

export interface RewindItemAnswer {
  key: string;
  class: RewindClass | 'changed-since-rewind';
  action: 'written' | 'skipped' | 'none' | 'would-write';
  now: JsonObject | null;
  atT: JsonObject | null;
  dot?: string;
  version?: string;
}

function bad(path: string, message: string): RequestError {
  return RequestError.badRequest(`${path}: ${message}`, [{ path, message }]);
}

export function validateRewindRequest(body: unknown): RewindItemRequest {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw bad('body', 'expected a JSON object');
  const b = body as Record<string, unknown>;
  for (const k of Object.keys(b)) if (!['rewindId', 'cut', 'atT', 'overwrite', 'dryRun', 'onlyIfLatest'].includes(k)) throw bad(`body.${k}`, 'unknown field');
  if (typeof b['rewindId'] !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(b['rewindId'])) throw bad('body.rewindId', 'expected [A-Za-z0-9_.-]{1,64}');
  const cut = b['cut'];
  if (cut === null || typeof cut !== 'object' || Array.isArray(cut) || !Object.values(cut).every((v) => Number.isSafeInteger(v) && (v as number) >= 0))
    throw bad('body.cut', 'expected a version vector { origin: seq }');
  const atT = b['atT'];
  if (atT !== null && (typeof atT !== 'object' || Array.isArray(atT))) throw bad('body.atT', 'expected a JSON object or null');
  for (const f of ['overwrite', 'dryRun'] as const) if (b[f] !== undefined && typeof b[f] !== 'boolean') throw bad(`body.${f}`, 'expected a boolean');
  if (b['onlyIfLatest'] !== undefined && typeof b['onlyIfLatest'] !== 'string') throw bad('body.onlyIfLatest', 'expected a dot');
  return {
    rewindId: b['rewindId'],
    cut: cut as VersionVector,
    atT: atT as JsonObject | null,
    overwrite: b['overwrite'] === true,
    dryRun: b['dryRun'] === true,
    ...(typeof b['onlyIfLatest'] === 'string' ? { onlyIfLatest: b['onlyIfLatest'] } : {}),
  };
}

export async function rewindItem(env: Env, node: SiteNode, table: TableRuntime, key: string, req: RewindItemRequest): Promise<RewindItemAnswer> {
  let answer: RewindItemAnswer = { key, class: 'unchanged', action: 'none', now: null, atT: req.atT };
  let overwritten: { value: JsonObject; version: string; origin: string; dot: string } | undefined;
  const outcome = await node.writeDecided(table, key, (current) => {
    overwritten = undefined;
    if (req.onlyIfLatest !== undefined) {
      // undo: only while the rewind's own write is still the latest
      const now = current?.live ? decideRewind(table.semantics, current.state, null, {}, false).now : null;
      if (current?.state.w.d !== req.onlyIfLatest) {
        answer = { key, class: 'changed-since-rewind', action: 'skipped', now, atT: req.atT };
        return undefined;
      }
      answer = { key, class: 'changed-after', action: req.dryRun ? 'would-write' : 'written', now, atT: req.atT };
      if (req.dryRun) return undefined;
      if (now !== null) overwritten = { value: now, version: current.version, origin: current.origin, dot: current.state.w.d };
      return opTo(table.semantics, now, req.atT);
    }
    const d = decideRewind(table.semantics, current?.state, req.atT, req.cut, req.overwrite);
    const action = d.op === undefined ? (d.class === 'unchanged' ? 'none' : 'skipped') : req.dryRun ? 'would-write' : 'written';
    answer = { key, class: d.class, action, now: d.now, atT: req.atT };
    if (d.op === undefined || req.dryRun) return undefined;
    if (d.now !== null && current !== undefined) overwritten = { value: d.now, version: current.version, origin: current.origin, dot: current.state.w.d };
    return d.op;
  });
  if (outcome !== undefined) {
    answer.dot = outcome.dot;
    answer.version = outcome.record.version;
    if (overwritten !== undefined)
      await node.recordConflicts([
        {
          table: table.name,
          key,
          loserDot: overwritten.dot,
          field: '',
          winner: { version: outcome.record.version, origin: outcome.record.origin },
          loser: { value: overwritten.value, deleted: false, version: overwritten.version, origin: overwritten.origin },
          atMs: Math.floor(env.clock.wallMs()),
          reason: 'rewound',
        },
      ]);
  }
  return answer;
}
