// The runtime view of the configured tables: semantics for the core, ownership for routing.
import { RequestError } from '../core/errors.js';
import type { TableSemantics } from '../core/materialize.js';
import type { ClusterConfig, TableConfig } from '../config/schema.js';

export interface TableRuntime {
  name: string;
  config: TableConfig;
  semantics: TableSemantics;
}

export function buildTables(config: ClusterConfig, customMerges: Record<string, TableSemantics['customMerge']> = {}): Map<string, TableRuntime> {
  const out = new Map<string, TableRuntime>();
  for (const [name, t] of Object.entries(config.tables)) {
    const semantics: TableSemantics = { conflict: t.conflict, fields: t.fields ?? {} };
    const merge = customMerges[name];
    if (merge) semantics.customMerge = merge;
    out.set(name, { name, config: t, semantics });
  }
  return out;
}

/**
 * The site that accepts writes for this item: anyone for `local` (undefined), the write site for
 * `global`, the key's home for `partitioned`. Homes come from the key only, never from a value.
 */
export function ownerOf(config: ClusterConfig, table: TableRuntime, key: string): string | undefined {
  const t = table.config;
  if (t.pattern === 'local') return undefined;
  if (t.pattern === 'global') return t.writeSite;
  const home = t.home!;
  if (home.from === 'key-prefix') {
    const i = key.indexOf(home.separator);
    if (i <= 0)
      throw RequestError.badRequest(`key must start with a home site or region followed by "${home.separator}" (table ${table.name} is partitioned by key prefix)`, [
        { path: 'key', message: `expected <site or region>${home.separator}<id>` },
      ]);
    const prefix = key.slice(0, i);
    const site = config.sites.find((s) => s.id === prefix) ?? config.sites.find((s) => s.region === prefix);
    if (!site)
      throw RequestError.badRequest(`key prefix "${prefix}" names no site or region`, [
        { path: 'key', message: `unknown home ${prefix}; expected one of ${config.sites.map((s) => s.id).join(', ')}` },
      ]);
    return site.id;
  }
  throw RequestError.unavailable(
    'home-assignment-unavailable',
    `table ${table.name} assigns homes by first writer, which needs the topology service; not available on this cluster yet`,
    5,
  );
}
