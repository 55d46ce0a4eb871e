// The `tandem` command as users run it: usage and config errors exit 2 naming the flag or path.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliEntry } from '../cluster/local-cluster.js';

const run = (...args: string[]) => spawnSync(process.execPath, [cliEntry, ...args], { encoding: 'utf8', timeout: 20_000 });

describe('tandem CLI', () => {
  it('every command has --help', () => {
    for (const cmd of ['up', 'site', 'router', 'dial', 'status']) {
      const r = run(cmd, '--help');
      expect(r.status, cmd).toBe(0);
      expect(r.stdout, cmd).toMatch(/Usage: tandem/);
    }
  });

  it('bad flags exit 2 naming the flag', () => {
    const r = run('up', '--sites', 'many');
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--sites/);
    expect(run('frobnicate').status).toBe(2);
  });

  it('a bad config exits 2 naming the config path', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tandem-cli-'));
    const file = join(dir, 'c.yaml');
    writeFileSync(
      file,
      'cluster: x\nsecret: a-long-enough-secret-value\nsites:\n  - { id: a, url: "http://127.0.0.1:1" }\ntables:\n  orders: { pattern: partitiond }\n',
    );
    const r = run('site', '--config', file, '--site', 'a', '--data-dir', dir);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/tables\.orders\.pattern: expected one of local, global, partitioned/);
    const missing = run('site', '--config', join(dir, 'nope.yaml'), '--site', 'a');
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/nope\.yaml/);
    writeFileSync(file, 'cluster: x\nsecret: a-long-enough-secret-value\nsites:\n  - { id: a, url: "http://127.0.0.1:1" }\ntables: {}\n');
    const wrongSite = run('site', '--config', file, '--site', 'zz');
    expect(wrongSite.status).toBe(2);
    expect(wrongSite.stderr).toMatch(/--site: zz is not a site/);
  });
});
