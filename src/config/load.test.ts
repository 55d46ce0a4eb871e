import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfigText } from './load.js';
import { demoConfig } from './demo.js';

const base = `
cluster: demo
secret: \${TANDEM_SECRET}
sites:
  - { id: us-east, url: "http://127.0.0.1:7101", region: us-east-1 }
  - { id: eu-west, url: "http://127.0.0.1:7102" }
tables:
  profiles: { pattern: local, conflict: lww }
  orders: { pattern: partitioned, home: { from: key-prefix, separator: ":" } }
  ledger: { pattern: global, writeSite: us-east, durability: quorum }
`;
const env = { TANDEM_SECRET: 'a-long-enough-secret' };

describe('config', () => {
  it('parses YAML, expands ${VAR} and fills defaults', () => {
    const c = parseConfigText(base, 'c.yaml', env);
    expect(c.secret).toBe('a-long-enough-secret');
    expect(c.tables.profiles!.durability).toBe('local');
    expect(c.router.healthCheck.intervalMs).toBe(250);
  });

  it('names the config path and what was expected', () => {
    const bad = base.replace('pattern: local', 'pattern: locl');
    expect(() => parseConfigText(bad, 'c.yaml', env)).toThrow(/tables\.profiles\.pattern: expected one of local, global, partitioned/);
  });

  it('refuses a CIDR whose prefix is too long for its address family, naming it', () => {
    for (const bad of ['10.0.0.0/33', '2001:db8::/129', '300.1.1.1/8'])
      expect(() => parseConfigText(`${base}router: { geolocation: { cidrs: { "${bad}": us-east } } }\n`, 'c.yaml', env)).toThrow(/router\.geolocation\.cidrs\.\S+\/\d+: Invalid key/);
    expect(parseConfigText(`${base}router: { geolocation: { cidrs: { "10.0.0.0/32": us-east, "2001:db8::/128": eu-west } } }\n`, 'c.yaml', env).router.geolocation.cidrs).toMatchObject({ '10.0.0.0/32': 'us-east' });
  });

  it('reports a missing environment variable by name', () => {
    expect(() => parseConfigText(base, 'c.yaml', {})).toThrow(/TANDEM_SECRET/);
  });

  it('rejects unknown keys, bad site ids, duplicate ids and dangling writeSite', () => {
    const cases: [string, RegExp][] = [
      [base.replace('cluster: demo', 'cluster: demo\nclustr: x'), /unknown key clustr/],
      [base.replace('id: eu-west', 'id: EU_West'), /sites\.1\.id: expected \[a-z0-9-\]\{1,32\}/],
      [base.replace('id: eu-west', 'id: us-east'), /sites\.1\.id: duplicate id us-east/],
      [base.replace('writeSite: us-east', 'writeSite: mars'), /tables\.ledger\.writeSite: unknown site mars/],
      [base.replace('{ pattern: local, conflict: lww }', '{ pattern: local, conflict: lww, fields: { n: counter } }'), /tables\.profiles\.fields/],
      ['cluster: [', /syntax/],
    ];
    for (const [text, re] of cases) {
      const err = (() => {
        try {
          parseConfigText(text, 'c.yaml', env);
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(ConfigError);
      expect(String((err as Error).message)).toMatch(re);
    }
  });

  it('the demo has N sites on P+i and every pattern and policy', () => {
    const c = demoConfig({ sites: 5, basePort: 8000 });
    expect(c.sites.map((s) => s.id)).toEqual(['us-east', 'eu-west', 'ap-south', 'site-4', 'site-5']);
    expect(c.sites[4]!.url).toBe('http://127.0.0.1:8005');
    expect(new Set(Object.values(c.tables).map((t) => t.pattern))).toEqual(new Set(['local', 'global', 'partitioned']));
    expect(new Set(Object.values(c.tables).map((t) => t.conflict))).toEqual(new Set(['lww', 'merge', 'crdt']));
  });
});
