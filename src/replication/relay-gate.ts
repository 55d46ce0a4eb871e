// When a site relays another origin's entries to a peer. Every site pulls from every peer, so a
// peer normally gets an origin's entries straight from that origin; relaying them at once as well
// would send each entry to each site twice and apply (fsync, ack) it twice. So a feed serves its own
// origin's entries at once and another origin's entries only once this site has held them for
// `delayMs`; what the peer acknowledged meanwhile is skipped. The gate applies only to origins the
// peer pulls from directly (its acks list them): a peer cut off from an origin gets that origin's
// entries relayed at once by any site that reaches both, and an entry whose direct delivery has
// stalled still arrives `delayMs` later (convergence is unchanged; only the duplicate work goes).
//
// Holding alone does not tell a peer catching up from a peer that is stuck. After a partition heals,
// this site has held the far side's entries for many seconds, and the peer pulls the same entries
// from their origin at the same moment: both would send all of them. So while a peer's acks show it
// moving forward on an origin it pulls directly, that origin's entries are not relayed to it; they
// are once its position there has stood still for `delayMs` (its direct link is then stalled, or it
// has all of them).
//
// In memory: per origin, marks (seq, local time of the commit that brought it). Bounded: beyond
// `marksMax` marks an origin's oldest mark counts as due (relaying early is safe, only wasteful).
// Per peer and origin, the acked seq and when it last moved (bounded by peers × origins).
import type { VersionVector } from '../core/vector.js';

interface Mark {
  seq: number;
  atMs: number;
}

export class RelayGate {
  private readonly marks = new Map<string, Mark[]>();
  /** per origin, the highest seq held here for at least delayMs */
  private readonly due = new Map<string, number>();
  /** per peer, per origin: the seq its acks report and when that last moved forward */
  private readonly progress = new Map<string, Map<string, Mark>>();

  constructor(
    private readonly delayMs: number,
    private readonly nowMs: () => number,
    /** this site's own origin: never held back, so not tracked */
    private readonly ownOrigin: string,
    /** what the site holds at start: all of it may be relayed at once */
    initial: VersionVector,
    private readonly marksMax = 1024,
  ) {
    for (const [o, seq] of Object.entries(initial)) this.due.set(o, seq);
  }

  /** After a commit: the site's vector now. */
  record(vector: VersionVector): void {
    const at = this.nowMs();
    for (const [origin, seq] of Object.entries(vector)) {
      if (origin === this.ownOrigin) continue;
      let list = this.marks.get(origin);
      const last = list !== undefined && list.length > 0 ? list[list.length - 1]!.seq : (this.due.get(origin) ?? 0);
      if (seq <= last) continue;
      if (list === undefined) {
        list = [];
        this.marks.set(origin, list);
      }
      list.push({ seq, atMs: at });
      if (list.length > this.marksMax) this.due.set(origin, list.shift()!.seq);
    }
  }

  /** A peer's ack arrived: note, per origin, whether its position moved forward. */
  observeAck(peer: string, vector: VersionVector): void {
    const at = this.nowMs();
    let byOrigin = this.progress.get(peer);
    if (byOrigin === undefined) {
      // what a peer held before this site heard from it does not count as moving
      byOrigin = new Map();
      this.progress.set(peer, byOrigin);
      for (const [origin, seq] of Object.entries(vector)) byOrigin.set(origin, { seq, atMs: -Infinity });
      return;
    }
    for (const [origin, seq] of Object.entries(vector)) {
      const mark = byOrigin.get(origin);
      if (mark === undefined) byOrigin.set(origin, { seq, atMs: at });
      else if (seq > mark.seq) {
        mark.seq = seq;
        mark.atMs = at;
      }
    }
  }

  /**
   * While `peer`'s acks show it moving forward on `origin` (within delayMs), the local time until
   * which that origin's entries are not relayed to it; undefined once its position stands still.
   */
  movingUntilMs(peer: string, origin: string): number | undefined {
    const mark = this.progress.get(peer)?.get(origin);
    if (mark === undefined) return undefined;
    const until = mark.atMs + this.delayMs;
    return until > this.nowMs() ? until : undefined;
  }

  /** The highest seq of `origin` that may be relayed now. */
  relayable(origin: string): number {
    const list = this.marks.get(origin);
    if (list !== undefined) {
      const cutoff = this.nowMs() - this.delayMs;
      while (list.length > 0 && list[0]!.atMs <= cutoff) this.due.set(origin, list.shift()!.seq);
    }
    return this.due.get(origin) ?? 0;
  }

  /** When entries of `origin` after `seq` start to be relayable (local ms), or undefined if none are held back. */
  relayableAtMs(origin: string, seq: number): number | undefined {
    const list = this.marks.get(origin);
    if (list === undefined) return undefined;
    const next = list.find((m) => m.seq > seq);
    return next === undefined ? undefined : next.atMs + this.delayMs;
  }
}
