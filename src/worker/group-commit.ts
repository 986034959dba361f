/**
 * Group commit for per-job writes that need no transaction of their own: the first write goes at once,
 * and those submitted while a batch is in flight go together in the next one, as one statement and one
 * commit. Each job still gets its own answer: the batch function decides per item (a job's condition
 * failing leaves the others alone). If a whole batch fails (e.g. one job's value is refused by
 * Postgres), each of its items is tried alone, so one bad job cannot fail the others.
 */
export class GroupCommit<I, O> {
  readonly #run: (items: I[]) => Promise<O[]>;
  readonly #max: number;
  #queue: Array<{ item: I; resolve: (o: O) => void; reject: (err: unknown) => void }> = [];
  #flushing = false;

  /** `run` answers every item, in order. `max` bounds one batch. */
  constructor(run: (items: I[]) => Promise<O[]>, max: number) {
    this.#run = run;
    this.#max = max;
  }

  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      if (!this.#flushing) {
        this.#flushing = true;
        void this.#flush();
      }
    });
  }

  async #flush(): Promise<void> {
    // Items submitted in this same tick join the first batch.
    await Promise.resolve();
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.#max);
      try {
        const out = await this.#run(batch.map((b) => b.item));
        batch.forEach((b, i) => b.resolve(out[i] as O));
      } catch (err) {
        if (batch.length === 1) batch[0]?.reject(err);
        else {
          for (const b of batch) {
            try {
              const [o] = await this.#run([b.item]);
              b.resolve(o as O);
            } catch (e) {
              b.reject(e);
            }
          }
        }
      }
    }
    this.#flushing = false;
  }
}
