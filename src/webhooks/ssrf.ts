/**
 * SSRF protection for callbacks. The check runs at connect time on the address actually connected to
 * (a `lookup` for the socket), so a name that resolved to a public address when the URL was saved and to
 * 127.0.0.1 now (DNS rebinding) is refused. LONGHAUL_CALLBACK_ALLOW lets listed hosts or nets through.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import type { CallbackAllowList } from './allowlist.ts';

/** Nets a callback may never reach unless allow-listed: loopback, private, link-local, multicast, reserved, metadata. */
const BLOCKED_V4: Array<[string, number]> = [
  ['0.0.0.0', 8], // "this network", includes the unspecified address
  ['10.0.0.0', 8], // private
  ['100.64.0.0', 10], // carrier-grade NAT (includes Alibaba's metadata 100.100.100.200)
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local (includes the 169.254.169.254 cloud metadata service)
  ['172.16.0.0', 12], // private
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation
  ['192.168.0.0', 16], // private
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // documentation
  ['203.0.113.0', 24], // documentation
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, includes broadcast
];
const BLOCKED_V6: Array<[string, number]> = [
  ['::', 128], // unspecified
  ['::1', 128], // loopback
  ['::ffff:0:0:0', 96], // IPv4-translated (SIIT, RFC 7915: ::ffff:0:a.b.c.d reaches a.b.c.d)
  ['64:ff9b::', 96], // NAT64 (reaches IPv4 space)
  ['64:ff9b:1::', 48], // local-use NAT64 (RFC 8215), also reaches IPv4 space
  ['100::', 64], // discard
  ['2001:db8::', 32], // documentation
  ['fc00::', 7], // unique local (includes AWS's fd00:ec2::254 metadata)
  ['fe80::', 10], // link-local
  ['ff00::', 8], // multicast
];

const blocked = new BlockList();
for (const [net, bits] of BLOCKED_V4) blocked.addSubnet(net, bits, 'ipv4');
for (const [net, bits] of BLOCKED_V6) blocked.addSubnet(net, bits, 'ipv6');

/** The IPv4 address inside an IPv4-mapped or -compatible IPv6 address (::ffff:a.b.c.d), if it is one. */
function embeddedV4(address: string): string | undefined {
  const m = /^::(?:ffff:)?(?:(\d+\.\d+\.\d+\.\d+)|([0-9a-f]{1,4}):([0-9a-f]{1,4}))$/i.exec(address);
  if (m === null) return undefined;
  if (m[1] !== undefined) return m[1];
  const hi = parseInt(m[2] ?? '0', 16);
  const lo = parseInt(m[3] ?? '0', 16);
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

/** Why an address may not be called back, or undefined when it may. */
export function addressProblem(address: string, allow: CallbackAllowList): string | undefined {
  const family = isIP(address);
  if (family === 0) return `"${address}" is not an IP address`;
  if (allow.allowsAddress(address)) return undefined;
  const v4 = family === 6 ? embeddedV4(address.toLowerCase()) : undefined;
  if (v4 !== undefined && v4 !== '0.0.0.0' && v4 !== '0.0.0.1') return addressProblem(v4, allow);
  if (blocked.check(address, family === 6 ? 'ipv6' : 'ipv4')) {
    return `${address} is a loopback, private, link-local, multicast, reserved or metadata address (allow it with LONGHAUL_CALLBACK_ALLOW)`;
  }
  return undefined;
}

/** Raised when a callback's address is refused; the dispatcher records it as a permanent failure. */
export class SsrfRefusedError extends Error {
  override name = 'SsrfRefusedError';
  readonly code = 'ERR_SSRF_REFUSED';
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * A `lookup` for net/tls.connect that resolves as usual and refuses the connection when any resolved
 * address is forbidden (refusing all, not picking the allowed ones, so a mixed answer cannot be abused).
 * A host named in the allow-list may resolve to anything.
 */
export function guardedLookup(allow: CallbackAllowList) {
  return (hostname: string, options: { all?: boolean; family?: number | string }, callback: LookupCallback): void => {
    dnsLookup(hostname, { ...options, all: true } as { all: true }, (err, addresses) => {
      if (err !== null) return callback(err, []);
      if (!allow.allowsHost(hostname)) {
        for (const a of addresses) {
          const problem = addressProblem(a.address, allow);
          if (problem !== undefined)
            return callback(new SsrfRefusedError(`refused to connect to ${hostname}: ${problem}`), []);
        }
      }
      if (options.all === true) return callback(null, addresses);
      const first = addresses[0];
      if (first === undefined)
        return callback(Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' }), []);
      callback(null, first.address, first.family);
    });
  };
}
