// Reads a cluster config file (YAML or JSON), expands ${VAR} from the environment, validates it,
// and reports every problem with its path: `tables.orders.pattern: expected one of local, global, partitioned`.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { clusterSchema, type ClusterConfig } from './schema.js';

export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(
    readonly problems: string[],
    readonly source: string,
  ) {
    super(`${source}: invalid config\n  ${problems.join('\n  ')}`);
  }
}

export function expandEnv(text: string, env: Record<string, string | undefined>, source: string): string {
  const missing: string[] = [];
  const out = text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, name: string) => {
    const v = env[name];
    if (v === undefined) {
      missing.push(name);
      return '';
    }
    return v;
  });
  if (missing.length > 0)
    throw new ConfigError(
      missing.map((n) => `\${${n}}: environment variable ${n} is not set`),
      source,
    );
  return out;
}

export function formatIssues(issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.map((issue) => {
    const path = issue.path.map(String).join('.') || '(root)';
    let message = issue.message;
    if (issue.code === 'invalid_value' && 'values' in issue) {
      message = `expected one of ${(issue.values as unknown[]).map(String).join(', ')}`;
    } else if (issue.code === 'unrecognized_keys' && 'keys' in issue) {
      message = `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.join(', ')}`;
    }
    return `${path}: ${message}`;
  });
}

export function parseConfig(raw: unknown, source = 'config'): ClusterConfig {
  const result = clusterSchema.safeParse(raw);
  if (!result.success) throw new ConfigError(formatIssues(result.error.issues), source);
  return result.data;
}

export function parseConfigText(
  text: string,
  source: string,
  env: Record<string, string | undefined> = process.env,
): ClusterConfig {
  const expanded = expandEnv(text, env, source);
  let raw: unknown;
  try {
    raw = source.endsWith('.json') ? JSON.parse(expanded) : parseYaml(expanded);
  } catch (err) {
    throw new ConfigError([`(syntax): ${(err as Error).message.split('\n')[0]}`], source);
  }
  return parseConfig(raw, source);
}

export function loadConfigFile(path: string, env: Record<string, string | undefined> = process.env): ClusterConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError([`(file): cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`], path);
  }
  return parseConfigText(text, path, env);
}
