import { GraphQLError, type GraphQLSchema } from 'graphql';
import { badUserInput } from '../errors.js';

/**
 * @apollo/subgraph's `_entities` resolver maps the representations without catching: one that throws
 * synchronously (an unknown `__typename`, a reference resolver that throws) fails the whole list, and
 * a rejection already returned for an earlier representation is then never awaited, which Node treats
 * as fatal. Resolving each representation on its own makes a bad one fail only its own item, as
 * federation expects, whatever it is.
 */
export function isolateEntityResolution(schema: GraphQLSchema): GraphQLSchema {
  const field = schema.getQueryType()?.getFields()['_entities'];
  const resolveAll = field?.resolve;
  if (!field || !resolveAll) return schema;
  field.resolve = (source, args: { representations: readonly unknown[] }, context, info) =>
    args.representations.map((representation, index) => {
      try {
        const [entity] = resolveAll(source, { representations: [representation] }, context, info) as unknown[];
        return entity;
      } catch (error) {
        // Ours (a bad kolId) pass as they are; @apollo/subgraph's own checks only fail on what the router sent.
        if (error instanceof GraphQLError) return error;
        return badUserInput('A representation must be an object whose __typename is an entity of this subgraph (Creator).', {
          argument: 'representations',
          index,
        });
      }
    });
  return schema;
}
