// Seeded simulation of multi-master replication: 3 to 5 sites, random workload on overlapping
// keys, network faults, partitions, crashes and restarts; after healing every site must hold the
// same content and the history must check out. Seeds 1000-1079 here, 1100-1179 in the sibling
// file (two files so the suite's two workers share them). `SEED=<n> npx vitest run src/cluster`
// replays one seed; `node dist/cluster/simulate.js --seeds 5000` runs many more.
import { replicationSeedsSuite } from './replication-suite.js';

replicationSeedsSuite(1000, 80);
