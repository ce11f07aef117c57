import {
  GraphQLError,
  GraphQLIncludeDirective,
  GraphQLSkipDirective,
  Kind,
  getArgumentValues,
  getDirectiveValues,
  getNamedType,
  isObjectType,
  isInterfaceType,
  typeFromAST,
  type FragmentDefinitionNode,
  type GraphQLCompositeType,
  type GraphQLSchema,
  type OperationDefinitionNode,
  type SelectionSetNode,
  type SelectionNode,
  type ASTNode,
} from 'graphql';
import { badUserInput } from '../errors.js';
import { isKolId, parseKolId, parseKolIds } from '../link-structure/kol-id.js';
import { linkStructureRequestFor, linkStructureRequestKey, type LinkStructureRequest } from '../link-structure/model.js';

export interface UpstreamPlan {
  /** Every distinct link structure the operation would load. */
  requests: LinkStructureRequest[];
  /**
   * Bad kolIds, one error per field that names them, at that field's path: the operation must not run.
   * Marked `refusedBeforeExecution`, since no field at those paths ever runs.
   */
  errors: GraphQLError[];
  /**
   * The request cannot run at all: a variable nested absurdly deep, a kolId sent as a number JSON could not hold
   * exactly, an operation type the schema lacks. Refused as a request error, HTTP 400, with no `data`.
   */
  requestErrors?: GraphQLError[];
}

/**
 * Set on errors the plan reports at the path of a field that never ran. Tools that map error paths onto
 * executed fields (federated tracing) must leave these out. A symbol: copied with the error, never serialized.
 */
export const refusedBeforeExecution = Symbol('refused before execution');

export function isRefusedBeforeExecution(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { [refusedBeforeExecution]?: boolean })[refusedBeforeExecution] === true;
}

type Args = Record<string, unknown>;

/**
 * Fields that name creators, by `Type.field`, and how their arguments give kolIds. `_entities` is
 * federation's: its representations of `__typename: "Creator"` name creators like `creators` does
 * (the field only exists once the schema is a subgraph; until then the row is never matched).
 */
const creatorSources: Record<string, (args: Args, maxKolIds: number) => string[]> = {
  'Query.creator': (args) => [parseKolId(String(args.kolId))],
  'Query.creators': (args, maxKolIds) => parseKolIds(args.kolIds as string[], maxKolIds),
  // A bad representation fails only its own entity (resolveReference refuses it), as federation expects;
  // here it is left out of the plan rather than refusing the whole operation.
  'Query._entities': (args) =>
    (args.representations as unknown[])
      .filter((representation): representation is Args => isRecord(representation) && representation.__typename === 'Creator')
      .flatMap((representation) => (isKolId(representation.kolId) ? [representation.kolId] : [])),
};

/** Fields of a creator that each load one link structure, and which request their arguments make. */
const linkStructureFields: Record<string, (kolId: string, args: Args) => LinkStructureRequest> = {
  'Creator.linkStructure': (kolId, args) => linkStructureRequestFor(kolId, args),
};

/**
 * Reads, before execution, which link structures an operation will load, the way execution will
 * (aliases, fragments, @skip/@include, variables), so that its cost can be checked and its kolIds
 * validated while nothing has been called yet.
 */
export function planUpstreamCalls(
  schema: GraphQLSchema,
  operation: OperationDefinitionNode,
  fragments: ReadonlyMap<string, FragmentDefinitionNode>,
  variables: Args,
  maxKolIds: number,
): UpstreamPlan {
  const requests = new Map<string, LinkStructureRequest>();
  const errors: GraphQLError[] = [];
  const root = schema.getRootType(operation.operation);
  if (!root) return { requests: [], errors };

  // An argument or directive that fails coercion here fails it at execution too, but only once execution reaches it:
  // sibling fields before it would already have loaded (and paid for) their creators. So it is refused now, as
  // BAD_USER_INPUT. What gets here passed validation: a variable with a default, sent as an explicit null, in a
  // non-null position (`$id: ID = "1"` for `kolId: ID!`, `{"id": null}`).
  const refuse = (error: unknown, selection: SelectionNode, path: Path) =>
    errors.push(atPath(badUserInput(error instanceof Error ? error.message : String(error)), pathArray(path), selection));
  const included = (selection: SelectionNode, path: Path) => {
    // No directives (most selections): nothing to read, nothing that can fail.
    if (!selection.directives?.length) return true;
    const n = selection as Parameters<typeof getDirectiveValues>[1];
    try {
      return getDirectiveValues(GraphQLSkipDirective, n, variables)?.if !== true && getDirectiveValues(GraphQLIncludeDirective, n, variables)?.if !== false;
    } catch (error) {
      refuse(error, selection, path);
      return false;
    }
  };

  // `visited`: the named fragments already spread into this level's selection, as graphql-js keeps them when it
  // collects fields. Without it, fragments that each spread the next one twice took 2^n steps to walk: a
  // 600-token document (within every query limit) would block the event loop for hours. Made when this level first
  // has a fragment, and handed down into it, so a level without fragments allocates nothing.
  const walk = (
    selectionSet: SelectionSetNode,
    parentType: GraphQLCompositeType,
    creators: readonly string[],
    path: Path,
    visited: Set<string> | undefined,
  ) => {
    for (const selection of selectionSet.selections) {
      // Directives first, then whether a fragment was already spread here: the order of the executor Yoga runs
      // (@graphql-tools/executor), which refuses a null `if` even on a repeated spread (graphql-js looks the other way).
      if (selection.kind === Kind.FIELD) {
        const responsePath: Path = { prev: path, key: selection.alias?.value ?? selection.name.value };
        if (!included(selection, responsePath)) continue;
        if (!isObjectType(parentType) && !isInterfaceType(parentType)) continue;
        const field = parentType.getFields()[selection.name.value];
        if (!field) continue; // __typename and friends
        const coordinate = `${parentType.name}.${field.name}`;
        let args: Args = noArgs;
        // A field that takes no arguments has none to coerce (validation refused any written on it).
        if (field.args.length > 0) {
          try {
            args = getArgumentValues(field, selection, variables);
          } catch (error) {
            refuse(error, selection, responsePath);
            continue;
          }
        }
        const source = creatorSources[coordinate];
        let children: readonly string[] = [];
        if (source) {
          try {
            children = source(args, maxKolIds);
          } catch (error) {
            errors.push(atPath(error, pathArray(responsePath), selection));
            continue;
          }
        }
        const load = linkStructureFields[coordinate];
        if (load) {
          for (const kolId of creators) {
            const request = load(kolId, args);
            requests.set(linkStructureRequestKey(request), request);
          }
        }
        // No creators (an empty `kolIds`, no Creator among the representations): execution runs nothing below, so
        // nothing below costs a call or can fail.
        if (source && children.length === 0) continue;
        const fieldType = getNamedType(field.type);
        if (selection.selectionSet) walk(selection.selectionSet, fieldType as GraphQLCompositeType, children, responsePath, undefined);
      } else {
        if (!included(selection, path)) continue;
        visited ??= new Set();
        if (selection.kind === Kind.FRAGMENT_SPREAD) {
          if (visited.has(selection.name.value)) continue;
          visited.add(selection.name.value);
        }
        const fragment = selection.kind === Kind.INLINE_FRAGMENT ? selection : fragments.get(selection.name.value);
        if (!fragment) continue;
        const condition = fragment.typeCondition ? typeFromAST(schema, fragment.typeCondition) : parentType;
        walk(fragment.selectionSet, (condition ?? parentType) as GraphQLCompositeType, creators, path, visited);
      }
    }
  };

  walk(operation.selectionSet, root, [], undefined, undefined);
  return { requests: [...requests.values()], errors };
}

/** A response path as the walk builds it, one link per field; made into an array only for an error. */
type Path = { readonly prev: Path; readonly key: string } | undefined;

function pathArray(path: Path): string[] {
  const keys: string[] = [];
  for (let link = path; link !== undefined; link = link.prev) keys.push(link.key);
  return keys.reverse();
}

const noArgs: Args = Object.freeze({});

function atPath(error: unknown, path: readonly string[], node?: ASTNode): GraphQLError {
  const coded = error instanceof GraphQLError ? error : badUserInput(String(error));
  // A directive on a fragment spread at the root fails no field: no path, as for any request error.
  const located = new GraphQLError(coded.message, { ...(path.length > 0 ? { path } : {}), extensions: coded.extensions, ...(node ? { nodes: node } : {}) });
  Object.assign(located, { [refusedBeforeExecution]: true });
  return located;
}

function isRecord(value: unknown): value is Args {
  return typeof value === 'object' && value !== null;
}
