// The layout of a backup target, and a catalog of it read back:
//   <cluster>/<site>/<incarnation>/snap/<20-digit n>   snapshots of one timeline
//   <cluster>/<site>/<incarnation>/seg/<20-digit n>    its log segments, hash-chained
//   <cluster>/<site>/<incarnation>/manifest.json       a cache of the objects' headers
// Each incarnation of a site is a timeline: a restored site never writes into its parent's. The
// listing is the truth; the manifest only saves reading every object's header, and an object the
// manifest does not name (or names but the listing lacks) is taken from the listing.
import { incarnationOf, originOf, siteOfOrigin } from '../core/vector.js';
import { BackupError } from './errors.js';
import { parseHeader, type ObjectHeader } from './object-format.js';
import type { BackupTarget } from './targets/target.js';

export type ObjectKind = 'snap' | 'seg';

export interface CatalogObject {
  name: string;
  n: number;
  size: number;
  header: ObjectHeader;
}

export interface Timeline {
  site: string;
  incarnation: number;
  origin: string;
  snaps: CatalogObject[];
  segs: CatalogObject[];
}

export function objectName(cluster: string, site: string, incarnation: number, kind: ObjectKind, n: number): string {
  return `${cluster}/${site}/${incarnation}/${kind}/${String(n).padStart(20, '0')}`;
}

export function manifestName(cluster: string, site: string, incarnation: number): string {
  return `${cluster}/${site}/${incarnation}/manifest.json`;
}

export function timelineOfOrigin(origin: string): { site: string; incarnation: number } {
  return { site: siteOfOrigin(origin), incarnation: incarnationOf(origin) };
}

const namePattern = /^([^/]+)\/([^/]+)\/(\d+)\/(snap|seg)\/(\d{20})$/;

/** Reads a stored object's header (one ranged read, two if the header is long). */
export async function readHeader(target: BackupTarget, name: string): Promise<ObjectHeader> {
  const head = await target.getHead(name, 16 * 1024);
  if (head.length >= 12) {
    const len = head.readUInt32BE(8);
    if (12 + len > head.length) return parseHeader(name, await target.getHead(name, 12 + len));
  }
  return parseHeader(name, head);
}

/** Every timeline under `cluster` (of one site, if given), objects in order. */
export async function readCatalog(target: BackupTarget, cluster: string, site?: string): Promise<Timeline[]> {
  const listed = await target.list(site === undefined ? `${cluster}/` : `${cluster}/${site}/`);
  const manifests = new Map<string, Record<string, ObjectHeader>>();
  for (const o of listed.filter((x) => x.name.endsWith('/manifest.json'))) {
    try {
      const parsed = JSON.parse((await target.get(o.name)).toString()) as { objects?: Record<string, ObjectHeader> };
      manifests.set(o.name.slice(0, -'manifest.json'.length), parsed.objects ?? {});
    } catch {
      // a cache: unreadable means rebuilt from the objects
    }
  }
  const timelines = new Map<string, Timeline>();
  for (const o of listed) {
    const m = namePattern.exec(o.name);
    if (m === null) continue;
    const [, c, s, inc, kind, n] = m;
    if (c !== cluster) continue;
    const key = `${s}/${inc}`;
    let t = timelines.get(key);
    if (t === undefined) {
      t = { site: s!, incarnation: Number(inc), origin: originOf(s!, Number(inc)), snaps: [], segs: [] };
      timelines.set(key, t);
    }
    const cached = manifests.get(`${c}/${s}/${inc}/`)?.[o.name];
    const header = cached ?? (await readHeader(target, o.name));
    (kind === 'snap' ? t.snaps : t.segs).push({ name: o.name, n: Number(n), size: o.size, header });
  }
  const out = [...timelines.values()];
  for (const t of out) {
    t.snaps.sort((a, b) => a.n - b.n);
    t.segs.sort((a, b) => a.n - b.n);
  }
  return out.sort((a, b) => (a.site < b.site ? -1 : a.site > b.site ? 1 : a.incarnation - b.incarnation));
}

export function timelineFor(timelines: Timeline[], origin: string): Timeline | undefined {
  const { site, incarnation } = timelineOfOrigin(origin);
  return timelines.find((t) => t.site === site && t.incarnation === incarnation);
}

export function requireTimeline(timelines: Timeline[], origin: string, url: string): Timeline {
  const t = timelineFor(timelines, origin);
  if (t === undefined) {
    const { site, incarnation } = timelineOfOrigin(origin);
    throw new BackupError('missing-object', `no backup of origin ${origin} at ${url} (expected objects under ${site}/${incarnation}/)`);
  }
  return t;
}
