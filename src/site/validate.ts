// Input validation for the data API: every request body, key, query and header is checked here,
// and each problem names the exact input that was wrong. Nothing reaches the store unvalidated.
import { z } from 'zod';
import { RequestError, type FieldProblem } from '../core/errors.js';
import type { JsonValue } from '../core/canonical-json.js';
import type { ItemOp, JsonObject, PatchOp } from '../core/write.js';
import { limits } from '../limits.js';
import { formatIssues } from '../config/load.js';

const depthMax = 32;

export function validateKey(key: string): string {
  const bytes = Buffer.byteLength(key, 'utf8');
  const bad = (message: string) => RequestError.badRequest(`invalid key: ${message}`, [{ path: 'key', message }]);
  if (bytes < 1) throw bad('a key is 1 to 1024 bytes of UTF-8; got an empty key');
  if (bytes > limits.keyBytesMax) throw bad(`a key is at most ${limits.keyBytesMax} bytes of UTF-8; got ${bytes}`);
  if (key === '.' || key === '..') throw bad('"." and ".." are not valid keys');
  if (!isWellFormedUtf16(key)) throw bad('the key is not valid UTF-8 (lone surrogate)');
  return key;
}

function isWellFormedUtf16(s: string): boolean {
  return !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s);
}

/**
 * Rejects what cannot be stored: nesting deeper than `depthMax`, and numbers that are not finite
 * (JSON.parse reads 1e400 as Infinity, which canonical JSON cannot write; it would fail later, at
 * commit, as a 500).
 */
function checkJsonValue(value: unknown, path: string): void {
  const problem = firstUnstorable(value, depthMax);
  if (problem === undefined) return;
  const where = path + problem.at;
  const message = problem.kind === 'too-deep' ? `nested deeper than ${depthMax} levels` : 'numbers must be finite';
  throw RequestError.badRequest(`${where}: ${message}`, [{ path: where, message }]);
}

/** The first node (its path from `value`) that cannot be stored, or undefined. Builds no path on the way. */
function firstUnstorable(value: unknown, levels: number): { at: string; kind: 'too-deep' | 'not-finite' } | undefined {
  if (levels < 0) return { at: '', kind: 'too-deep' };
  if (typeof value === 'number') return Number.isFinite(value) ? undefined : { at: '', kind: 'not-finite' };
  if (value === null || typeof value !== 'object') return undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const below = firstUnstorable(value[i], levels - 1);
      if (below !== undefined) return { at: `[${i}]${below.at}`, kind: below.kind };
    }
    return undefined;
  }
  for (const k in value) {
    const below = firstUnstorable((value as Record<string, unknown>)[k], levels - 1);
    if (below !== undefined) return { at: `.${k}${below.at}`, kind: below.kind };
  }
  return undefined;
}

function objectBody(body: unknown, path: string): JsonObject {
  if (body === undefined || body === null)
    throw RequestError.badRequest('the request needs a JSON object body', [{ path, message: 'missing body' }]);
  if (typeof body !== 'object' || Array.isArray(body))
    throw RequestError.badRequest(`${path}: expected a JSON object, got ${Array.isArray(body) ? 'an array' : typeof body}`, [
      { path, message: 'expected a JSON object' },
    ]);
  checkJsonValue(body, path);
  const size = Buffer.byteLength(JSON.stringify(body), 'utf8');
  if (size > limits.itemBodyBytesMax) throw RequestError.tooLarge(`${path}: an item is at most ${limits.itemBodyBytesMax} bytes; got ${size}`);
  if (Object.keys(body).length > limits.fieldsPerItemMax)
    throw RequestError.badRequest(`${path}: at most ${limits.fieldsPerItemMax} top-level fields`, [{ path, message: 'too many fields' }]);
  return body as JsonObject;
}

export function validatePut(body: unknown, path = 'body'): ItemOp {
  return { op: 'put', value: objectBody(body, path) };
}

const jsonValue: z.ZodType<JsonValue> = z.lazy(() =>
  z.union([z.null(), z.boolean(), z.number(), z.string(), z.array(jsonValue), z.record(z.string(), jsonValue)]),
);

const patchSchema = z
  .strictObject({
    set: z.record(z.string(), jsonValue).optional(),
    unset: z.array(z.string()).max(limits.fieldsPerItemMax).optional(),
    increment: z.record(z.string(), z.number().int().refine(Number.isSafeInteger, 'expected a safe integer')).optional(),
    add: z.record(z.string(), z.array(jsonValue).max(limits.setElementsMax)).optional(),
    remove: z.record(z.string(), z.array(jsonValue).max(limits.setElementsMax)).optional(),
  })
  .superRefine((p, ctx) => {
    const touched = new Map<string, string>();
    for (const opName of ['set', 'unset', 'increment', 'add', 'remove'] as const) {
      const v = p[opName];
      const fields = v === undefined ? [] : Array.isArray(v) ? v : Object.keys(v);
      for (const f of fields) {
        const prev = touched.get(f);
        if (prev !== undefined && !(prev === 'add' && opName === 'remove'))
          ctx.addIssue({ code: 'custom', path: [opName, f], message: `field ${f} is also in ${prev}` });
        touched.set(f, opName);
      }
    }
    if (touched.size === 0) ctx.addIssue({ code: 'custom', path: [], message: 'a patch needs at least one of set, unset, increment, add, remove' });
  });

export function validatePatch(body: unknown, path = 'body'): ItemOp {
  objectBody(body, path);
  const parsed = patchSchema.safeParse(body);
  if (!parsed.success) throw zodProblem(parsed.error, path);
  return { op: 'patch', patch: parsed.data as PatchOp };
}

function zodProblem(error: z.ZodError, prefix: string): RequestError {
  const errors: FieldProblem[] = formatIssues(error.issues).map((line) => {
    const i = line.indexOf(': ');
    const p = line.slice(0, i);
    return { path: p === '(root)' ? prefix : `${prefix}.${p}`, message: line.slice(i + 2) };
  });
  return RequestError.badRequest(errors.map((e) => `${e.path}: ${e.message}`).join('; '), errors);
}

const batchSchema = z.strictObject({
  ops: z
    .array(
      z.strictObject({
        op: z.enum(['put', 'patch', 'delete']),
        table: z.string().min(1),
        key: z.string(),
        value: z.unknown().optional(),
      }),
    )
    .min(1)
    .max(limits.batchOpsMax),
});

export interface ValidatedBatchOp {
  table: string;
  key: string;
  itemOp: ItemOp;
}

export function validateBatch(body: unknown): ValidatedBatchOp[] {
  objectBody(body, 'body');
  const parsed = batchSchema.safeParse(body);
  if (!parsed.success) throw zodProblem(parsed.error, 'body');
  return parsed.data.ops.map((o, i) => {
    const path = `body.ops[${i}]`;
    try {
      validateKey(o.key);
    } catch (e) {
      throw RequestError.badRequest(`${path}.key: ${(e as Error).message}`, [{ path: `${path}.key`, message: (e as Error).message }]);
    }
    if (o.op === 'delete') {
      if (o.value !== undefined)
        throw RequestError.badRequest(`${path}.value: a delete takes no value`, [{ path: `${path}.value`, message: 'unexpected' }]);
      return { table: o.table, key: o.key, itemOp: { op: 'delete' } };
    }
    const itemOp = o.op === 'put' ? validatePut(o.value, `${path}.value`) : validatePatch(o.value, `${path}.value`);
    return { table: o.table, key: o.key, itemOp };
  });
}

export function oneOf<T extends string>(header: string, value: string | undefined, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw RequestError.badRequest(`${header}: expected one of ${allowed.join(', ')}, got "${value.slice(0, 64)}"`, [
    { path: `header.${header.toLowerCase()}`, message: `expected one of ${allowed.join(', ')}` },
  ]);
}

/**
 * `If-Match: "<version>"` (quoted, as an ETag) or the bare version; a bare `*` means "exists"
 * (a quoted `"*"` is an ETag like any other, RFC 9110, and matches no version).
 */
export function parseIfMatch(value: string | undefined): '*' | { version: string } | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (v === '*') return '*';
  const m = /^"([^"]{1,128})"$/.exec(v) ?? /^([0-9a-f]{16}-[a-z0-9-]{1,32}-[0-9a-f]{12})$/.exec(v);
  if (!m) throw RequestError.badRequest('If-Match: expected "<version>" (an ETag from this API) or *', [{ path: 'header.if-match', message: 'malformed' }]);
  return { version: m[1]! };
}

export function parseIfNoneMatch(value: string | undefined, forWrite: boolean): { any: boolean; versions: string[] } | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (v === '*') return { any: true, versions: [] };
  if (forWrite) throw RequestError.badRequest('If-None-Match: only * is supported on writes', [{ path: 'header.if-none-match', message: 'expected *' }]);
  const versions = v.split(',').map((s) => s.trim().replace(/^W\//, ''));
  if (versions.some((s) => !/^"[^"]{1,128}"$/.test(s)))
    throw RequestError.badRequest('If-None-Match: expected * or a list of quoted ETags', [{ path: 'header.if-none-match', message: 'malformed' }]);
  return { any: false, versions: versions.map((s) => s.slice(1, -1)) };
}

export function parseLimit(raw: string | undefined): number {
  if (raw === undefined) return limits.scanLimitDefault;
  if (!/^\d{1,6}$/.test(raw) || Number(raw) < 1 || Number(raw) > limits.scanLimitMax)
    throw RequestError.badRequest(`limit: expected an integer 1..${limits.scanLimitMax}, got "${raw.slice(0, 32)}"`, [
      { path: 'query.limit', message: `expected 1..${limits.scanLimitMax}` },
    ]);
  return Number(raw);
}

export function encodeCursor(s: string): string {
  return Buffer.from(s, 'utf8').toString('base64url');
}

export function decodeCursor(raw: string, what: string): string {
  if (!/^[A-Za-z0-9_-]{1,2000}$/.test(raw))
    throw RequestError.badRequest(`cursor: not a cursor returned by this API`, [{ path: 'query.cursor', message: `malformed ${what} cursor` }]);
  return Buffer.from(raw, 'base64url').toString('utf8');
}

/** `Idempotency-Key`: 1 to limits.idempotencyKeyCharsMax printable ASCII characters (space to ~). */
export function parseIdempotencyKey(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (value.length < 1 || value.length > limits.idempotencyKeyCharsMax || !/^[\x20-\x7e]+$/.test(value))
    throw RequestError.badRequest(
      `Idempotency-Key: expected 1 to ${limits.idempotencyKeyCharsMax} printable ASCII characters, got ${value.length === 0 ? 'an empty value' : `${value.length} characters${/^[\x20-\x7e]*$/.test(value) ? '' : ' with some not printable ASCII'}`}`,
      [{ path: 'header.idempotency-key', message: `1 to ${limits.idempotencyKeyCharsMax} printable ASCII characters` }],
    );
  return value;
}
