/**
 * A request body as JSON, refused (before anything else touches it) when it is nested too deeply, too
 * wide, has too long a string, or holds what JSON allows but cannot be stored as sent. Neither check
 * recurses, so no body can overflow the stack, and both are linear in the body's size.
 */
import type { JsonLimits } from '../config.ts';
import { ApiError, type FieldError } from './errors.ts';

/**
 * The body as JSON: 422 `json-too-complex` past a limit (checked on the text, before JSON.parse, whose
 * time grows faster than the size of deep or wide documents), 400 if it is not JSON, 422 if it cannot be
 * kept as sent (see unstorable).
 */
export function parseJson(text: string, limits: JsonLimits): unknown {
  if (text === '') throw emptyBody();
  const tooComplex = limitProblem(text, limits);
  if (tooComplex !== undefined)
    throw new ApiError('json-too-complex', `the body exceeds a JSON limit: ${tooComplex.message}`, {
      errors: [tooComplex],
    });
  let json: unknown;
  try {
    json = JSON.parse(text) as unknown;
  } catch (err) {
    throw new ApiError('malformed-json', `the body is not valid JSON: ${(err as Error).message}`);
  }
  const problem = unstorable(json);
  if (problem !== undefined)
    throw new ApiError('validation-error', 'the request body is not valid', { errors: [problem] });
  return json;
}

/** The answer to a request that needs a JSON body and sent none. */
export function emptyBody(): ApiError {
  return new ApiError('malformed-json', 'the body is empty: send a JSON body');
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const LETTER_U = 0x75;
const COMMA = 0x2c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
/** Longest key quoted in a field path; a longer one is cut. */
const PATH_KEY_CHARS = 64;

/**
 * The first place, in one pass over the text, where the JSON nests deeper than `maxDepth` (the body is
 * depth 1), an object or array has more than `maxMembers` members, or a string or key is longer than
 * `maxStringLength` UTF-16 code units once unescaped. Malformed text is left to JSON.parse.
 */
export function limitProblem(text: string, limits: JsonLimits): FieldError | undefined {
  const { maxDepth, maxMembers, maxStringLength } = limits;
  // Per open container, indexed by depth: whether it is an object, its commas so far (the index of its
  // current member), and where its current key's text lies (to name the field).
  const isObject: boolean[] = [false];
  const commas: number[] = [0];
  const keyAt: Array<[number, number]> = [[0, 0]];
  let depth = 0;
  let expectKey = false;
  const n = text.length;

  const path = (levels: number): string => {
    let out = '';
    for (let d = 1; d <= levels; d++) {
      if (isObject[d] === true) {
        const [from, to] = keyAt[d] ?? [0, 0];
        const key = decodeKey(text.slice(from, to));
        out += (out === '' ? '' : '.') + (key.length > PATH_KEY_CHARS ? `${key.slice(0, PATH_KEY_CHARS)}…` : key);
      } else {
        out += `[${commas[d] ?? 0}]`;
      }
    }
    return out === '' ? '(body)' : out;
  };

  for (let i = 0; i < n; i++) {
    const ch = text.charCodeAt(i);
    if (ch === QUOTE) {
      const start = i;
      let length = 0;
      i++;
      while (i < n) {
        const c = text.charCodeAt(i);
        if (c === QUOTE) break;
        // An escape is one code unit: \uXXXX or a backslash and one character.
        i += c !== BACKSLASH ? 1 : text.charCodeAt(i + 1) === LETTER_U ? 6 : 2;
        length++;
      }
      const isKey = expectKey;
      if (isKey) {
        keyAt[depth] = [start, i + 1];
        expectKey = false;
      }
      if (length > maxStringLength) {
        return isKey
          ? {
              field: `${path(depth - 1)} (a key)`,
              message: `a key is ${length} characters; the limit is ${maxStringLength}`,
            }
          : { field: path(depth), message: `the string is ${length} characters; the limit is ${maxStringLength}` };
      }
    } else if (ch === OPEN_OBJECT || ch === OPEN_ARRAY) {
      if (depth === maxDepth) return { field: path(depth), message: `nested more than ${maxDepth} levels deep` };
      depth++;
      isObject[depth] = ch === OPEN_OBJECT;
      commas[depth] = 0;
      keyAt[depth] = [0, 0];
      expectKey = ch === OPEN_OBJECT;
    } else if (ch === CLOSE_OBJECT || ch === CLOSE_ARRAY) {
      if (depth > 0) depth--;
      expectKey = false;
    } else if (ch === COMMA && depth > 0) {
      const members = (commas[depth] ?? 0) + 2;
      if (members > maxMembers) {
        const what = isObject[depth] === true ? 'keys' : 'items';
        return { field: path(depth - 1), message: `more than ${maxMembers} ${what}` };
      }
      commas[depth] = members - 1;
      expectKey = isObject[depth] === true;
    }
  }
  return undefined;
}

function decodeKey(quoted: string): string {
  try {
    return String(JSON.parse(quoted));
  } catch {
    return quoted;
  }
}

/**
 * The first value JSON.parse accepts that would not be stored as sent: a string or key with U+0000 or an
 * unpaired UTF-16 surrogate (Postgres text and jsonb refuse both), a number beyond double range (it
 * parses to ±Infinity and would be stored as null), a `__proto__` key (dropped by object schemas). Each
 * would otherwise fail in the database with a 500 or change what a replayed Idempotency-Key compares.
 * Walks with its own stack, in document order, spelling a path only for the value at fault.
 */
function unstorable(root: unknown): FieldError | undefined {
  // Each value met is a record (its parent record and its key there), so a path is spelled only for the
  // value at fault; `stack` holds the records still to visit.
  const parent: number[] = [-1];
  const keyOf: Array<string | number> = [''];
  const valueOf: unknown[] = [root];
  const stack: number[] = [0];
  const path = (record: number): string => {
    let out = '';
    for (let r = record; r > 0; r = parent[r] ?? 0) {
      const k = keyOf[r] ?? '';
      out = typeof k === 'number' ? `[${k}]${out}` : `${parent[r] === 0 ? '' : '.'}${k}${out}`;
    }
    return out === '' ? '(body)' : out;
  };
  const child = (of: number, key: string | number, value: unknown): void => {
    stack.push(valueOf.length);
    parent.push(of);
    keyOf.push(key);
    valueOf.push(value);
  };
  for (let r = stack.pop(); r !== undefined; r = stack.pop()) {
    const value = valueOf[r];
    valueOf[r] = undefined;
    if (typeof value === 'string') {
      const p = stringProblem(value, path(r));
      if (p !== undefined) return p;
    } else if (typeof value === 'number') {
      if (!Number.isFinite(value)) return { field: path(r), message: 'the number is too large to represent' };
    } else if (Array.isArray(value)) {
      for (let i = value.length - 1; i >= 0; i--) child(r, i, value[i]);
    } else if (value !== null && typeof value === 'object') {
      const keys = Object.keys(value);
      for (const key of keys) {
        if (key === '__proto__' || key.includes('\u0000') || !key.isWellFormed()) {
          const field = `${r === 0 ? '' : `${path(r)}.`}${key}`;
          if (key === '__proto__') return { field, message: 'the key "__proto__" is not allowed' };
          return stringProblem(key, `${field} (the key)`);
        }
      }
      for (let i = keys.length - 1; i >= 0; i--) {
        const key = keys[i] as string;
        child(r, key, (value as Record<string, unknown>)[key]);
      }
    }
  }
  return undefined;
}

function stringProblem(s: string, field: string): FieldError | undefined {
  if (s.includes('\u0000')) return { field, message: 'contains U+0000 (NUL), which cannot be stored' };
  if (!s.isWellFormed()) return { field, message: 'contains an unpaired UTF-16 surrogate, which cannot be stored' };
  return undefined;
}
