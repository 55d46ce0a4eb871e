// What a site process adds around the bare node: replication (issue 3) plugs in here.
import type { StartSiteOptions } from './run-site.js';

export const siteExtension: StartSiteOptions['extend'] = undefined;
