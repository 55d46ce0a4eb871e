// Loads a table's custom merge function (`conflict: custom`, `merge: <path>`) into a sandbox with
// a time bound. The module is a CommonJS-style script that sets `module.exports.merge` (or
// `exports.merge`, or defines a top-level `function merge`). It is called as
// `merge(siblingsSortedByVersion, { table, key })` and must return a JSON object. A merge that
// throws, returns something else, or runs past its bound makes every site fall back to LWW over the
// same siblings (materialize.ts). Keep merges fast: a merge that only sometimes exceeds its bound
// could resolve differently on different sites; such timeouts are counted and logged.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import vm from 'node:vm';
import type { JsonValue } from '../core/canonical-json.js';
import type { CustomMerge } from '../core/materialize.js';

export interface LoadedMerge {
  merge: CustomMerge;
  failures: () => number;
}

export function loadCustomMerge(modulePath: string, configPath: string | undefined, timeoutMs: number, table: string): LoadedMerge {
  const file = resolve(configPath ? dirname(configPath) : process.cwd(), modulePath);
  let source: string;
  try {
    source = readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`tables.${table}.merge: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
  const context = vm.createContext({ module: { exports: {} as Record<string, unknown> }, exports: {} as Record<string, unknown>, __input: undefined });
  try {
    new vm.Script(`${source}\n;globalThis.__merge = (module.exports && module.exports.merge) || exports.merge || (typeof merge === 'function' ? merge : undefined);`, {
      filename: file,
    }).runInContext(context, { timeout: 1_000 });
  } catch (e) {
    throw new Error(`tables.${table}.merge: ${file} failed to load: ${(e as Error).message}`, { cause: e });
  }
  if (typeof (context as { __merge?: unknown }).__merge !== 'function')
    throw new Error(`tables.${table}.merge: ${file} does not export a merge function`);
  const call = new vm.Script('JSON.stringify(__merge(JSON.parse(__input), { table: __table }))');
  let failed = 0;
  return {
    failures: () => failed,
    merge: (siblings) => {
      context.__input = JSON.stringify(siblings);
      (context as { __table?: string }).__table = table;
      try {
        const out = call.runInContext(context, { timeout: timeoutMs }) as string | undefined;
        if (out === undefined) throw new Error('merge returned undefined');
        return JSON.parse(out) as JsonValue;
      } catch (e) {
        failed++;
        throw e;
      }
    },
  };
}
