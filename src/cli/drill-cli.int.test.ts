// `tandem drill` as users run it: `list` names every scenario and its SLO; usage errors, unknown
// scenarios, a missing recording and a scenario the cluster cannot run exit 2 saying why.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliEntry } from '../cluster/local-cluster.js';
import { scenarioNames } from '../drill/scenarios.js';

const run = (...args: string[]) => spawnSync(process.execPath, [cliEntry, ...args], { encoding: 'utf8', timeout: 20_000 });

describe('tandem drill', () => {
  it('lists every scenario with its SLO', () => {
    const r = run('drill', 'list');
    expect(r.status).toBe(0);
    for (const name of scenarioNames) expect(r.stdout).toMatch(new RegExp(`^${name} +\\d+ ms, 0, ≥0.99 over 3000 ms`, 'm'));
    expect(r.stdout).toMatch(/^bad-delete .*tandem rewind.*\[needs rewind\]; SLO: every deleted item restored at every site, 0 untouched keys changed$/m);
    expect(run('drill', '--help').stdout).toMatch(/Usage: tandem drill/);
  });

  it('exits 2 naming what is wrong', () => {
    expect(run('drill', 'meteor-strike').stderr).toMatch(/unknown scenario meteor-strike; expected one of site-crash/);
    expect(run('drill', 'meteor-strike').status).toBe(2);
    const dur = run('drill', 'site-crash', '--duration', '1');
    expect([dur.status, dur.stderr]).toEqual([2, expect.stringMatching(/--duration expects 3\.\.3600/)]);
    const check = run('drill', 'check', join(mkdtempSync(join(tmpdir(), 'tandem-drill-cli-')), 'none'));
    expect([check.status, check.stderr]).toEqual([2, expect.stringMatching(/drill check .*recording\.json/)]);
    // bad-delete needs a table it can delete from and compare whole values of
    const countersOnly = join(mkdtempSync(join(tmpdir(), 'tandem-drill-cli-')), 'counters.json');
    writeFileSync(
      countersOnly,
      JSON.stringify({
        cluster: 'drill-cli',
        secret: 'a-secret-of-sixteen-chars',
        sites: [{ id: 'a', url: 'http://127.0.0.1:1' }, { id: 'b', url: 'http://127.0.0.1:2' }],
        tables: { counters: { pattern: 'local', conflict: 'crdt', fields: { n: 'counter' } } },
      }),
    );
    const rewind = run('drill', 'bad-delete', '--config', countersOnly);
    expect([rewind.status, rewind.stderr]).toEqual([2, expect.stringMatching(/bad-delete needs a local or global table of conflict lww or merge .*\(tables: counters\)/)]);
    const power = run('drill', 'gray-failure', '--power-loss');
    expect([power.status, power.stderr]).toEqual([2, expect.stringMatching(/--power-loss: only with site-crash/)]);
  });
});
