// From an item state to the record the store keeps: materialized value, version, content hash.
import { hash } from 'node:crypto';
import { canonicalJson, type JsonValue } from '../core/canonical-json.js';
import { canonicalVector } from '../core/vector.js';
import { siblingsByVersion, versionOf, wholeItem, type ItemState } from '../core/item.js';
import { materialize, type TableSemantics } from '../core/materialize.js';
import type { ItemRecord } from '../store/types.js';

export function buildRecord(table: string, key: string, semantics: TableSemantics, state: ItemState): ItemRecord {
  const m = materialize(semantics, state);
  const version = versionOf(state);
  const digest = m.live ? hash('sha256', canonicalJson([key, digestedContent(semantics, state, m.value), canonicalVector(state.c)]), 'hex').slice(0, 32) : '';
  return { table, key, state, live: m.live, value: m.live ? m.value : undefined, version, origin: m.origin, hash: digest };
}

/**
 * What the item hash (per-table digests, anti-entropy buckets) covers besides key and context: the
 * value, which for lww, merge and crdt is a pure function of the state. A custom item whose user merge
 * ran (two or more live siblings) is hashed by its siblings instead (an array, so it never equals a
 * value, which is an object): equal states then give equal digests even if the merges had resolved
 * differently somewhere, and a repair is needed only where the states differ. Items the merge does
 * not touch keep the value hash, so digests written before this rule stay valid.
 */
function digestedContent(semantics: TableSemantics, state: ItemState, value: JsonValue): JsonValue {
  if (semantics.conflict !== 'custom') return value;
  const sibs = state.r[wholeItem] ?? [];
  if (sibs.filter((s) => !s.t).length < 2) return value;
  return siblingsByVersion(sibs).map((s) => [s.d, s.h, s.s, s.t ? null : s.v!]);
}
