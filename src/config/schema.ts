// The cluster config (CONTRACT.md, "Config file"): one typed schema that validates the YAML/JSON
// file, fills defaults, and names the exact path of anything wrong.
import { z } from 'zod';
import { routerSchema } from './router-schema.js';

export const siteIdPattern = /^[a-z0-9-]{1,32}$/;
const siteId = z.string().regex(siteIdPattern, 'expected [a-z0-9-]{1,32}');
const httpUrl = z.string().regex(/^https?:\/\/[^\s/]+(\/[^\s]*)?$/, 'expected an http(s) URL');

export const siteSchema = z.strictObject({
  id: siteId,
  url: httpUrl,
  app: httpUrl.optional(),
  region: z.string().min(1).max(64).optional(),
  location: z.strictObject({ lat: z.number().min(-90).max(90), lon: z.number().min(-180).max(180) }).optional(),
});

export const witnessSchema = z.strictObject({ id: siteId, url: httpUrl });

export const tableNamePattern = /^[A-Za-z0-9_.-]{1,64}$/;

const homeSchema = z.discriminatedUnion('from', [
  z.strictObject({ from: z.literal('key-prefix'), separator: z.string().min(1).max(8).default(':') }),
  // the partition is the key part before the separator; the first site to write to it becomes its home
  z.strictObject({ from: z.literal('first-writer'), separator: z.string().min(1).max(8).default(':') }),
]);

/**
 * The system's `global` table of first-writer home assignments (topology/home-registry.ts): one
 * item per claimed partition, key `<table>/<partition>`, value `{ site }`. Added to every config
 * that has a `first-writer` table; owned and failed over like any global table, quorum durability,
 * so an assignment once answered survives any failover.
 */
export const homeRegistryTable = '_homes';

export const tableSchema = z
  .strictObject({
    pattern: z.enum(['local', 'global', 'partitioned']).default('local'),
    conflict: z.enum(['lww', 'merge', 'crdt', 'custom']).default('lww'),
    fields: z.record(z.string().min(1).max(255), z.enum(['counter', 'set'])).optional(),
    /** For `custom`: a JS module path (relative to the config file) exporting `merge`. */
    merge: z.string().min(1).optional(),
    mergeTimeoutMs: z.number().int().min(1).max(1000).default(50),
    home: homeSchema.optional(),
    writeSite: siteId.optional(),
    /** for owned tables: where ownership goes when its owner fails, in order (default: the config's site order) */
    failoverOrder: z.array(siteId).min(1).max(50).optional(),
    durability: z.enum(['local', 'quorum', 'all']).default('local'),
  })
  .superRefine((t, ctx) => {
    if (t.fields !== undefined && t.conflict !== 'crdt')
      ctx.addIssue({ code: 'custom', path: ['fields'], message: 'fields are only allowed with conflict: crdt' });
    if (t.conflict === 'custom' && t.merge === undefined)
      ctx.addIssue({ code: 'custom', path: ['merge'], message: 'conflict: custom needs merge: <module path>' });
    if (t.pattern === 'global' && t.writeSite === undefined)
      ctx.addIssue({ code: 'custom', path: ['writeSite'], message: 'pattern: global needs writeSite' });
    if (t.pattern !== 'global' && t.writeSite !== undefined)
      ctx.addIssue({ code: 'custom', path: ['writeSite'], message: 'writeSite is only allowed with pattern: global' });
    if (t.pattern === 'partitioned' && t.home === undefined)
      ctx.addIssue({ code: 'custom', path: ['home'], message: 'pattern: partitioned needs home' });
    if (t.pattern === 'local' && t.failoverOrder !== undefined)
      ctx.addIssue({ code: 'custom', path: ['failoverOrder'], message: 'failoverOrder is only allowed with pattern: global or partitioned' });
    if (t.pattern !== 'partitioned' && t.home !== undefined)
      ctx.addIssue({ code: 'custom', path: ['home'], message: 'home is only allowed with pattern: partitioned' });
  });

/** Topology, leases and failover (ARCHITECTURE.md, "Topology, leases and failover"). */
export const topologySchema = z
  .strictObject({
    leaseMs: z.number().int().min(100).max(60_000).default(2_000),
    commitBudgetMs: z.number().int().min(1).max(10_000).default(200),
    driftRateMax: z.number().min(0).max(0.1).default(0.001),
    autoFailover: z.boolean().default(true),
    failback: z.enum(['manual', 'auto']).default('manual'),
    switchoverWaitMs: z.number().int().min(100).max(600_000).default(5_000),
    degradedDurability: z.enum(['refuse', 'allow']).default('refuse'),
  })
  .superRefine((t, ctx) => {
    if (t.commitBudgetMs * 2 > t.leaseMs)
      ctx.addIssue({ code: 'custom', path: ['commitBudgetMs'], message: `expected at most half of leaseMs (${t.leaseMs})` });
  });

/** `1h`, `30m`, `45s`, `500ms`, `2d`: a duration in ms. */
const duration = z
  .string()
  .regex(/^\d+(ms|s|m|h|d)$/, 'expected a duration such as 500ms, 30s, 10m, 1h, 2d')
  .transform((v) => {
    const [, n, unit] = /^(\d+)(ms|s|m|h|d)$/.exec(v)!;
    return Number(n) * { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[unit as 'ms' | 's' | 'm' | 'h' | 'd'];
  });

/** CONTRACT.md, "Backups": every site backs itself up continuously to `target`. */
export const backupSchema = z.strictObject({
  target: z.string().regex(/^(file:\/\/\/|s3:\/\/)[^\s]+$/, 'expected file:///path or s3://bucket/prefix'),
  // a duration string, or ms (what a parsed config holds, so that it can be written out and read again)
  snapshotEvery: z.union([duration, z.number().int().positive()]).default(3_600_000),
  retention: z.strictObject({ days: z.number().positive().max(3650).default(7) }).default({ days: 7 }),
  /** JSON key file { current, keys: { id: base64 } }; relative to the config file */
  encryptionKeyFile: z.string().min(1).optional(),
  /** how much of this site's own log compaction may keep for an archive that lags, then it proceeds (a gap) */
  maxHoldBytes: z.number().int().positive().default(1 << 30),
  maxHoldMs: z.number().int().positive().default(6 * 3_600_000),
});

export const clusterSchema = z
  .strictObject({
    cluster: z.string().regex(/^[a-z0-9-]{1,64}$/, 'expected [a-z0-9-]{1,64}'),
    secret: z.string().min(16, 'expected at least 16 characters'),
    sites: z.array(siteSchema).min(1).max(50),
    witnesses: z.array(witnessSchema).default([]),
    tables: z.record(z.string().regex(tableNamePattern, 'expected a table name [A-Za-z0-9_.-]{1,64}'), tableSchema),
    router: routerSchema.default(() => routerSchema.parse({})),
    topology: topologySchema.default(() => topologySchema.parse({})),
    /** topology changes over HTTP need `Authorization: Bearer <adminToken>`; unset: loopback clients only */
    adminToken: z.string().min(16, 'expected at least 16 characters').optional(),
    backup: backupSchema.optional(),
  })
  .superRefine((c, ctx) => {
    const ids = new Set<string>();
    [...c.sites, ...c.witnesses].forEach((s, i) => {
      if (ids.has(s.id)) {
        const inSites = i < c.sites.length;
        ctx.addIssue({
          code: 'custom',
          path: inSites ? ['sites', i, 'id'] : ['witnesses', i - c.sites.length, 'id'],
          message: `duplicate id ${s.id}`,
        });
      }
      ids.add(s.id);
    });
    const registry = c.tables[homeRegistryTable];
    if (registry !== undefined && (registry.pattern !== 'global' || registry.durability !== 'quorum' || registry.conflict !== 'lww'))
      ctx.addIssue({ code: 'custom', path: ['tables', homeRegistryTable], message: `the table name ${homeRegistryTable} is reserved for the first-writer home registry` });
    for (const [name, t] of Object.entries(c.tables)) {
      if (t.writeSite !== undefined && !c.sites.some((s) => s.id === t.writeSite))
        ctx.addIssue({ code: 'custom', path: ['tables', name, 'writeSite'], message: `unknown site ${t.writeSite}` });
      t.failoverOrder?.forEach((id, i) => {
        if (!c.sites.some((s) => s.id === id)) ctx.addIssue({ code: 'custom', path: ['tables', name, 'failoverOrder', i], message: `unknown site ${id}` });
      });
    }
  })
  .transform((c) => withHomeRegistry(c));

/**
 * Adds the home registry table when some table assigns homes by first writer (idempotent: a parsed
 * config written out and read again keeps the same one). It follows the first such table's
 * failoverOrder, else the config's site order.
 */
function withHomeRegistry<C extends { sites: { id: string }[]; tables: Record<string, z.infer<typeof tableSchema>> }>(c: C): C {
  const firstWriter = Object.entries(c.tables).filter(([name, t]) => name !== homeRegistryTable && t.home?.from === 'first-writer');
  if (firstWriter.length === 0 || c.tables[homeRegistryTable] !== undefined) return c;
  const order = firstWriter[0]![1].failoverOrder;
  const registry = tableSchema.parse({
    pattern: 'global',
    writeSite: order?.[0] ?? c.sites[0]!.id,
    ...(order !== undefined ? { failoverOrder: order } : {}),
    durability: 'quorum',
  });
  return { ...c, tables: { ...c.tables, [homeRegistryTable]: registry } };
}

export type ClusterConfig = z.infer<typeof clusterSchema>;
export type SiteConfig = z.infer<typeof siteSchema>;
export type TableConfig = z.infer<typeof tableSchema>;
export type TopologyConfig = z.infer<typeof topologySchema>;
export type BackupConfig = z.infer<typeof backupSchema>;
export type TablePattern = TableConfig['pattern'];
export type ConflictPolicy = TableConfig['conflict'];
