// Origins, dots and version vectors (ARCHITECTURE.md, "Versions and causality").
// An origin is `<siteId>.<incarnation>`; a dot is `<origin>:<seq>`; a version vector maps each
// origin to the highest seq covered with no gap below it.
import { assert } from './assert.js';

export type Origin = string;
export type Dot = string;
export type VersionVector = Record<Origin, number>;

export function originOf(siteId: string, incarnation: number): Origin {
  assert(Number.isInteger(incarnation) && incarnation >= 1, `incarnation must be >= 1, got ${incarnation}`);
  return `${siteId}.${incarnation.toString(36)}`;
}

/** The incarnation of an origin (`<siteId>.<incarnation in base 36>`); 0 if it has none. */
export function incarnationOf(origin: Origin): number {
  const i = origin.lastIndexOf('.');
  const n = i < 0 ? NaN : parseInt(origin.slice(i + 1), 36);
  return Number.isSafeInteger(n) ? n : 0;
}

/** The site of an origin (`<siteId>.<incarnation>`). */
export function siteOfOrigin(origin: Origin): string {
  const i = origin.lastIndexOf('.');
  return i < 0 ? origin : origin.slice(0, i);
}

export function dotOf(origin: Origin, seq: number): Dot {
  return `${origin}:${seq}`;
}

export function parseDot(dot: Dot): { origin: Origin; seq: number } {
  const i = dot.lastIndexOf(':');
  const seq = Number(dot.slice(i + 1));
  assert(i > 0 && Number.isSafeInteger(seq) && seq >= 1, `malformed dot: ${dot}`);
  return { origin: dot.slice(0, i), seq };
}

export function covers(vv: VersionVector, dot: Dot): boolean {
  const { origin, seq } = parseDot(dot);
  return (vv[origin] ?? 0) >= seq;
}

/** Pointwise maximum. */
export function joinVectors(a: VersionVector, b: VersionVector): VersionVector {
  const out: VersionVector = { ...a };
  for (const [o, s] of Object.entries(b)) if ((out[o] ?? 0) < s) out[o] = s;
  return out;
}

/** Adds a dot to a vector-form context (valid when every earlier dot of its origin is covered or irrelevant). */
export function withDot(vv: VersionVector, dot: Dot): VersionVector {
  const { origin, seq } = parseDot(dot);
  return (vv[origin] ?? 0) >= seq ? vv : { ...vv, [origin]: seq };
}

/** Does `a` cover everything `b` covers? */
export function dominates(a: VersionVector, b: VersionVector): boolean {
  for (const [o, s] of Object.entries(b)) if ((a[o] ?? 0) < s) return false;
  return true;
}

export function vectorsEqual(a: VersionVector, b: VersionVector): boolean {
  return dominates(a, b) && dominates(b, a);
}

/** A vector with its origins in sorted order, zero entries dropped: a canonical form. */
export function canonicalVector(vv: VersionVector): VersionVector {
  const out: VersionVector = {};
  for (const o of Object.keys(vv).sort()) if ((vv[o] ?? 0) > 0) out[o] = vv[o]!;
  return out;
}
