/** The SSRF filter: which addresses a callback may reach, and the lookup that enforces it at connect time. */
import type { LookupAddress } from 'node:dns';
import { isIP } from 'node:net';
import { describe, expect, it } from 'vitest';
import { CallbackAllowList } from '../src/webhooks/allowlist.ts';
import { addressProblem, guardedLookup, SsrfRefusedError } from '../src/webhooks/ssrf.ts';

describe('SSRF rules', () => {
  const none = new CallbackAllowList([]);
  it.each([
    '127.0.0.1',
    '127.8.9.10',
    '10.1.2.3',
    '172.16.0.1',
    '172.31.255.255',
    '192.168.1.1',
    '169.254.169.254',
    '100.100.100.200',
    '0.0.0.0',
    '224.0.0.1',
    '255.255.255.255',
    '::1',
    '::',
    'fe80::1',
    'fc00::1',
    'fd00:ec2::254',
    'ff02::1',
    '::ffff:127.0.0.1',
    '::ffff:7f00:1',
    '::ffff:a9fe:a9fe',
    '::ffff:0:7f00:1',
    '::ffff:0:127.0.0.1',
    '64:ff9b::7f00:1',
    '64:ff9b:1::a00:1',
    // IPv4-compatible forms (::a.b.c.d), which the IPv6 nets above do not cover.
    '::127.0.0.1',
    '::127.0.0.10',
    '::7f00:1',
    '::10.0.0.10',
    '::169.254.169.254',
    '::a9fe:a9fe',
    '::A9FE:A9FE',
  ])('refuses %s', (address) => {
    expect(addressProblem(address, none)).toMatch(/loopback|private|link-local|multicast|reserved|metadata/);
  });

  it.each([
    '93.184.216.34',
    '8.8.8.8',
    '172.32.0.1',
    '2606:4700::1111',
    '::ffff:8.8.8.8',
    '::8.8.8.8',
    '2606:4700::7f00:1',
  ])('allows %s', (address) => {
    expect(addressProblem(address, none)).toBeUndefined();
  });

  it('names what is not an IP address', () => {
    expect(addressProblem('example.com', none)).toBe('"example.com" is not an IP address');
  });

  it('says which address it refuses and how to allow it', () => {
    expect(addressProblem('10.1.2.3', none)).toBe(
      '10.1.2.3 is a loopback, private, link-local, multicast, reserved or metadata address (allow it with LONGHAUL_CALLBACK_ALLOW)',
    );
  });

  it('lets a listed net through in its IPv6 forms too', () => {
    const allow = new CallbackAllowList(['10.0.0.0/8']);
    expect(addressProblem('::ffff:10.1.2.3', allow)).toBeUndefined();
    expect(addressProblem('::10.1.2.3', allow)).toBeUndefined();
    expect(addressProblem('::a01:203', allow)).toBeUndefined();
    expect(addressProblem('::ffff:192.168.1.1', allow)).toBeDefined();
    const one = new CallbackAllowList(['10.1.2.3']);
    expect(addressProblem('::a01:203', one)).toBeUndefined();
    expect(addressProblem('::a01:204', one)).toBeDefined();
  });

  it('does not take ::0.0.0.0 and ::0.0.0.1 (the IPv6 unspecified and loopback) for IPv4 "this network"', () => {
    const allow = new CallbackAllowList(['0.0.0.0/8']);
    expect(addressProblem('0.0.0.1', allow)).toBeUndefined();
    for (const address of ['::0.0.0.0', '::0.0.0.1', '::0:0', '::0:1']) {
      expect(addressProblem(address, allow), address).toMatch(/loopback/);
    }
  });

  it('lets listed addresses, nets and hosts through', () => {
    const allow = new CallbackAllowList(['127.0.0.1', '10.0.0.0/8', 'receiver.internal']);
    expect(addressProblem('127.0.0.1', allow)).toBeUndefined();
    expect(addressProblem('10.9.8.7', allow)).toBeUndefined();
    expect(addressProblem('127.0.0.2', allow)).toBeDefined();
    expect(allow.allowsHost('receiver.internal')).toBe(true);
  });
});

interface Answer {
  err: NodeJS.ErrnoException | null;
  address: string | LookupAddress[];
  family: number | undefined;
}

function lookup(allow: CallbackAllowList, host: string, options: { all?: boolean } = {}): Promise<Answer> {
  return new Promise((resolve) =>
    guardedLookup(allow)(host, options, (err, address, family) => resolve({ err, address, family })),
  );
}

describe('the connect-time lookup', () => {
  it('refuses a name that resolves to a loopback address, with an error the dispatcher recognises', async () => {
    const { err } = await lookup(new CallbackAllowList([]), 'localhost');
    expect(err).toBeInstanceOf(SsrfRefusedError);
    expect(err?.code).toBe('ERR_SSRF_REFUSED');
    expect(err?.name).toBe('SsrfRefusedError');
    expect(err?.message).toMatch(/^refused to connect to localhost: (127\.0\.0\.1|::1) is a loopback/);
  });

  it('answers with one address, or all of them, when the host is listed by name', async () => {
    const allow = new CallbackAllowList(['localhost']);
    const one = await lookup(allow, 'localhost');
    expect(one.err).toBeNull();
    if (typeof one.address !== 'string') throw new Error('expected one address');
    expect(['127.0.0.1', '::1']).toContain(one.address);
    expect(one.family).toBe(isIP(one.address));
    const all = await lookup(allow, 'localhost', { all: true });
    expect(all.err).toBeNull();
    expect(Array.isArray(all.address)).toBe(true);
    expect(all.address).toContainEqual({ address: one.address, family: one.family });
  });

  it('lets a name through when every address it resolves to is listed', async () => {
    const { err, address } = await lookup(new CallbackAllowList(['127.0.0.0/8', '::1']), 'localhost');
    expect(err).toBeNull();
    expect(['127.0.0.1', '::1']).toContain(address);
  });

  it('passes a resolution error on as it is', async () => {
    const { err } = await lookup(new CallbackAllowList([]), 'no..such.host');
    expect(err?.code).toBe('ENOTFOUND');
    expect(err).not.toBeInstanceOf(SsrfRefusedError);
  });
});
