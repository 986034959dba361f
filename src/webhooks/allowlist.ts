/**
 * LONGHAUL_CALLBACK_ALLOW: hosts and CIDRs that callbacks may reach although they are private
 * (or over plain http). Used when a callback URL is saved and again when a delivery connects.
 */
import { BlockList, isIP } from 'node:net';

export class CallbackAllowList {
  readonly #hosts = new Set<string>();
  readonly #nets = new BlockList();
  readonly empty: boolean;

  constructor(entries: readonly string[]) {
    for (const raw of entries) {
      const entry = raw.trim().toLowerCase();
      const slash = entry.indexOf('/');
      if (slash > 0) {
        const addr = entry.slice(0, slash);
        const bits = Number(entry.slice(slash + 1));
        const family = isIP(addr);
        if (family === 0 || !Number.isInteger(bits)) throw new Error(`LONGHAUL_CALLBACK_ALLOW: "${raw}" is not a CIDR`);
        this.#nets.addSubnet(addr, bits, family === 6 ? 'ipv6' : 'ipv4');
      } else if (isIP(entry) !== 0) {
        this.#nets.addAddress(entry, isIP(entry) === 6 ? 'ipv6' : 'ipv4');
      } else {
        this.#hosts.add(entry);
      }
    }
    this.empty = entries.length === 0;
  }

  /** The URL host (name or literal address, IPv6 without brackets) is listed by name or falls in a listed net. */
  allowsHost(host: string): boolean {
    const h = host.toLowerCase().replace(/^\[|\]$/g, '');
    if (this.#hosts.has(h)) return true;
    return this.allowsAddress(h);
  }

  /** A resolved address falls in a listed net or equals a listed address. */
  allowsAddress(address: string): boolean {
    const family = isIP(address);
    if (family === 0) return false;
    return this.#nets.check(address, family === 6 ? 'ipv6' : 'ipv4');
  }
}

/**
 * A callback URL must be absolute https without credentials; plain http only for an allow-listed host.
 * Returns the reason it is refused, or undefined.
 */
export function callbackUrlProblem(raw: string, allow: CallbackAllowList): string | undefined {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'must be an absolute URL';
  }
  if (url.username !== '' || url.password !== '') return 'must not contain credentials';
  if (url.hash !== '') return 'must not contain a fragment';
  if (url.protocol === 'https:') return undefined;
  if (url.protocol === 'http:') {
    return allow.allowsHost(url.hostname)
      ? undefined
      : 'must use https (plain http only for hosts in LONGHAUL_CALLBACK_ALLOW)';
  }
  return 'must use https';
}
