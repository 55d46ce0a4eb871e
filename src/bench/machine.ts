// What every benchmark needs to know about the machine it runs on: where data may go (a disk,
// never tmpfs), how busy the CPU is with other work (waiting for quiet, flagging noisy runs), and
// how much CPU a process used. Linux /proc only; elsewhere the readings are undefined.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { resolve } from 'node:path';
import { realClock, realTimers } from '../platform/real/real-env.js';

export class BenchUsageError extends Error {
  override name = 'BenchUsageError';
}

/**
 * Reads a benchmark's flags: `--keep` (the one bare switch) and `--flag value` pairs, each given to
 * `take`, which applies it and returns false if the flag is unknown or its value out of range.
 * Throws BenchUsageError naming the flag, with the usage line.
 */
export function parseBenchFlags(args: string[], usage: string, keep: () => void, take: (flag: string, value: string | undefined, num: number) => boolean): void {
  for (let i = 0; i < args.length; i++) {
    const flag = args[i]!;
    if (flag === '--keep') {
      keep();
      continue;
    }
    const value = args[i + 1];
    if (!take(flag, value, Number(value))) throw new BenchUsageError(`bad flag ${flag} ${value ?? ''}\n${usage}`);
    i += 1;
  }
}

/** Other processes may keep at most this many cores busy for a run to count as quiet. */
export const foreignCoresMax = 0.25;

export function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function fsTypeOf(path: string): string | undefined {
  let mounts: string;
  try {
    mounts = readFileSync('/proc/mounts', 'utf8');
  } catch {
    return undefined;
  }
  const real = realpathSync(path);
  let best: { point: string; type: string } | undefined;
  for (const line of mounts.split('\n')) {
    const [, point, type] = line.split(' ');
    if (point === undefined || type === undefined) continue;
    const inside = real === point || real.startsWith(point.endsWith('/') ? point : `${point}/`);
    if (inside && (best === undefined || point.length > best.point.length)) best = { point, type };
  }
  return best?.type;
}

/** Where data dirs go: on a disk, never tmpfs (fsync there costs nothing). */
export function dataParent(requested: string | undefined): string {
  if (requested !== undefined) {
    mkdirSync(requested, { recursive: true });
    return requested;
  }
  const tmp = tmpdir();
  if (fsTypeOf(tmp) !== 'tmpfs') return tmp;
  const local = resolve('.bench');
  mkdirSync(local, { recursive: true });
  return local;
}

const clockTicksPerSecond = (() => {
  const res = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(res.stdout?.trim());
  return Number.isFinite(n) && n > 0 ? n : 100;
})();

/** CPU seconds (user + system) used so far by process `pid`, from /proc; undefined off Linux. */
export function processCpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After the command name: state is field 3, utime field 14, stime field 15 (1-based).
    return (Number(fields[11]) + Number(fields[12])) / clockTicksPerSecond;
  } catch {
    return undefined;
  }
}

/** CPU seconds all cores have spent busy since boot, from /proc/stat; undefined off Linux. */
export function machineBusySeconds(): number | undefined {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal …: busy is all but idle and iowait
    const total = fields.slice(0, 8).reduce((a, b) => a + b, 0);
    return (total - fields[3]! - fields[4]!) / clockTicksPerSecond;
  } catch {
    return undefined;
  }
}

export function ownCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** Cores busy with work other than this process, sampled over `ms`. */
export async function foreignCpuCores(ms: number): Promise<number | undefined> {
  const busy0 = machineBusySeconds();
  const own0 = ownCpuSeconds();
  await realTimers.sleep(ms);
  const busy1 = machineBusySeconds();
  if (busy0 === undefined || busy1 === undefined) return undefined;
  return round(Math.max(0, busy1 - busy0 - (ownCpuSeconds() - own0)) / (ms / 1000), 2);
}

/** Waits (bounded) until other processes use at most `foreignCoresMax`; returns the last sample. */
export async function waitQuiet(waitS: number, what: string): Promise<number | undefined> {
  const deadline = realClock.monotonicMs() + waitS * 1000;
  let warned = false;
  for (;;) {
    const foreign = await foreignCpuCores(1_000);
    if (foreign === undefined || foreign <= foreignCoresMax || realClock.monotonicMs() >= deadline) return foreign;
    if (!warned) process.stderr.write(`${what}: other processes keep ${foreign} cores busy; waiting up to ${waitS} s for quiet\n`);
    warned = true;
  }
}
