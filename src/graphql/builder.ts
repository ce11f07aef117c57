import SchemaBuilder from '@pothos/core';
import DirectivePlugin from '@pothos/plugin-directives';
import FederationPlugin from '@pothos/plugin-federation';
import { GraphQLError, Kind } from 'graphql';
import type { Context } from '../context.js';

export const builder = new SchemaBuilder<{
  Context: Context;
  DefaultFieldNullability: false;
  Scalars: {
    ID: { Input: string; Output: string };
    DateTime: { Input: Date; Output: Date };
    SafeInt: { Input: number; Output: number };
  };
}>({
  // Federation: `Creator` is an entity other subgraphs can extend (src/graphql/creator.ts); the directives
  // plugin carries `@key` and `@link` into the printed subgraph SDL.
  plugins: [DirectivePlugin, FederationPlugin],
  // Fields are non-null unless a field says otherwise: the contract marks the few that can be null.
  defaultFieldNullability: false,
});

builder.queryType({ description: 'Douyin Xingtu creator data.' });

builder.scalarType('DateTime', {
  description: 'A point in time, as an ISO-8601 string in UTC, e.g. "2026-11-25T12:00:00.000Z".',
  serialize: (value) => value.toISOString(),
  parseValue: (value) => parseDateTime(value),
  parseLiteral: (ast) => parseDateTime(ast.kind === Kind.STRING ? ast.value : null),
});

builder.scalarType('SafeInt', {
  description:
    'A whole number between -(2^53 - 1) and 2^53 - 1, exact in JSON and JavaScript. Used for user counts, which exceed the 32-bit `Int`.',
  serialize: (value) => {
    if (!Number.isSafeInteger(value)) throw new GraphQLError(`SafeInt cannot represent ${String(value)}.`);
    return value;
  },
  parseValue: (value) => parseSafeInt(value),
  parseLiteral: (ast) => parseSafeInt(ast.kind === Kind.INT ? Number(ast.value) : null),
});

function parseDateTime(value: unknown): Date {
  const date = typeof value === 'string' ? new Date(value) : new Date(Number.NaN);
  if (Number.isNaN(date.getTime())) throw new GraphQLError('DateTime must be an ISO-8601 string.');
  return date;
}

function parseSafeInt(value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw new GraphQLError('SafeInt must be a safe integer.');
  return value;
}
