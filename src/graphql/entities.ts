import { GraphQLError, isUnionType, type GraphQLSchema } from 'graphql';
import { badUserInput, reworded } from '../errors.js';

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
  const entityUnion = schema.getType('_Entity');
  const entityTypes = new Set(isUnionType(entityUnion) ? entityUnion.getTypes().map((type) => type.name) : []);
  const notAnEntity = (index: number) =>
    badUserInput('A representation must be an object whose __typename is an entity of this subgraph (Creator).', {
      argument: 'representations',
      index,
    });
  field.resolve = (source, args: { representations: readonly unknown[] }, context, info) =>
    args.representations.map((representation, index) => {
      // A type of this schema that is not an entity (LinkBucket, Query): @apollo/subgraph hands it back as it is,
      // and it fails later, uncoded, when `_Entity` is resolved.
      const typename = (representation as { __typename?: unknown } | null)?.__typename;
      if (typeof typename === 'string' && schema.getType(typename) && !entityTypes.has(typename)) return notAnEntity(index);
      try {
        const [entity] = resolveAll(source, { representations: [representation] }, context, info) as unknown[];
        return entity;
      } catch (error) {
        // Ours (a bad kolId) say which representation it was: a router that merges fetches drops the path's index.
        if (error instanceof GraphQLError) return inRepresentation(error, index, representation);
        // @apollo/subgraph's own checks only fail on what the router sent.
        return notAnEntity(index);
      }
    });
  return schema;
}

/** Longest kolId echoed back in an error: a valid one has 32 digits; a bad one is the client's text, bounded. */
const maxEchoedKolId = 64;

/**
 * An error a representation's reference raised, naming the representation (`argument`, `index`) and, when it is a
 * string, the kolId it sent, as upstream errors name theirs. A number is not echoed: JSON has already rounded it.
 */
function inRepresentation(error: GraphQLError, index: number, representation: unknown): GraphQLError {
  const kolId = (representation as { kolId?: unknown } | null)?.kolId;
  return reworded(error, {
    extensions: {
      ...error.extensions,
      argument: 'representations',
      index,
      ...(typeof kolId === 'string' ? { kolId: kolId.slice(0, maxEchoedKolId) } : {}),
    },
  });
}
