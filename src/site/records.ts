// From an item state to the record the store keeps: materialized value, version, content hash.
import { hash } from 'node:crypto';
import { canonicalJson } from '../core/canonical-json.js';
import { canonicalVector } from '../core/vector.js';
import { versionOf, type ItemState } from '../core/item.js';
import { materialize, type TableSemantics } from '../core/materialize.js';
import type { ItemRecord } from '../store/types.js';

export function buildRecord(table: string, key: string, semantics: TableSemantics, state: ItemState): ItemRecord {
  const m = materialize(semantics, state);
  const version = versionOf(state);
  const digest = m.live ? hash('sha256', canonicalJson([key, m.value, canonicalVector(state.c)]), 'hex').slice(0, 32) : '';
  return { table, key, state, live: m.live, value: m.live ? m.value : undefined, version, origin: m.origin, hash: digest };
}
