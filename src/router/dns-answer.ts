// Authoritative DNS answers for the router's zone, as a pure function of a decoded query and the
// router's ranking (the same policies as HTTP). Names, for zone `tandem.local` and name `app`:
//   app.tandem.local              A/AAAA  best sites' addresses (when the host is an IP literal)
//   _http._tcp.app.tandem.local   SRV     every candidate site, priority = rank, with its port
//   {site}.tandem.local           A/AAAA  that site's address (the SRV targets)
//   tandem.local                  SOA, NS;  ns.tandem.local  A/AAAA of the DNS server itself
// Other names in the zone: NXDOMAIN; names outside it: REFUSED; not a QUERY: NOTIMP.
import { isIPv4, isIPv6 } from 'node:net';
import type { Answer, DecodedPacket, Packet, Question } from 'dns-packet';

export const rcode = { noError: 0, formErr: 1, servFail: 2, nxDomain: 3, notImp: 4, refused: 5 } as const;
const flagAuthoritative = 1 << 10;
const flagTruncated = 1 << 9;
const flagRecursionDesired = 1 << 8;
/** The UDP payload size we advertise and honour at most (DNS flag day 2020). */
export const ednsPayloadBytesMax = 1232;
export const udpPlainBytesMax = 512;

export interface DnsSite {
  id: string;
  hostname: string;
  port: number;
}

export interface DnsRanking {
  /** Candidate sites, best first. */
  sites: DnsSite[];
  /** SRV weights when the policy is weighted (same priority for all), else undefined. */
  weights: Map<string, number> | undefined;
}

export interface DnsZone {
  zone: string;
  name: string;
  ttl: number;
  addressesMax: number;
  /** Every configured site, for `{site}.{zone}`. */
  allSites(): readonly DnsSite[];
  rank(clientIp: string | undefined): DnsRanking;
  /** The address the DNS server listens on, for `ns.{zone}`. */
  serverHost: string;
}

interface ClientSubnet {
  family: number;
  sourcePrefixLength: number;
  ip: string;
}

function normalize(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

function addressType(host: string): 'A' | 'AAAA' | undefined {
  if (isIPv4(host)) return 'A';
  if (isIPv6(host)) return 'AAAA';
  return undefined;
}

/** The OPT record of a query, if it has one. */
function optOf(query: DecodedPacket): Extract<Answer, { type: 'OPT' }> | undefined {
  return (query.additionals ?? []).find((a): a is Extract<Answer, { type: 'OPT' }> => a.type === 'OPT');
}

export function clientSubnetOf(query: DecodedPacket): ClientSubnet | undefined {
  const opt = optOf(query);
  for (const o of opt?.options ?? []) {
    const option = o as { code: number | string; family?: number; sourcePrefixLength?: number; ip?: string };
    if ((option.code === 8 || option.code === 'CLIENT_SUBNET') && typeof option.ip === 'string') {
      return { family: option.family ?? 1, sourcePrefixLength: option.sourcePrefixLength ?? 0, ip: option.ip };
    }
  }
  return undefined;
}

/**
 * @param clientIp the querier's address (the resolver's), replaced by the EDNS Client Subnet when present
 * @param usesClientLocation whether the ranking depends on the client's address (then ECS scope = source)
 */
export function answerDnsQuery(query: DecodedPacket, clientIp: string | undefined, zone: DnsZone, usesClientLocation: boolean): Packet {
  const opt = optOf(query);
  const ecs = clientSubnetOf(query);
  const response: Packet & { answers: Answer[]; authorities: Answer[]; additionals: Answer[] } = {
    type: 'response',
    id: query.id ?? 0,
    flags: (query.flags ?? 0) & flagRecursionDesired,
    questions: query.questions ?? [],
    answers: [],
    authorities: [],
    additionals: [],
  };
  if (opt !== undefined) {
    response.additionals.push({
      type: 'OPT',
      name: '.',
      udpPayloadSize: ednsPayloadBytesMax,
      extendedRcode: 0,
      ednsVersion: 0,
      flags: 0,
      flag_do: false,
      options:
        ecs === undefined
          ? []
          : [{ code: 'CLIENT_SUBNET' as never, family: ecs.family, sourcePrefixLength: ecs.sourcePrefixLength, scopePrefixLength: usesClientLocation ? ecs.sourcePrefixLength : 0, ip: ecs.ip }],
    } as Answer);
  }
  const withRcode = (code: number, authoritative: boolean): Packet => {
    response.flags = (response.flags ?? 0) | code | (authoritative ? flagAuthoritative : 0);
    return response;
  };

  if ((query as { opcode?: string }).opcode !== 'QUERY') return withRcode(rcode.notImp, false);
  if (response.questions!.length !== 1) return withRcode(rcode.formErr, false);
  const question = response.questions![0]!;
  const qname = normalize(question.name);
  const apex = normalize(zone.zone);
  if (qname !== apex && !qname.endsWith(`.${apex}`)) return withRcode(rcode.refused, false);
  if (question.class !== undefined && question.class !== 'IN' && question.class !== 'ANY') return withRcode(rcode.refused, false);

  const ttl = zone.ttl;
  const soa: Answer = {
    type: 'SOA',
    name: apex,
    ttl,
    data: { mname: `ns.${apex}`, rname: `hostmaster.${apex}`, serial: 1, refresh: 3600, retry: 600, expire: 86_400, minimum: ttl },
  };
  const relative = qname === apex ? '' : qname.slice(0, -(apex.length + 1));
  const service = normalize(zone.name);
  const wants = (type: Question['type']) => question.type === type || (question.type as string) === 'ANY';
  const addressRecords = (name: string, host: string): Answer[] => {
    const type = addressType(host);
    if (type === undefined || !wants(type)) return [];
    return [{ type, name, ttl, data: host }];
  };
  const nodata = () => {
    response.authorities.push(soa);
    return withRcode(rcode.noError, true);
  };

  if (relative === '') {
    if (wants('SOA')) response.answers.push(soa);
    if (wants('NS')) response.answers.push({ type: 'NS', name: apex, ttl, data: `ns.${apex}` });
    return response.answers.length === 0 ? nodata() : withRcode(rcode.noError, true);
  }
  if (relative === service) {
    const ranking = zone.rank(ecs?.ip ?? clientIp);
    const seen = new Set<string>();
    for (const site of ranking.sites) {
      if (seen.size >= zone.addressesMax) break;
      if (addressType(site.hostname) === undefined || seen.has(site.hostname)) continue;
      const records = addressRecords(question.name, site.hostname);
      if (records.length === 0) continue;
      seen.add(site.hostname);
      response.answers.push(...records);
    }
    return response.answers.length === 0 ? nodata() : withRcode(rcode.noError, true);
  }
  if (relative === `_http._tcp.${service}`) {
    if (!wants('SRV')) return nodata();
    const ranking = zone.rank(ecs?.ip ?? clientIp);
    ranking.sites.forEach((site, rank) => {
      const inZone = addressType(site.hostname) !== undefined;
      const target = inZone ? `${site.id}.${apex}` : site.hostname;
      const weight = ranking.weights === undefined ? 1 : Math.max(0, Math.min(65_535, Math.round(ranking.weights.get(site.id) ?? 0)));
      response.answers.push({
        type: 'SRV',
        name: question.name,
        ttl,
        data: { priority: ranking.weights === undefined ? rank : 0, weight, port: site.port, target },
      });
      if (inZone) {
        const type = addressType(site.hostname)!;
        response.additionals.push({ type, name: target, ttl, data: site.hostname });
      }
    });
    return response.answers.length === 0 ? nodata() : withRcode(rcode.noError, true);
  }
  if (relative === 'ns') {
    response.answers.push(...addressRecords(question.name, zone.serverHost));
    return response.answers.length === 0 ? nodata() : withRcode(rcode.noError, true);
  }
  const site = zone.allSites().find((s) => s.id === relative);
  if (site !== undefined) {
    response.answers.push(...addressRecords(question.name, site.hostname));
    return response.answers.length === 0 ? nodata() : withRcode(rcode.noError, true);
  }
  response.authorities.push(soa);
  return withRcode(rcode.nxDomain, true);
}

/** The same response without records, flagged truncated: the client retries over TCP. */
export function truncated(response: Packet): Packet {
  return {
    ...response,
    flags: (response.flags ?? 0) | flagTruncated,
    answers: [],
    authorities: [],
    additionals: (response.additionals ?? []).filter((a) => a.type === 'OPT'),
  };
}

/** A minimal FORMERR answer for a packet that does not decode but has a 12-byte header. */
export function formErrFor(raw: Buffer): Buffer | undefined {
  if (raw.length < 12) return undefined;
  const flags = raw.readUInt16BE(2);
  if (flags & 0x8000) return undefined; // a response: never answer it (no loops)
  const out = Buffer.alloc(12);
  out.writeUInt16BE(raw.readUInt16BE(0), 0);
  out.writeUInt16BE(0x8000 | (flags & (0x7800 | flagRecursionDesired)) | rcode.formErr, 2);
  return out;
}
