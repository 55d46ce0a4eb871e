// Times on the command line: ISO 8601 (`2026-12-02T12:00:05Z`) or relative to now (`-10m`, `-90s`,
// `-2h`, `-1d`, `now`).
import { BackupError } from './errors.js';

export function parseTime(flag: string, value: string, nowMs: number): number {
  if (value === 'now') return nowMs;
  const rel = /^-(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(value);
  if (rel) return Math.floor(nowMs - Number(rel[1]) * { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[rel[2] as 'ms']);
  if (/^\d{4}-\d{2}-\d{2}T/.test(value)) {
    const ms = Date.parse(value);
    if (Number.isFinite(ms)) return ms;
  }
  throw new BackupError('bad-input', `${flag}: expected an ISO 8601 time (2026-12-02T12:00:05Z) or a relative one (-10m), got "${value}"`);
}
