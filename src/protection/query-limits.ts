import { maxAliasesPlugin } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthPlugin } from '@escape.tech/graphql-armor-max-depth';
import { maxTokensPlugin } from '@escape.tech/graphql-armor-max-tokens';
import { NoSchemaIntrospectionCustomRule, type GraphQLError, type ValidationContext } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { codedError, type ErrorCode } from '../errors.js';

export interface QueryLimits {
  maxDepth: number;
  maxAliases: number;
  maxTokens: number;
}

// graphql-armor words its errors as syntax errors; ours carry a code and the limit instead.
const limitMessage = (error: GraphQLError) => error.message.replace(/^Syntax Error: /, '');

/**
 * Depth, alias and token limits from graphql-armor (maintained, graphql 16, no install scripts),
 * reported as coded errors before execution. Depth does not count fragments as levels and ignores
 * introspection's `__schema`, so GraphiQL's schema query is never refused.
 */
export function useQueryLimits(limits: QueryLimits): Plugin[] {
  const report = (code: ErrorCode, limit: number) => (context: ValidationContext | null, error: GraphQLError) => {
    context?.reportError(codedError(code, { message: limitMessage(error), limit }));
  };
  return [
    maxTokensPlugin({
      n: limits.maxTokens,
      // The parser has no validation context to report to: stop parsing with our error instead of armor's.
      onReject: [
        (_context, error) => {
          throw codedError('QUERY_TOO_MANY_TOKENS', { message: limitMessage(error), limit: limits.maxTokens });
        },
      ],
    }) as Plugin,
    maxDepthPlugin({
      n: limits.maxDepth,
      flattenFragments: true,
      propagateOnRejection: false,
      onReject: [report('QUERY_TOO_DEEP', limits.maxDepth)],
    }) as Plugin,
    maxAliasesPlugin({
      n: limits.maxAliases,
      propagateOnRejection: false,
      onReject: [report('QUERY_TOO_MANY_ALIASES', limits.maxAliases)],
    }) as Plugin,
  ];
}

/** INTROSPECTION=false: `__schema` and `__type` fail validation (graphql-js's own rule); `__typename` still works. */
export function useNoIntrospection(): Plugin {
  return {
    onValidate({ addValidationRule }) {
      addValidationRule(NoSchemaIntrospectionCustomRule);
    },
  };
}
