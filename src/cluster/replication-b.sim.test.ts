// Second half of the replication simulation seeds (see replication.sim.test.ts).
import { replicationSeedsSuite } from './replication-suite.js';

replicationSeedsSuite(1100, 80);
