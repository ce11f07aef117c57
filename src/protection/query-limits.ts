import { maxAliasesPlugin } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthPlugin } from '@escape.tech/graphql-armor-max-depth';
import { maxTokensPlugin } from '@escape.tech/graphql-armor-max-tokens';
import { GraphQLError, NoSchemaIntrospectionCustomRule, type ASTVisitor, type ValidationContext } from 'graphql';
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
      // armor lets `__typename` aliases through by default; each still costs a field to resolve and answer.
      allowList: [],
      propagateOnRejection: false,
      onReject: [report('QUERY_TOO_MANY_ALIASES', limits.maxAliases)],
    }) as Plugin,
  ];
}

/**
 * INTROSPECTION=false: `__schema` and `__type` fail validation (graphql-js's own rule), and so does federation's
 * `_service`, whose `sdl` is the whole schema: a router composes from the checked-in schema/subgraph.graphql
 * instead. `__typename` and `_entities` still work. (useErrorHygiene drops the "Did you mean" hints.)
 */
export function useNoIntrospection(): Plugin {
  return {
    onValidate({ addValidationRule }) {
      addValidationRule(NoSchemaIntrospectionCustomRule);
      addValidationRule(noServiceSdlRule);
    },
  };
}

function noServiceSdlRule(context: ValidationContext): ASTVisitor {
  return {
    Field(node) {
      if (node.name.value === '_service' && context.getParentType() === context.getSchema().getQueryType()) {
        // Worded as graphql-js words its own introspection refusal.
        context.reportError(
          new GraphQLError('GraphQL introspection has been disabled, but the requested query contained the field "_service".', { nodes: node }),
        );
      }
    },
  };
}
