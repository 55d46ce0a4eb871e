// What a reader sees of an item state: its JSON value (or that it is deleted), by the table's policy.
// Deterministic in the state alone, so every site shows the same value for the same state.
import type { JsonValue } from './canonical-json.js';
import { counterValue, counterVisible, highestSibling, siblingsByVersion, wholeItem, type ItemState, type Sibling } from './item.js';

export type FieldKind = 'counter' | 'set';

/** A custom merge: given live siblings in ascending version order, returns the merged value. */
export type CustomMerge = (siblings: { value: JsonValue; version: string; origin: string }[]) => JsonValue;

export interface TableSemantics {
  conflict: 'lww' | 'merge' | 'crdt' | 'custom';
  fields: Record<string, FieldKind>;
  customMerge?: CustomMerge;
}

export type Materialized = { live: true; value: { [k: string]: JsonValue }; origin: string } | { live: false; origin: string };

export function materialize(table: TableSemantics, state: ItemState): Materialized {
  const origin = state.w.s;
  if (table.conflict === 'lww' || table.conflict === 'custom') {
    const sibs = state.r[wholeItem] ?? [];
    const live = sibs.filter((s) => !s.t);
    if (table.conflict === 'lww' || live.length <= 1) {
      const top = table.conflict === 'lww' ? highestSibling(sibs) : live[0];
      if (top === undefined || top.t) return { live: false, origin };
      return { live: true, value: top.v as { [k: string]: JsonValue }, origin };
    }
    return { live: true, value: mergeCustom(table, live), origin };
  }
  if (state.x.length === 0) return { live: false, origin };
  const value: { [k: string]: JsonValue } = {};
  for (const f of Object.keys(state.r).sort()) {
    const top = highestSibling(state.r[f]!);
    if (top !== undefined && !top.t) value[f] = top.v!;
  }
  for (const f of Object.keys(state.k).sort()) {
    const c = state.k[f]!;
    if (counterVisible(c)) value[f] = counterValue(c);
  }
  for (const f of Object.keys(state.s).sort()) {
    const elements = Object.keys(state.s[f]!).sort();
    if (elements.length > 0) value[f] = elements.map((e) => JSON.parse(e) as JsonValue);
  }
  return { live: true, value, origin };
}

function mergeCustom(table: TableSemantics, live: Sibling[]): { [k: string]: JsonValue } {
  const sorted = siblingsByVersion(live);
  const fallback = sorted[sorted.length - 1]!.v as { [k: string]: JsonValue };
  if (!table.customMerge) return fallback;
  try {
    const merged = table.customMerge(sorted.map((s) => ({ value: s.v!, version: `${s.h}-${s.s}`, origin: s.s })));
    if (merged === null || typeof merged !== 'object' || Array.isArray(merged)) return fallback;
    return merged;
  } catch {
    // A merge that throws or exceeds its step, memory or stack bound (custom-merge.ts) falls back to
    // LWW over the same siblings, identically on every site.
    return fallback;
  }
}
