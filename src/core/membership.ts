// Cluster membership by topology epoch (ARCHITECTURE.md, "Membership"). A member is `joining`
// (registered before its snapshot is cut, so nothing it needs is purged meanwhile), `active`, or
// `removed`. Compaction, tombstone GC and quorum counting wait only for current members (joining
// and active); a removed member is never pulled from or waited for again.
export type MemberState = 'joining' | 'active' | 'removed';

export interface Member {
  site: string;
  state: MemberState;
}

export interface Membership {
  /** topology epoch that set these states; only a higher epoch replaces them */
  epoch: number;
  members: Member[];
}

export const memberStates: readonly MemberState[] = ['joining', 'active', 'removed'];

export function isCurrent(m: Member): boolean {
  return m.state === 'joining' || m.state === 'active';
}

/** The current members other than `self`. */
export function currentPeers(membership: Membership, self: string): string[] {
  return membership.members.filter((m) => isCurrent(m) && m.site !== self).map((m) => m.site);
}
