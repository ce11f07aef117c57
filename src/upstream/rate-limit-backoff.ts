import { setTimeout as sleep } from 'node:timers/promises';

export interface RateLimitBackoffOptions {
  /** The first pause after a rate-limit answer; each further one in a row doubles it. */
  baseMs: number;
  maxMs: number;
  now?: () => number;
}

/**
 * The upstream's rate limit (code 302) is per account, so one request being limited means every
 * request is: a 302 sets a process-wide "not before" time that every attempt waits for, instead
 * of each request retrying on its own schedule into the same limit. Repeated 302s double the
 * pause; each success halves the streak back down. The 302s of attempts that were already on their
 * way when the pause began are one answer, not a streak: only an attempt sent after the latest
 * escalation can escalate again.
 */
export class RateLimitBackoff {
  #notBefore = 0;
  #streak = 0;
  /** When the pause last grew; an attempt started before it was sent before anyone knew. */
  #escalatedAt = Number.NEGATIVE_INFINITY;
  readonly #options: RateLimitBackoffOptions;
  readonly #now: () => number;

  constructor(options: RateLimitBackoffOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /** Milliseconds every caller still has to wait. */
  get remainingMs(): number {
    return Math.max(0, this.#notBefore - this.#now());
  }

  get streak(): number {
    return this.#streak;
  }

  /** Resolves once the pause is over, or as soon as `signal` aborts (the caller then decides what still holds). */
  async wait(signal?: AbortSignal): Promise<void> {
    // Loop: another 302 may push the time further while we sleep.
    for (let remaining = this.remainingMs; remaining > 0 && !signal?.aborted; remaining = this.remainingMs) {
      await sleep(remaining, undefined, { signal }).catch(() => undefined);
    }
  }

  /**
   * A 302 (or a 429) answered the attempt sent at `sentAt` (by this instance's clock). `atLeastMs`: how long the answer
   * itself asked to be left alone (a 429's `Retry-After`), honoured as `holdOff` does whatever the streak says.
   */
  rateLimited(sentAt: number = this.#now(), atLeastMs?: number): void {
    if (atLeastMs !== undefined) this.holdOff(atLeastMs);
    const now = this.#now();
    // Sent before the latest escalation, or in the same millisecond: part of the answer that escalated already.
    if (sentAt <= this.#escalatedAt) return;
    this.#streak += 1;
    this.#escalatedAt = now;
    const pause = Math.min(this.#options.maxMs, this.#options.baseMs * 2 ** (this.#streak - 1));
    this.#notBefore = Math.max(this.#notBefore, now + pause);
  }

  /**
   * The upstream asked every caller to stay away for `ms` (a `Retry-After`), up to `maxMs`. Not a rate limit by itself
   * (a 503 says the service is down, not that the account asks too much), so the streak stays as it is.
   */
  holdOff(ms: number): void {
    this.#notBefore = Math.max(this.#notBefore, this.#now() + Math.min(this.#options.maxMs, ms));
  }

  /** Whether a pause of `ms` fits under `maxMs`: past it, calls go out again before the upstream said it would answer. */
  canWaitOut(ms: number): boolean {
    return ms <= this.#options.maxMs;
  }

  /** The clock `rateLimited` compares against, for stamping an attempt as it is sent. */
  now(): number {
    return this.#now();
  }

  succeeded(): void {
    this.#streak = Math.floor(this.#streak / 2);
  }
}
