// First-writer homes (ARCHITECTURE.md, "Partitions"): the partition of a key is the key part before
// its table's separator; the first site to write to a partition becomes its home, recorded once in
// the system's `global` registry table (config/schema.ts, homeRegistryTable) as `<table>/<partition>`
// → `{ site }`. The assignment never changes. What moves on failover is ownership of the unit
// `<table>/<site>` (one per site, in the topology's `homes`), by the same bulk rules as key-prefix
// partitions: the registry maps partition → site, the topology maps site unit → owner.
//
// This file holds the pure parts: key parsing, registry keys and the bounded in-memory cache that
// `unitFor` reads synchronously. Filling it (local registry items, claims at the registry owner)
// is the site's part (site/home-registry.ts).
import { assert } from '../core/assert.js';
import { RequestError } from '../core/errors.js';
import { siteOfOrigin } from '../core/vector.js';
import { cutSeq, movesAway, type Topology } from './record.js';

/** How many partition → site assignments a site keeps in memory; a miss reads the store again. */
export const homeCacheEntriesMax = 1_000_000;

/** Why homes are resolved: a write claims a partition without a home; a read or an apply only looks. */
export type HomeResolveMode = 'write' | 'read' | 'apply';

/** What topology asks of the site's registry. */
export interface HomeDirectory {
  /** The home site of a partition if this site knows it now (synchronous: `unitFor`). */
  homeOf(table: string, partition: string): string | undefined;
  /**
   * Makes sure the homes of these items' partitions are known here (items of other tables are
   * ignored). 'write': a partition without a home is claimed for this site (the answer may be
   * another site that claimed it first). 'read': throws 404 when the partition has no home (no item
   * can exist). 'apply': a partition the registry owner says has no home is left unknown.
   */
  resolve(items: { table: string; key: string }[], mode: HomeResolveMode): Promise<void>;
}

/** The partition of `key` in a first-writer table: the part before the separator (400 without one). */
export function partitionOf(table: string, separator: string, key: string): string {
  const i = key.indexOf(separator);
  if (i <= 0)
    throw RequestError.badRequest(`key must start with a partition id followed by "${separator}" (table ${table} assigns homes by first writer)`, [
      { path: 'key', message: `expected <partition>${separator}<id>` },
    ]);
  return key.slice(0, i);
}

/** The registry item's key of a partition (table names hold no "/", so the split is unambiguous). */
export function registryKey(table: string, partition: string): string {
  assert(!table.includes('/'), 'table names hold no "/"');
  return `${table}/${partition}`;
}

export function parseRegistryKey(key: string): { table: string; partition: string } | undefined {
  const i = key.indexOf('/');
  return i <= 0 || i === key.length - 1 ? undefined : { table: key.slice(0, i), partition: key.slice(i + 1) };
}

/** A registry item's value: `{ site }` with a site id, or undefined if it is not one. */
export function homeOfValue(value: unknown): string | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const site = (value as { site?: unknown }).site;
  return typeof site === 'string' && site.length > 0 ? site : undefined;
}

/**
 * Whether a registry item written as (origin, seq) can no longer be made void, so that a site may
 * take it as a partition's home from its own copy without asking the registry's owner: the
 * registry's unit has moved away from the writer's site since, and the cut of the latest such move
 * holds the write. Anything else (the writer still owns the registry, or the write is beyond the cut)
 * is settled only by the owner's answer: a claim committed but not yet quorum-durable can be cut off
 * by a failover of the registry, and a site that took it would home the partition twice.
 */
export function settledByCut(t: Pick<Topology, 'changes' | 'cuts'>, unit: string, origin: string, seq: number): boolean {
  const last = movesAway(
    t.changes.filter((c) => c.unit === unit),
    siteOfOrigin(origin),
  ).at(-1);
  return last?.installEpoch !== undefined && seq <= cutSeq(t, last.installEpoch, origin);
}

/**
 * Known assignments, least recently used first out beyond `entriesMax`. An assignment never
 * changes: a second, different one for the same partition is refused (the first stays) and
 * reported to the caller, which logs it. One whose registry item a failover made void is forgotten
 * (looked up again on the next miss).
 */
export class HomeCache {
  private readonly map = new Map<string, string>();

  constructor(private readonly entriesMax = homeCacheEntriesMax) {
    assert(entriesMax > 0, 'a cache holds at least one entry');
  }

  get size(): number {
    return this.map.size;
  }

  get(table: string, partition: string): string | undefined {
    const k = registryKey(table, partition);
    const site = this.map.get(k);
    if (site !== undefined) {
      this.map.delete(k);
      this.map.set(k, site);
    }
    return site;
  }

  /** Records an assignment; false (and nothing changed) if the partition has another home already. */
  set(table: string, partition: string, site: string): boolean {
    const k = registryKey(table, partition);
    const had = this.map.get(k);
    if (had !== undefined && had !== site) return false;
    this.map.delete(k);
    this.map.set(k, site);
    if (this.map.size > this.entriesMax) this.map.delete(this.map.keys().next().value!);
    return true;
  }

  /** Forgets an assignment whose registry item turned out void; true if the partition was homed at `site` here. */
  forget(table: string, partition: string, site: string): boolean {
    const k = registryKey(table, partition);
    if (this.map.get(k) !== site) return false;
    this.map.delete(k);
    return true;
  }
}
