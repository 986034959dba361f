/** The registry of job types: built-ins plus the modules named in LONGHAUL_JOB_TYPES. */
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { AnyJobType } from '../../packages/sdk/src/index.ts';

const NAME = /^[a-z][a-z0-9_-]{0,63}$/;

export class JobTypeRegistry {
  readonly #types = new Map<string, AnyJobType>();

  constructor(types: AnyJobType[] = []) {
    for (const t of types) this.register(t);
  }

  register(type: AnyJobType): void {
    if (!NAME.test(type.name)) throw new Error(`job type name "${type.name}" must match ${NAME}`);
    if (this.#types.has(type.name)) throw new Error(`job type "${type.name}" is registered twice`);
    for (const [value, max, name] of [
      [type.timeoutSeconds, type.maxTimeoutSeconds, 'timeoutSeconds'],
      [type.expireAfterSeconds, type.maxExpireAfterSeconds, 'expireAfterSeconds'],
    ] as const) {
      for (const v of [value, max])
        if (v !== undefined && !(Number.isInteger(v) && v > 0))
          throw new Error(`job type "${type.name}": ${name} and its maximum must be positive whole seconds`);
      if (value !== undefined && max !== undefined && value > max)
        throw new Error(`job type "${type.name}": ${name} ${value} exceeds its maximum ${max}`);
    }
    this.#types.set(type.name, type);
  }

  get(name: string): AnyJobType | undefined {
    return this.#types.get(name);
  }

  names(): string[] {
    return [...this.#types.keys()].sort();
  }

  all(): AnyJobType[] {
    return [...this.#types.values()];
  }
}

function isJobType(v: unknown): v is AnyJobType {
  const o = v as Partial<AnyJobType> | null;
  return (
    typeof o === 'object' &&
    o !== null &&
    typeof o.name === 'string' &&
    typeof o.chunk === 'function' &&
    typeof o.start === 'function' &&
    typeof o.finish === 'function'
  );
}

/**
 * Where a LONGHAUL_JOB_TYPES entry is: a path (relative to the working directory), or a package name,
 * looked up first from the working directory (a deployment that installed its job types there), then
 * from longhaul's own node_modules (an image that added them to longhaul's tree).
 */
function resolveModule(specifier: string): string {
  if (specifier.startsWith('.') || path.isAbsolute(specifier)) return pathToFileURL(path.resolve(specifier)).href;
  try {
    return pathToFileURL(createRequire(path.join(process.cwd(), 'package.json')).resolve(specifier)).href;
  } catch {
    return specifier;
  }
}

/** Imports a user module (a path or package name) and returns the job types it exports. */
export async function loadJobTypeModule(specifier: string): Promise<AnyJobType[]> {
  const target = resolveModule(specifier);
  const mod = (await import(target)) as Record<string, unknown>;
  const found = Object.values(mod).filter(isJobType);
  if (found.length === 0)
    throw new Error(`LONGHAUL_JOB_TYPES: module "${specifier}" exports no job type (use defineJobType)`);
  return found;
}
