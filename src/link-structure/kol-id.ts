import type { GraphQLError } from 'graphql';
import { badUserInput } from '../errors.js';

const kolIdPattern = /^[0-9]{1,32}$/;

/**
 * Checks a kolId argument before it can cost an upstream call. `unknown`, because a federation
 * representation is untyped JSON: a number there would have lost digits already, so it is refused.
 */
export function isKolId(raw: unknown): raw is string {
  return typeof raw === 'string' && kolIdPattern.test(raw);
}

export function parseKolId(raw: unknown, argument = 'kolId'): string {
  if (!isKolId(raw)) {
    throw badUserInput(`${argument} must be 1 to 32 ASCII digits.`, { argument });
  }
  return raw;
}

export function parseKolIds(raw: readonly string[], maxKolIds: number): string[] {
  if (raw.length > maxKolIds) throw tooManyKolIds(raw.length, maxKolIds);
  return raw.map((kolId, index) => {
    if (isKolId(kolId)) return kolId;
    // Which one, as `_entities` says for a representation: the list may be long. The value is cut to what a kolId can be.
    throw badUserInput('kolIds must be 1 to 32 ASCII digits.', { argument: 'kolIds', index, kolId: String(kolId).slice(0, 32) });
  });
}

/** The refusal of a `kolIds` list longer than MAX_KOL_IDS, written in the query or sent as a variable. */
export function tooManyKolIds(given: number, maxKolIds: number): GraphQLError {
  return badUserInput(`kolIds accepts at most ${maxKolIds} ids; ${given} were given.`, { argument: 'kolIds', maxKolIds });
}
