// What the backup commands share: the target and keys from the config (or --target), progress on
// a terminal, and the exit code of a refused or failed action.
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { loadConfigFile } from '../config/load.js';
import type { ClusterConfig } from '../config/schema.js';
import { BackupError } from '../backup/errors.js';
import { loadKeyring, type Keyring } from '../backup/keyring.js';
import { openTarget, type BackupTarget } from '../backup/targets/target.js';
import { UsageError } from './usage.js';

export interface BackupContext {
  config: ClusterConfig;
  target: BackupTarget;
  keyring: Keyring | undefined;
}

export function backupContext(opts: { config: string; target?: string; keyFile?: string }): BackupContext {
  const config = loadConfigFile(opts.config);
  const url = opts.target ?? config.backup?.target;
  if (url === undefined) throw new UsageError(`--target: ${opts.config} has no backup.target; give --target file:///dir or s3://bucket/prefix`);
  const keyPath = opts.keyFile ?? config.backup?.encryptionKeyFile;
  const base = dirname(resolve(opts.config));
  let target: BackupTarget;
  let keyring: Keyring | undefined;
  try {
    target = openTarget(url);
    keyring = keyPath === undefined ? undefined : loadKeyring(isAbsolute(keyPath) ? keyPath : join(base, keyPath));
  } catch (e) {
    if (e instanceof BackupError) throw new UsageError(e.message);
    throw e;
  }
  return { config, target, keyring };
}

/** Progress on a terminal (stderr), one line rewritten in place; nothing when piped or with --json. */
export function terminalProgress(json: boolean): ((phase: string, done: number, total: number) => void) | undefined {
  if (json || !process.stderr.isTTY) return undefined;
  let last = 0;
  return (phase, done, total) => {
    const now = performance.now();
    if (now - last < 100 && done < total) return;
    last = now;
    const pct = total > 0 ? ` ${Math.floor((100 * done) / total)}%` : '';
    process.stderr.write(`\r\x1b[K${phase}: ${done}/${total}${pct}`);
    if (done >= total) process.stderr.write('\n');
  };
}

/** Ends a command that failed for an operating reason (a missing object, a refusal): exit 1, named. */
export function failed(error: unknown, json: boolean): never {
  if (!(error instanceof BackupError)) throw error;
  if (json) process.stdout.write(`${JSON.stringify({ ok: false, code: error.code, object: error.object ?? null, error: error.message })}\n`);
  else process.stderr.write(`tandem: ${error.message}\n`);
  process.exit(1);
}
