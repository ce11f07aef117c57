import { UpstreamError } from './upstream-error.js';

/** `closed`: calls go out; `open`: every call fails fast; `half-open`: one probe call may go out. */
export type BreakerState = 'closed' | 'open' | 'half-open';

/**
 * Business codes that are about the account, not the creator: invalid token (100), API no longer
 * valid (300), daily quota used up (303), permission denied (600), balance insufficient (601).
 * No retry and no other kolId can succeed while one holds, so every call until it is fixed is wasted.
 */
export const accountFailureCodes: ReadonlySet<number> = new Set([100, 300, 303, 600, 601]);

export function isAccountFailure(error: UpstreamError): boolean {
  return error.businessCode !== undefined && accountFailureCodes.has(error.businessCode);
}

export interface CircuitBreakerOptions {
  /** How long the breaker stays open before letting one probe through; 0 turns the breaker off. */
  cooldownMs: number;
  onStateChange?: (state: BreakerState, cause: UpstreamError | undefined) => void;
  now?: () => number;
}

/** A permission to make one call, handed back with its outcome. */
export interface Admission {
  readonly probe: boolean;
  /**
   * The breaker's generation when the call was let through; each change of state starts a new one. An outcome from an
   * older generation is about a state that has passed: an answer can take longer than a cool-down (UPSTREAM_TIMEOUT_MS
   * is 60 s by default, like BREAKER_COOLDOWN_SECONDS), and a call sent before the breaker opened must not open again
   * a breaker that has since recovered, nor a stale probe close one that has opened since.
   */
  readonly generation: number;
}

/**
 * An account-level circuit breaker: after an account failure it stops all upstream calls for a
 * cool-down and answers with that failure's code instead; then one probe call goes out, whose
 * success (or an answer that failed only for its creator: `accountServed`) closes the breaker and whose failure opens it again.
 */
export class CircuitBreaker {
  #state: BreakerState = 'closed';
  #openUntil = 0;
  #cause: UpstreamError | undefined;
  #probing = false;
  #generation = 0;
  readonly #options: CircuitBreakerOptions;
  readonly #now: () => number;

  constructor(options: CircuitBreakerOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  get enabled(): boolean {
    return this.#options.cooldownMs > 0;
  }

  get state(): BreakerState {
    if (this.#state === 'open' && this.#now() >= this.#openUntil) this.#transition('half-open');
    return this.#state;
  }

  /** Seconds until a probe may go out (0 unless open). */
  get retryAfterSeconds(): number {
    return this.state === 'open' ? Math.max(1, Math.ceil((this.#openUntil - this.#now()) / 1000)) : 0;
  }

  /** Throws the breaker's error while it is open; reserves nothing (a cheap check before queueing). */
  check(): void {
    if (this.state === 'open') throw this.#fastFailure();
  }

  /** The error a call failing fast gets now: undefined while closed. */
  failure(): UpstreamError | undefined {
    return this.state === 'closed' || !this.#cause ? undefined : this.#fastFailure();
  }

  /** Admits one call, as the probe when half-open; throws the breaker's error when no call may go out. */
  admit(): Admission {
    const state = this.state;
    if (state === 'closed') return { probe: false, generation: this.#generation };
    if (state === 'half-open' && !this.#probing) {
      this.#probing = true;
      return { probe: true, generation: this.#generation };
    }
    throw this.#fastFailure();
  }

  succeeded(admission: Admission): void {
    if (this.#ended(admission) && admission.probe) this.#transition('closed');
  }

  /** The call ended without telling anything about the account (e.g. v1 found gone): a probe's turn is handed back. */
  abandoned(admission: Admission): void {
    this.#ended(admission);
  }

  failed(admission: Admission, error: UpstreamError): void {
    if (!this.#ended(admission) || !this.enabled) return;
    if (isAccountFailure(error)) this.#open(error);
    // A creator's own failure (inside a code-0 answer, or code 301/400) shows the account is served again: what the probe was asking.
    else if (admission.probe && error.accountServed) this.#transition('closed');
    else if (admission.probe) this.#open(this.#cause ?? error);
  }

  /**
   * Hands a probe's turn back, and says whether the outcome may still move the breaker: only while the state the call
   * was let through in lasts.
   */
  #ended(admission: Admission): boolean {
    if (admission.generation !== this.#generation) return false;
    if (admission.probe) this.#probing = false;
    return true;
  }

  #open(cause: UpstreamError): void {
    this.#cause = cause;
    this.#openUntil = this.#now() + this.#options.cooldownMs;
    this.#transition('open');
  }

  #transition(state: BreakerState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#generation += 1;
    // A probe of a past generation can no longer hand its turn back: the new state starts without one.
    this.#probing = false;
    if (state === 'closed') this.#cause = undefined;
    this.#options.onStateChange?.(state, this.#cause);
  }

  #fastFailure(): UpstreamError {
    const cause = this.#cause!;
    return new UpstreamError(cause.code, `circuit breaker ${this.#state} after upstream code ${cause.upstreamCode}; no call made`, {
      upstreamCode: cause.upstreamCode,
      businessCode: cause.businessCode,
    });
  }
}
