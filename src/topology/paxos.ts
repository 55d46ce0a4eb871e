// Consensus on the topology record: single-decree Paxos per epoch. Instance e+1 is decided by the
// voters of record e, and a voter takes part in instance e+1 only once it knows record e, so the
// decided records form one chain. A voter keeps its promise and accepted value durably before it
// answers (VoterStorage); the lease grants it makes live in memory only, because a restarted voter
// neither grants nor vouches for a lease's expiry until every lease it might have granted before
// the restart has run out (restartQuietMs), which a record of old grants could not improve on.
//
//   proposer                 voters (majority of record e's)
//   prepare(e+1, b) ───────► promise (+ the value accepted for e+1, if any)   [durable]
//   accept(e+1, b, v) ─────► accepted                                         [durable]
//   learn(v) ──────────────► decided: record e+1
//
// Choosing Paxos per epoch over Raft: the register is one small record changed a few times a day,
// every change is proposed by whichever site detects the need (no leader to elect first, so no
// extra failure detector), and the lease round that sites run anyway carries the newest epoch to
// anyone who missed a `learn`.
import { assert } from '../core/assert.js';
import type { Topology } from './record.js';
import { isTopology, majority, voters } from './record.js';

export interface Ballot {
  n: number;
  by: string;
}

export function ballotAbove(a: Ballot, b: Ballot): boolean {
  return a.n > b.n || (a.n === b.n && a.by > b.by);
}

export interface VoterDurableState {
  decided: Topology;
  promised?: { epoch: number; ballot: Ballot };
  accepted?: { epoch: number; ballot: Ballot; record: Topology };
}

/** Where a voter keeps its state; `save` resolves once it is on disk. */
export interface VoterStorage {
  load(): VoterDurableState | undefined;
  save(state: VoterDurableState): Promise<void>;
}

export type VoterRequest =
  | { kind: 'prepare'; epoch: number; ballot: Ballot; known: Topology }
  | { kind: 'accept'; epoch: number; ballot: Ballot; record: Topology }
  | { kind: 'learn'; record: Topology }
  | { kind: 'lease'; holder: string; epoch: number }
  | { kind: 'view' }
  /** the voter's decided record, if it is at `epoch` or newer */
  | { kind: 'fetch'; epoch: number };

/** What a voter saw of lease grants: per holder, the age of its newest grant at each recent epoch. */
export interface VoterView {
  voter: string;
  epoch: number;
  /** ms since this voter started (grants before that are unknown, and all older than this) */
  upMs: number;
  /** whether it is still in its quiet time after a start: it neither grants nor vouches */
  quiet: boolean;
  /** ms since it began granting (after its quiet time; negative while quiet) */
  grantingForMs: number;
  grants: Record<string, { epoch: number; ageMs: number }[]>;
}

export type VoterReply =
  | { kind: 'promise'; accepted?: { ballot: Ballot; record: Topology } }
  | { kind: 'accepted' }
  | { kind: 'nack'; promised: Ballot }
  /** this voter knows a newer decided record than the request assumed */
  | { kind: 'newer'; record: Topology }
  /** this voter misses the record the request builds on: send it `learn` first */
  | { kind: 'behind'; epoch: number }
  | { kind: 'learned'; epoch: number }
  /** `record`: this voter's newer record, when the holder asked at an older epoch */
  | { kind: 'lease'; granted: boolean; reason?: string; view: VoterView; record?: Topology }
  | { kind: 'view'; view: VoterView };

export interface VoterOptions {
  id: string;
  storage: VoterStorage;
  /** the record to start from when storage holds none (epoch 0, from the config) */
  genesis: Topology;
  monotonicMs: () => number;
  /** L·(1+ρ)/(1−ρ): after a start, how long this voter neither grants nor vouches */
  restartQuietMs: () => number;
  /** a newer record was decided (learned here) */
  onDecided?: (record: Topology) => void;
}

/** Grants kept per holder: the newest at each of its last few epochs. */
const grantEpochsKept = 4;

/** One voting member's part: promises, accepts, learned records, lease grants. */
export class Voter {
  private state: VoterDurableState;
  private readonly startedAtMs: number;
  /** a voter that has never stored anything has granted nothing before: no quiet time */
  private readonly fresh: boolean;
  private readonly grants = new Map<string, { epoch: number; atMs: number }[]>();
  /** requests are handled one at a time: each reads and durably writes the state */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: VoterOptions) {
    const stored = options.storage.load();
    this.fresh = stored === undefined;
    this.state = stored ?? { decided: options.genesis };
    this.startedAtMs = options.monotonicMs();
  }

  get decided(): Topology {
    return this.state.decided;
  }

  handle(req: VoterRequest): Promise<VoterReply> {
    const next = this.queue.then(() => this.handleNow(req));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async handleNow(req: VoterRequest): Promise<VoterReply> {
    switch (req.kind) {
      case 'learn':
        await this.learn(req.record);
        return { kind: 'learned', epoch: this.state.decided.epoch };
      case 'prepare': {
        await this.learn(req.known);
        const d = this.state.decided;
        if (req.epoch <= d.epoch) return { kind: 'newer', record: d };
        if (req.epoch > d.epoch + 1) return { kind: 'behind', epoch: d.epoch };
        const p = this.state.promised;
        if (p !== undefined && p.epoch === req.epoch && ballotAbove(p.ballot, req.ballot)) return { kind: 'nack', promised: p.ballot };
        const acc = this.state.accepted?.epoch === req.epoch ? this.state.accepted : undefined;
        await this.save({ ...this.state, promised: { epoch: req.epoch, ballot: req.ballot } });
        return { kind: 'promise', ...(acc ? { accepted: { ballot: acc.ballot, record: acc.record } } : {}) };
      }
      case 'accept': {
        const d = this.state.decided;
        if (req.epoch <= d.epoch) return { kind: 'newer', record: d };
        if (req.epoch > d.epoch + 1) return { kind: 'behind', epoch: d.epoch };
        const p = this.state.promised;
        if (p !== undefined && p.epoch === req.epoch && ballotAbove(p.ballot, req.ballot)) return { kind: 'nack', promised: p.ballot };
        assert(req.record.epoch === req.epoch, 'an accepted record has the instance\'s epoch');
        await this.save({ ...this.state, promised: { epoch: req.epoch, ballot: req.ballot }, accepted: { epoch: req.epoch, ballot: req.ballot, record: req.record } });
        return { kind: 'accepted' };
      }
      case 'lease':
        return this.grant(req.holder, req.epoch);
      case 'view':
        return { kind: 'view', view: this.view() };
      case 'fetch':
        return this.state.decided.epoch >= req.epoch ? { kind: 'newer', record: this.state.decided } : { kind: 'behind', epoch: this.state.decided.epoch };
    }
  }

  private async learn(record: Topology): Promise<void> {
    if (record.epoch <= this.state.decided.epoch) return;
    const keep = (x: { epoch: number } | undefined) => x !== undefined && x.epoch > record.epoch;
    const next: VoterDurableState = { decided: record };
    if (keep(this.state.promised)) next.promised = this.state.promised!;
    if (keep(this.state.accepted)) next.accepted = this.state.accepted!;
    await this.save(next);
    this.options.onDecided?.(record);
  }

  private async save(next: VoterDurableState): Promise<void> {
    await this.options.storage.save(next);
    this.state = next;
  }

  private quietMs(): number {
    return this.fresh ? 0 : this.options.restartQuietMs();
  }

  private quiet(now: number): boolean {
    return now - this.startedAtMs < this.quietMs();
  }

  private grant(holder: string, epoch: number): VoterReply {
    const now = this.options.monotonicMs();
    const d = this.state.decided;
    const refuse = (reason: string): VoterReply => ({ kind: 'lease', granted: false, reason, view: this.view(), ...(epoch < d.epoch ? { record: d } : {}) });
    if (epoch !== d.epoch) return refuse(epoch < d.epoch ? `epoch ${epoch} is old: this voter is at ${d.epoch}` : `this voter is at epoch ${d.epoch}, behind ${epoch}`);
    if (this.quiet(now)) return refuse('restarted: quiet until every lease it may have granted before has expired');
    const m = d.members.find((x) => x.id === holder);
    if (m === undefined || m.kind !== 'site' || !(m.state === 'active' || m.state === 'draining' || m.state === 'evacuated'))
      return refuse(`${holder} is not a serving data site at epoch ${d.epoch}`);
    const list = this.grants.get(holder) ?? [];
    const same = list.find((g) => g.epoch === epoch);
    if (same) same.atMs = now;
    else {
      list.push({ epoch, atMs: now });
      list.sort((a, b) => a.epoch - b.epoch);
      if (list.length > grantEpochsKept) list.splice(0, list.length - grantEpochsKept);
    }
    this.grants.set(holder, list);
    return { kind: 'lease', granted: true, view: this.view() };
  }

  view(): VoterView {
    const now = this.options.monotonicMs();
    const grants: VoterView['grants'] = {};
    for (const [holder, list] of this.grants) grants[holder] = list.map((g) => ({ epoch: g.epoch, ageMs: now - g.atMs }));
    const upMs = now - this.startedAtMs;
    return { voter: this.options.id, epoch: this.state.decided.epoch, upMs, quiet: this.quiet(now), grantingForMs: upMs - this.quietMs(), grants };
  }
}

/**
 * How long ago, at the latest, `voter` granted `holder` a lease at an epoch below `belowEpoch`: a
 * voter that restarted since cannot know of earlier grants, which are older than its uptime.
 */
export function grantAgeMs(view: VoterView, holder: string, belowEpoch: number): number {
  const own = (view.grants[holder] ?? []).filter((g) => g.epoch < belowEpoch).map((g) => g.ageMs);
  return Math.min(view.upMs, ...own);
}

/**
 * How long `holder` has gone without a grant from this voter, as far as the voter can tell for
 * failure detection: since its newest grant at any epoch, or since the voter began granting.
 */
export function silentForMs(view: VoterView, holder: string): number {
  return Math.min(view.grantingForMs, ...(view.grants[holder] ?? []).map((g) => g.ageMs));
}

/** The transport a proposer uses: one request to one voter; throws when the voter cannot be reached. */
export type CallVoter = (voter: string, req: VoterRequest) => Promise<VoterReply>;

export interface ProposeContext {
  self: string;
  call: CallVoter;
  /** the newest decided record this proposer knows */
  known(): Topology;
  /** a newer decided record came to light (from a voter, or this proposal) */
  learn(record: Topology): void;
  /** pause between contended attempts (injected timers + jitter) */
  backoff(attempt: number): Promise<void>;
  attemptsMax?: number;
}

export class ProposalError extends Error {
  override name = 'ProposalError';
}

/**
 * Proposes `change(current)` as the next record and returns the decided record that holds it.
 * `change` returns undefined when nothing needs to change any more (the current record already
 * says it), and throws to refuse. A value some voter already accepted for the instance is completed
 * first; then `change` is applied again on top of the newer record.
 */
export async function propose(ctx: ProposeContext, change: (current: Topology) => Topology | undefined): Promise<Topology> {
  let ballotN = 0;
  const attemptsMax = ctx.attemptsMax ?? 20;
  for (let attempt = 0; attempt < attemptsMax; attempt++) {
    if (attempt > 0) await ctx.backoff(attempt);
    const current = ctx.known();
    const wanted = change(current);
    if (wanted === undefined) return current;
    assert(wanted.epoch === current.epoch + 1, 'a proposal is the next epoch');
    const epoch = wanted.epoch;
    const vs = voters(current);
    const need = majority(vs.length);
    const ballot: Ballot = { n: ++ballotN, by: ctx.self };
    const promises = await gather(vs, need, (r) => r.kind === 'promise', (v) => ctx.call(v, { kind: 'prepare', epoch, ballot, known: current }));
    let granted = 0;
    let prior: { ballot: Ballot; record: Topology } | undefined;
    let newer = false;
    for (const r of promises) {
      if (r === undefined) continue;
      if (r.kind === 'promise') {
        granted++;
        if (r.accepted && isTopology(r.accepted.record) && (prior === undefined || ballotAbove(r.accepted.ballot, prior.ballot))) prior = r.accepted;
      } else if (r.kind === 'newer' && isTopology(r.record) && r.record.epoch > current.epoch) {
        ctx.learn(r.record);
        newer = true;
      } else if (r.kind === 'nack') ballotN = Math.max(ballotN, r.promised.n);
    }
    if (newer || granted < need) continue;
    const value = prior?.record ?? wanted;
    const accepts = await gather(vs, need, (r) => r.kind === 'accepted', (v) => ctx.call(v, { kind: 'accept', epoch, ballot, record: value }));
    let ok = 0;
    for (const r of accepts) {
      if (r?.kind === 'accepted') ok++;
      else if (r?.kind === 'newer' && isTopology(r.record) && r.record.epoch > current.epoch) ctx.learn(r.record);
      else if (r?.kind === 'nack') ballotN = Math.max(ballotN, r.promised.n);
    }
    if (ok < need) continue;
    ctx.learn(value);
    // everyone learns it (a voter that misses this hears of it in the next lease round)
    for (const v of vs) if (v !== ctx.self) ctx.call(v, { kind: 'learn', record: value }).catch(() => undefined);
    if (prior === undefined) return value;
    // we completed someone else's value: now ours, on top of it
  }
  throw new ProposalError(`no majority of voters accepted a change of the topology after ${attemptsMax} attempts (voters unreachable or contending)`);
}

/**
 * Calls every voter and resolves with the replies so far as soon as `need` of them are `good`, or
 * once every call has settled: a dead voter must not hold a round up for its request timeout.
 */
function gather(voterIds: string[], need: number, good: (r: VoterReply) => boolean, call: (v: string) => Promise<VoterReply>): Promise<(VoterReply | undefined)[]> {
  return new Promise((resolve) => {
    const replies: (VoterReply | undefined)[] = [];
    let settled = 0;
    let goodCount = 0;
    let done = false;
    for (const v of voterIds) {
      call(v)
        .catch(() => undefined)
        .then((r) => {
          if (done) return;
          replies.push(r);
          settled++;
          if (r !== undefined && good(r)) goodCount++;
          if (goodCount >= need || settled === voterIds.length) {
            done = true;
            resolve(replies);
          }
        });
    }
    if (voterIds.length === 0) resolve([]);
  });
}
