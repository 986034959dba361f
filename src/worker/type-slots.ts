/**
 * Per-type slot accounting of one worker process: how many jobs of each type it runs at once, against
 * the type's `concurrency` (or the worker's). A slot is checked and taken with no await between, as
 * executions of the same type claim at the same time; whoever took one gives it back exactly once.
 */
import type { AnyJobType } from '../../packages/sdk/src/index.ts';

export class TypeSlots {
  readonly #taken = new Map<string, number>();
  readonly #defaultLimit: number;

  /** `defaultLimit` bounds a type that sets no `concurrency` of its own. */
  constructor(defaultLimit: number) {
    this.#defaultLimit = defaultLimit;
  }

  /** Takes one of `type`'s slots if one is free; false if the type runs as many here as allowed. */
  tryTake(type: AnyJobType): boolean {
    const taken = this.#taken.get(type.name) ?? 0;
    if (taken >= (type.concurrency ?? this.#defaultLimit)) return false;
    this.#taken.set(type.name, taken + 1);
    return true;
  }

  /** The free slots of each of `types` that has any. */
  rooms(types: readonly AnyJobType[]): Map<string, number> {
    const rooms = new Map<string, number>();
    for (const type of types) {
      const room = (type.concurrency ?? this.#defaultLimit) - (this.#taken.get(type.name) ?? 0);
      if (room > 0) rooms.set(type.name, room);
    }
    return rooms;
  }

  release(typeName: string): void {
    this.#taken.set(typeName, (this.#taken.get(typeName) ?? 1) - 1);
  }
}
