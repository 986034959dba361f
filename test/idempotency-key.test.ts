/**
 * Idempotency-Key without a database: which keys are accepted, and the request fingerprint, which is stored
 * with the key and so must stay the same across versions for equal bodies, whatever their key order.
 */
import { describe, expect, it } from 'vitest';
import { canonicalJson, fingerprint, keyLockId, MAX_KEY_LENGTH, validateKey } from '../src/jobs/idempotency.ts';

describe('Idempotency-Key validation', () => {
  it.each(['a', 'order-42', '!', '~', '!~', 'x'.repeat(MAX_KEY_LENGTH), '550e8400-e29b-41d4-a716-446655440000'])(
    'accepts %s',
    (key) => {
      expect(validateKey(key)).toBeUndefined();
    },
  );

  it('refuses an empty key', () => {
    expect(validateKey('')).toBe('must not be empty');
  });

  it('refuses a key longer than 255 characters', () => {
    expect(MAX_KEY_LENGTH).toBe(255);
    expect(validateKey('x'.repeat(256))).toBe('must be at most 255 characters');
  });

  it.each(['a b', ' a', 'a\t', 'ключ', 'a\u007f', 'a\u0000', 'é'])('refuses %j: not visible ASCII', (key) => {
    expect(validateKey(key)).toBe('must be visible ASCII characters without spaces');
  });
});

describe('request fingerprint', () => {
  const body = {
    type: 'synthetic',
    input: { chunks: 3, chunk_ms: 0 },
    metadata: { b: [1, { y: null, x: 'é' }], a: true },
  };
  const canonical =
    '{"input":{"chunk_ms":0,"chunks":3},"metadata":{"a":true,"b":[1,{"x":"é","y":null}]},"type":"synthetic"}';

  it('writes JSON with the keys of every object sorted and arrays in their order', () => {
    expect(canonicalJson(body)).toBe(canonical);
    expect(canonicalJson({ b: 1, B: 2, a: 3, _: 4 })).toBe('{"B":2,"_":4,"a":3,"b":1}');
    expect(canonicalJson([3, 1, 2])).toBe('[3,1,2]');
  });

  it('leaves out undefined members, as JSON does', () => {
    expect(canonicalJson({ a: undefined, b: 1 })).toBe('{"b":1}');
    expect(canonicalJson(undefined)).toBe('null');
  });

  it('writes scalars and escapes strings as JSON does', () => {
    expect(canonicalJson(null)).toBe('null');
    expect(canonicalJson('a"b\n')).toBe('"a\\"b\\n"');
    expect(canonicalJson({ 'k"': 1.5 })).toBe('{"k\\"":1.5}');
    expect(canonicalJson(false)).toBe('false');
  });

  it('is the same for equal bodies in any key order, and stable across versions', () => {
    const reordered = {
      metadata: { a: true, b: [1, { x: 'é', y: null }] },
      input: { chunk_ms: 0, chunks: 3 },
      type: 'synthetic',
    };
    expect(fingerprint(reordered)).toBe(fingerprint(body));
    expect(fingerprint(body)).toBe('Q8ANMv5xxYaXBuNt5vZG5xqph7cr9WtawPHrGh7cGq4');
  });

  it('differs for different bodies, array order included', () => {
    expect(fingerprint({ a: [1, 2] })).not.toBe(fingerprint({ a: [2, 1] }));
    expect(fingerprint({ a: 1 })).not.toBe(fingerprint({ a: '1' }));
    expect(fingerprint({ a: { b: 1 } })).not.toBe(fingerprint({ a: { b: 2 } }));
  });
});

describe('the advisory-lock id of a key', () => {
  it('is a signed 64-bit integer, the same in every process', () => {
    expect(keyLockId('tenant-a', 'order-42')).toBe('-1661258547054446181');
    expect(keyLockId('00000000-0000-0000-0000-000000000001', 'k')).toBe('3532217194030358278');
  });

  it('keeps tenant and key apart: ("ab", "c") and ("a", "bc") are different keys', () => {
    expect(keyLockId('ab', 'c')).not.toBe(keyLockId('a', 'bc'));
    expect(keyLockId('t', 'k')).not.toBe(keyLockId('u', 'k'));
  });
});
