// Starts a node child of the drill (load generator, link proxies) at a raised priority, so that on
// a busy machine they keep their schedule: under `nice` every thread of it is raised from the start
// (setPriority, the fallback, raises only the main thread, and a GC waiting for helper threads at
// normal priority stalls it). Without the permission it runs at normal priority.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { setPriority } from 'node:os';
import { childNodeArgs } from '../cluster/local-cluster.js';

const niceBinary = '/usr/bin/nice';

export function spawnNiced(niceness: number, nodeArgs: string[]): ChildProcess {
  const args = [...childNodeArgs(), ...nodeArgs];
  const child = existsSync(niceBinary)
    ? spawn(niceBinary, ['-n', String(niceness), process.execPath, ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
    : spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  try {
    if (child.pid !== undefined) setPriority(child.pid, niceness);
  } catch {
    // not permitted: normal priority
  }
  return child;
}
