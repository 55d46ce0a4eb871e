// A deliberately broken build is caught. site-crash --power-loss: the victim's peer links stall for
// a second (its newest writes live only on its own disk), then it loses power: SIGKILL, and its WAL
// is cut back to what its last fdatasync covered (SIGKILL alone keeps the page cache). An honest
// site acknowledges only synced writes and loses none; a site that acknowledges before its sync
// (TANDEM_FAULT_ACK_BEFORE_SYNC, with its real syncs held back) loses acknowledged writes, and the
// drill fails naming them.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runDrill, type DrillOptions } from './run-drill.js';

const options = (victimEnv: Record<string, string>): DrillOptions => ({
  scenario: 'site-crash',
  powerLoss: true,
  site: 'eu-west',
  sites: 3,
  durationS: 4,
  ratePerS: 100,
  warmupMs: 500,
  seed: 99,
  reportDir: mkdtempSync(join(tmpdir(), 'tandem-drill-power-loss-')),
  commands: new Set(),
  replayCommand: 'tandem drill site-crash --power-loss --site eu-west --duration 4 --rate 100 --seed 99',
  victimEnv,
});

describe('power loss', { timeout: 180_000 }, () => {
  it('an honest site loses no acknowledged write', async () => {
    const { report } = await runDrill(options({}));
    const loss = report.executedFaults.find((f) => f.action.kind === 'power-loss')!;
    expect(loss.result).toMatch(/WAL truncated from \d+ to \d+ bytes/);
    // the victim's partition may fail over while it is down: its local-durability writes that had
    // not left it are voided by the cut (RPO by design, counted apart); nothing else may be lost
    expect(report.rpo.lostAckedWrites - report.rpo.voidedByFailover, report.failures.join('; ')).toBe(0);
    expect(report.anomalies).toEqual([]);
  });

  it('a build that acknowledges before its fdatasync fails the drill, which names the lost writes', async () => {
    const { report } = await runDrill(options({ TANDEM_FAULT_ACK_BEFORE_SYNC: '1', TANDEM_FAULT_FSYNC_DELAY_MS: '3000' }));
    expect(report.passed).toBe(false);
    expect(report.rpo.lostAckedLocalWrites).toBeGreaterThan(0);
    // every lost write was acknowledged by the victim (its origin) while its links were stalled
    for (const l of report.rpo.lost) expect(l.dot.startsWith('eu-west.')).toBe(true);
    const named = report.failures.find((f) => f.includes('acknowledged local-durability writes lost'))!;
    expect(named).toContain(report.rpo.lost[0]!.dot);
    expect(report.anomalies.filter((a) => a.kind === 'lost-write').length).toBe(report.rpo.lostAckedWrites);
  });
});
