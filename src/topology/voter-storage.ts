// A voter's durable state in its own small SQLite file (synchronous=FULL: a promise or an accepted
// value is on disk before the voter answers). Sites keep it beside their store; a witness has
// nothing else.
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { VoterDurableState, VoterStorage } from './paxos.js';
import { isTopology } from './record.js';

export class SqliteVoterStorage implements VoterStorage {
  private readonly db: Database.Database;
  private readonly put: Database.Statement;

  constructor(path: string) {
    mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.exec('CREATE TABLE IF NOT EXISTS voter (k TEXT PRIMARY KEY, v TEXT NOT NULL)');
    this.put = this.db.prepare("INSERT INTO voter (k, v) VALUES ('state', ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v");
  }

  load(): VoterDurableState | undefined {
    const row = this.db.prepare("SELECT v FROM voter WHERE k = 'state'").get() as { v: string } | undefined;
    if (row === undefined) return undefined;
    const state = JSON.parse(row.v) as VoterDurableState;
    if (!isTopology(state.decided)) throw new Error('voter state file holds no valid topology record');
    return state;
  }

  save(state: VoterDurableState): Promise<void> {
    this.put.run(JSON.stringify(state));
    return Promise.resolve();
  }

  close(): void {
    this.db.close();
  }
}
