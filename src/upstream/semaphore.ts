/** Bounds how many upstream requests are in flight; waiters are served first come, first served. */
export class Semaphore {
  #available: number;
  readonly #waiters: Array<() => void> = [];

  constructor(readonly size: number) {
    this.#available = size;
  }

  get inUse(): number {
    return this.size - this.#available;
  }

  /** Callers waiting for a slot now. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /**
   * A slot, as the function that hands it back; undefined if `signal` aborts first (the waiter leaves the queue, so
   * the slot goes to the next one).
   */
  async acquire(signal?: AbortSignal): Promise<(() => void) | undefined> {
    if (signal?.aborted) return undefined;
    if (this.#available > 0) {
      this.#available -= 1;
    } else {
      const granted = await new Promise<boolean>((resolve) => {
        const leave = () => {
          this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
          resolve(false);
        };
        const waiter = () => {
          signal?.removeEventListener('abort', leave);
          resolve(true);
        };
        signal?.addEventListener('abort', leave, { once: true });
        this.#waiters.push(waiter);
      });
      if (!granted) return undefined;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiters.shift();
      if (next) next();
      else this.#available += 1;
    };
  }
}
