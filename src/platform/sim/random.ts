// Seeded randomness for the simulator: every random choice in a simulated run (delays, drops, a
// node's own `env.random`) comes from one 32-bit seed, so a failing seed replays exactly.
//
// Generator: sfc32 (Chris Doty-Humphrey's Small Fast Counting generator, 128-bit state), its state
// filled by splitmix32 from the seed. `fork(label)` derives a child stream from the parent's *seed*
// and the label, not from the parent's position: adding a draw in one component never shifts the
// numbers another component sees. The same label forked twice gives the same stream, so give each
// consumer its own label.
import type { Random } from '../env.js';
import { assert } from '../assert.js';

const UINT32_RANGE = 2 ** 32;
/** sfc32 recommends discarding its first outputs so that similar seeds diverge. */
const WARMUP_DRAWS = 12;

export class SeededRandom implements Random {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  /** `seed` is a 32-bit unsigned integer; the same seed always yields the same sequence. */
  constructor(readonly seed: number) {
    assert(Number.isInteger(seed) && seed >= 0 && seed < UINT32_RANGE, `seed must be a uint32, got ${seed}`);
    const fill = splitmix32(seed);
    this.a = fill();
    this.b = fill();
    this.c = fill();
    this.d = fill();
    for (let i = 0; i < WARMUP_DRAWS; i++) this.nextUint32();
  }

  /** Uniform in [0, 1), with 32 bits of resolution. */
  next(): number {
    return this.nextUint32() / UINT32_RANGE;
  }

  /** Uniform integer in [0, maxExclusive); `maxExclusive` is an integer in [1, 2^32]. */
  int(maxExclusive: number): number {
    assert(
      Number.isInteger(maxExclusive) && maxExclusive >= 1 && maxExclusive <= UINT32_RANGE,
      `int(maxExclusive) needs an integer in [1, 2^32], got ${maxExclusive}`,
    );
    return Math.floor(this.next() * maxExclusive);
  }

  /** True with probability `probability` (in [0, 1]). */
  chance(probability: number): boolean {
    assert(probability >= 0 && probability <= 1, `probability must be in [0, 1], got ${probability}`);
    return this.next() < probability;
  }

  /** An independent stream named `label`, derived from this stream's seed only. */
  fork(label: string): SeededRandom {
    return new SeededRandom(mixLabelIntoSeed(this.seed, label));
  }

  private nextUint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }
}

/** The simulator's random source for `seed` (a uint32). */
export function seededRandom(seed: number): SeededRandom {
  return new SeededRandom(seed);
}

function splitmix32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x9e3779b9) | 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** FNV-1a over the label's UTF-16 code units, started from the parent seed, then avalanched. */
function mixLabelIntoSeed(seed: number, label: string): number {
  let hash = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < label.length; i++) {
    hash ^= label.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return splitmix32(hash)();
}
