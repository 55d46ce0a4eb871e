// Where a client is, for the geolocation policy. Sources, first hit wins: a header set by a trusted
// proxy (a site id, region or country code), the configured CIDR map (longest prefix), then a
// MaxMind `.mmdb` file (country code, and coordinates from City databases).
import { ConfigError } from '../config/load.js';
import type { GeolocationConfig } from '../config/router-schema.js';
import type { Logger } from '../platform/env.js';
import { CidrTable, parseCidr, parseIp, type IpAddress } from './cidr.js';
import { geoFromRecord, MmdbError, MmdbReader } from './mmdb.js';
import { assert } from '../platform/assert.js';

export interface ClientGeo {
  /** A site id or region the client maps to. */
  target: string | undefined;
  lat: number | undefined;
  lon: number | undefined;
  defaultSite: string | undefined;
}

/** Distinct addresses remembered from the mmdb; the cache is cleared when full. */
const mmdbCacheEntriesMax = 10_000;

export class Geolocator {
  private readonly cidrs: CidrTable<string>;
  private readonly trusted: CidrTable<true>;
  private readonly countries: Map<string, string>;
  private readonly mmdbCache = new Map<string, { country?: string; lat?: number; lon?: number }>();
  private damagedMmdbLogged = false;

  constructor(
    private readonly log: Logger,
    private readonly config: GeolocationConfig,
    private readonly mmdb: MmdbReader | undefined,
  ) {
    this.cidrs = new CidrTable(
      Object.entries(config.cidrs).map(([range, target]) => {
        const parsed = parseCidr(range, target);
        assert(parsed !== undefined, `geolocation.cidrs: ${range} was validated as a CIDR`);
        return parsed;
      }),
    );
    this.trusted = new CidrTable(
      config.trustedProxies.map((range) => {
        const parsed = parseCidr(range, true as const);
        assert(parsed !== undefined, `geolocation.trustedProxies: ${range} was validated as a CIDR`);
        return parsed;
      }),
    );
    this.countries = new Map(Object.entries(config.countries).map(([code, target]) => [code.toUpperCase(), target]));
  }

  static fromConfig(log: Logger, config: GeolocationConfig): Geolocator {
    if (config.mmdb === undefined) return new Geolocator(log, config, undefined);
    try {
      return new Geolocator(log, config, MmdbReader.open(config.mmdb));
    } catch (err) {
      if (err instanceof MmdbError) throw new ConfigError([`router.geolocation.mmdb: ${err.message}`], 'config');
      throw err;
    }
  }

  /**
   * @param clientIp the address the request came from (or the EDNS client subnet of a DNS query)
   * @param peerIp the address of the connection, which decides whether the header is believed
   * @param headerValue the configured header's value, if any
   */
  locate(clientIp: string | undefined, peerIp: string | undefined, headerValue: string | undefined): ClientGeo {
    const geo: ClientGeo = { target: undefined, lat: undefined, lon: undefined, defaultSite: this.config.defaultSite };
    if (headerValue !== undefined && headerValue !== '' && this.isTrusted(peerIp)) {
      const v = headerValue.trim();
      geo.target = this.countries.get(v.toUpperCase()) ?? v;
      return geo;
    }
    const ip = clientIp === undefined ? undefined : parseIp(clientIp);
    if (ip === undefined) return geo;
    const mapped = this.cidrs.lookup(ip);
    if (mapped !== undefined) {
      geo.target = mapped;
      return geo;
    }
    if (this.mmdb !== undefined) {
      const found = this.lookupMmdb(clientIp!, ip);
      if (found.country !== undefined) geo.target = this.countries.get(found.country.toUpperCase());
      geo.lat = found.lat;
      geo.lon = found.lon;
    }
    return geo;
  }

  isTrusted(peerIp: string | undefined): boolean {
    const ip = peerIp === undefined ? undefined : parseIp(peerIp);
    return ip !== undefined && this.trusted.lookup(ip) === true;
  }

  private lookupMmdb(key: string, ip: IpAddress): { country?: string; lat?: number; lon?: number } {
    const cached = this.mmdbCache.get(key);
    if (cached !== undefined) return cached;
    const found = geoFromRecord(this.recordOf(ip));
    if (this.mmdbCache.size >= mmdbCacheEntriesMax) this.mmdbCache.clear();
    this.mmdbCache.set(key, found);
    return found;
  }

  /** A damaged record leaves that address without a location: it must not fail the request. */
  private recordOf(ip: IpAddress): unknown {
    try {
      return this.mmdb!.lookup(ip);
    } catch (err) {
      if (!(err instanceof MmdbError)) throw err;
      // The file is what is wrong, not each address in it: one warning, naming the file, is enough.
      if (!this.damagedMmdbLogged) this.log.warn({ err: err.message }, 'mmdb lookup failed; such addresses go without a location');
      this.damagedMmdbLogged = true;
      return undefined;
    }
  }
}
