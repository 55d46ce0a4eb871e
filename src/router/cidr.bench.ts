// Why `parseIp` lets node:net decide what is an address and ipaddr.js only parse it: ipaddr.js's
// own checks (`IPv4.isValidFourPartDecimal`, `IPv6.isValid`) parse the text once more, and cost
// several times the rest on the geolocation policy's per-request path (client address, trusted
// proxy, X-Forwarded-For hops). `node dist/router/cidr.bench.js` after `npm run build`.
import ipaddr from 'ipaddr.js';
import { realClock } from '../platform/real/real-env.js';
import { CidrTable, parseCidr, parseIp, type IpAddress } from './cidr.js';

/** The same answers as `parseIp`, with ipaddr.js deciding what is an address. */
function parseIpWithIpaddrChecks(text: string): IpAddress | undefined {
  let s = text.trim();
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  if (ipaddr.IPv4.isValidFourPartDecimal(s)) return ipaddr.IPv4.parse(s);
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  if (!ipaddr.IPv6.isValid(s)) return undefined;
  const v6 = ipaddr.IPv6.parse(s);
  return v6.isIPv4MappedAddress() ? v6.toIPv4Address() : v6;
}

const addresses: string[] = [];
for (let i = 0; i < 1000; i++) addresses.push(`${10 + (i % 200)}.${(i * 7) % 256}.${(i * 13) % 256}.${i % 256}`);
for (let i = 0; i < 200; i++) addresses.push(`2001:db8:${i.toString(16)}::${(i * 3).toString(16)}`);
const trusted = new CidrTable(['127.0.0.0/8', '::1/128'].map((range) => parseCidr(range, true)!));
const geoMap = new CidrTable([...Array(20).keys()].map((i) => parseCidr(`${20 + i}.0.0.0/8`, `site-${i}`)!));
const rounds = 300;
/** Matches found, printed so that the loops' work is used. */
let matched = 0;

function nsPerAddress(parse: (text: string) => IpAddress | undefined): number {
  const started = realClock.monotonicMs();
  for (let r = 0; r < rounds; r++) {
    for (const text of addresses) {
      const ip = parse(text);
      if (ip !== undefined && (trusted.lookup(ip) === true || geoMap.lookup(ip) !== undefined)) matched++;
    }
  }
  const elapsedMs = realClock.monotonicMs() - started;
  return (elapsedMs * 1e6) / (rounds * addresses.length);
}

for (let round = 1; round <= 3; round++) {
  const nodeChecked = nsPerAddress(parseIp);
  const ipaddrChecked = nsPerAddress(parseIpWithIpaddrChecks);
  console.log(`round ${round}: parse + 2 lookups, ns/address: parseIp ${nodeChecked.toFixed(0)}, ipaddr.js checks ${ipaddrChecked.toFixed(0)}`);
}
console.log(`${matched} matches`);
