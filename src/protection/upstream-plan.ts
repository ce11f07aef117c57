import {
  GraphQLError,
  GraphQLIncludeDirective,
  GraphQLSkipDirective,
  Kind,
  SchemaMetaFieldDef,
  TypeMetaFieldDef,
  getArgumentValues,
  getDirectiveValues,
  getNamedType,
  isInputObjectType,
  isObjectType,
  isInterfaceType,
  typeFromAST,
  type FieldNode,
  type FragmentDefinitionNode,
  type GraphQLField,
  type GraphQLCompositeType,
  type GraphQLInputType,
  type GraphQLResolveInfo,
  type GraphQLSchema,
  type GraphQLType,
  type OperationDefinitionNode,
  type SelectionSetNode,
  type SelectionNode,
  type ASTNode,
} from 'graphql';
import { badUserInput, codedError } from '../errors.js';
import { isKolId, parseKolId, parseKolIds, tooManyKolIds } from '../link-structure/kol-id.js';
import { linkStages, linkStructureRequestFor, linkStructureRequestKey, type LinkStructureRequest } from '../link-structure/model.js';

export interface UpstreamPlan {
  /** Every distinct link structure the operation would load. */
  requests: LinkStructureRequest[];
  /** For each of `requests`, how many places in the answer load it (a creator named twice in a list: two). */
  places: number[];
  /** The fields the answer would hold, each counted once per object it is asked of (see MAX_RESULT_FIELDS). */
  resultFields: number;
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
 * Items a list field other than the creator sources above holds at most, for the count of the answer's fields.
 * Every list field of the schema (introspection's aside) is either a creator source or listed here.
 */
const listItems: Record<string, number> = {
  'LinkStructure.buckets': linkStages.length,
};

/**
 * List arguments that take so many items at most, by `Type.field.argument`, and the refusal of a longer list (the one
 * `creatorSources` gives for a list written in the query). Every other list argument of the schema takes any length.
 */
const limitedLists: Record<string, { longest: (maxKolIds: number) => number; refusal: (given: number, maxKolIds: number) => GraphQLError }> = {
  'Query.creators.kolIds': { longest: (maxKolIds) => maxKolIds, refusal: tooManyKolIds },
};

/** The longest list a variable of one list type can be used for, and the refusal of a longer one. */
export interface ListLimit {
  longest: number;
  refusal: (given: number) => GraphQLError;
}

/** Variables, by name, holding a list longer than any argument of their type takes: their length, and its limit. */
export type TooLongLists = ReadonlyMap<string, { given: number; limit: ListLimit }>;

/**
 * The list types (by `listTypeKey`) that only limited arguments take, each with the longest list any of them takes. A
 * variable's type is the type of every argument it is used for (validation has checked it), so one of these types
 * holding a longer list is refused wherever it is used; a list type that some argument or input field takes at any
 * length is absent.
 */
export function listLimits(schema: GraphQLSchema, maxKolIds: number): ReadonlyMap<string, ListLimit> {
  const limits = new Map<string, ListLimit | 'any length'>();
  const takes = (type: GraphQLInputType, coordinate?: string) => {
    const key = listTypeKey(type);
    const known = key === undefined ? undefined : limits.get(key);
    if (key === undefined || known === 'any length') return;
    const limited = coordinate === undefined ? undefined : limitedLists[coordinate];
    if (!limited) {
      limits.set(key, 'any length');
      return;
    }
    const longest = limited.longest(maxKolIds);
    if (!known || known.longest < longest) limits.set(key, { longest, refusal: (given) => limited.refusal(given, maxKolIds) });
  };
  for (const type of Object.values(schema.getTypeMap())) {
    if (isObjectType(type) || isInterfaceType(type)) {
      for (const field of Object.values(type.getFields())) for (const arg of field.args) takes(arg.type, `${type.name}.${field.name}.${arg.name}`);
    } else if (isInputObjectType(type)) {
      for (const field of Object.values(type.getFields())) takes(field.type);
    }
  }
  for (const directive of schema.getDirectives()) for (const arg of directive.args) takes(arg.type);
  return new Map([...limits].filter((entry): entry is [string, ListLimit] => entry[1] !== 'any length'));
}

/**
 * A list type as validation matches a variable's type to an argument's, with every `!` left out (`[ID!]!` is `[ID]`:
 * a variable may be non-null where null is allowed); undefined for a type that is not a list.
 */
export function listTypeKey(type: GraphQLType): string | undefined {
  const key = String(type).replace(/!/g, '');
  return key.startsWith('[') ? key : undefined;
}

/** Introspection's roots, by name: graphql-js answers them on the query type, though they are none of its fields. */
const introspectionRoots = new Map<string, GraphQLField<unknown, unknown>>([
  ['__schema', SchemaMetaFieldDef],
  ['__type', TypeMetaFieldDef],
]);

/**
 * What one `_entities` representation that fails (not a Creator, or a bad kolId) weighs in the count of the answer's
 * fields: its error (made, located, cleaned, serialized) costs about as much CPU as 50 fields (130 µs against 2.5 µs).
 */
const failedRepresentationWeight = 50;

/**
 * Reads, before execution, which link structures an operation will load, the way execution will
 * (aliases, fragments, @skip/@include, variables), so that its cost can be checked and its kolIds
 * validated while nothing has been called yet. The same walk counts the fields the answer would hold, each
 * once per object it is asked of (a `creators` list of 100 asks each of its fields 100 times): more than
 * `maxResultFields` refuses the request (QUERY_TOO_COMPLEX) and the walk stops there.
 */
export function planUpstreamCalls(
  schema: GraphQLSchema,
  operation: OperationDefinitionNode,
  fragments: ReadonlyMap<string, FragmentDefinitionNode>,
  variables: Args,
  maxKolIds: number,
  maxResultFields = Number.POSITIVE_INFINITY,
  tooLongLists: TooLongLists = new Map(),
): UpstreamPlan {
  const requests = new Map<string, { request: LinkStructureRequest; places: number }>();
  const errors: GraphQLError[] = [];
  const root = schema.getRootType(operation.operation);
  if (!root) return { requests: [], places: [], resultFields: 0, errors };

  // Execution's CPU grows with the fields it resolves and serializes, not with the document: 30 aliases of
  // `_entities` over 1,200 cached representations (48 KB, within every other limit, no upstream call) took a second.
  let resultFields = 0;
  const tooLarge = (fields: number) => (resultFields += fields) > maxResultFields;

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

  // Fields are collected as the executor collects them: a level's selections (its fragments spread once each, the
  // `visited` set) grouped by response key, and the fields of one group walked below as one field, with the selections
  // of all its nodes collected together and fragments again spread once. Walking each node on its own took k^n steps for
  // a fragment whose k copies of one field each spread the next fragment: a 3 KB document (within every query limit,
  // no alias) held the event loop for a second on every request, before any rate limit. So did fragments that each
  // spread the next one twice (2^n), before `visited`.
  const collect = (selectionSet: SelectionSetNode, parentType: GraphQLCompositeType, path: Path, into: Collection) => {
    for (const selection of selectionSet.selections) {
      // Directives first, then whether a fragment was already spread here: the order of the executor Yoga runs
      // (@graphql-tools/executor), which refuses a null `if` even on a repeated spread (graphql-js looks the other way).
      if (selection.directives?.length) into.directives = true;
      if (selection.kind === Kind.FIELD) {
        const responseKey = selection.alias?.value ?? selection.name.value;
        if (!included(selection, { prev: path, key: responseKey })) continue;
        // One value per object and response key.
        if (selection.name.value === '__typename') {
          into.meta.add(responseKey);
          continue;
        }
        if (!isObjectType(parentType) && !isInterfaceType(parentType)) continue;
        // Validation lets introspection's roots, which are no field of the type, only on the query type.
        const field = introspectionRoots.get(selection.name.value) ?? parentType.getFields()[selection.name.value];
        if (!field) continue;
        // Validation makes fields of one response key on one type the same field with the same arguments.
        const groupKey = `${parentType.name}.${responseKey}`;
        let group = into.fields.get(groupKey);
        if (!group) {
          const introspects = introspectionRoots.has(field.name) || parentType.name.startsWith('__');
          group = { responseKey, coordinate: `${parentType.name}.${field.name}`, field, introspects, selection, below: [] };
          into.fields.set(groupKey, group);
        }
        if (selection.selectionSet) group.below.push(selection.selectionSet);
      } else {
        if (!included(selection, path)) continue;
        if (selection.kind === Kind.FRAGMENT_SPREAD) {
          if (into.visited.has(selection.name.value)) continue;
          into.visited.add(selection.name.value);
        }
        const fragment = selection.kind === Kind.INLINE_FRAGMENT ? selection : fragments.get(selection.name.value);
        if (!fragment) continue;
        const condition = fragment.typeCondition ? typeFromAST(schema, fragment.typeCondition) : parentType;
        collect(fragment.selectionSet, (condition ?? parentType) as GraphQLCompositeType, path, into);
      }
    }
  };

  // What one selection set collects on a type is the same for every plan unless a directive reads a variable: collected
  // once (per document, as it is the key), so a plan for new variables (every cache miss) allocates nothing for it.
  const collected = (selectionSets: readonly SelectionSetNode[], parentType: GraphQLCompositeType, path: Path): Collected => {
    const only = selectionSets.length === 1 ? selectionSets[0]! : undefined;
    const known = only && staticCollections.get(only)?.get(parentType);
    if (known) return known;
    const into: Collection = { fields: new Map(), meta: new Set(), visited: new Set(), directives: false };
    for (const selectionSet of selectionSets) collect(selectionSet, parentType, path, into);
    const result: Collected = { fields: [...into.fields.values()], metaFields: into.meta.size };
    if (only && !into.directives) {
      let byType = staticCollections.get(only);
      if (!byType) staticCollections.set(only, (byType = new WeakMap()));
      byType.set(parentType, result);
    }
    return result;
  };

  // Introspection answers with the schema's own objects, which the walk can read: 30 aliases of GraphiQL's `__schema`
  // selection (2.7 KB, 376 tokens) made an 886 KB answer, 33–50 ms of CPU, counted as 30 fields. Their resolvers read
  // the schema from `info` and nothing else.
  const introspectionInfo = { schema } as GraphQLResolveInfo;
  const introspected = (field: GraphQLField<unknown, unknown>, args: Args, parents: readonly unknown[]) =>
    parents.flatMap((parent) => (field.resolve!(parent, args, undefined, introspectionInfo) as unknown) ?? []);

  /**
   * False once the answer is found too large: the walk stops there. `objects`: how many objects of `parentType` ask
   * these fields. `sources`: those objects, where the walk knows them (a creator's kolId, an introspection object).
   */
  const walk = (
    selectionSets: readonly SelectionSetNode[],
    parentType: GraphQLCompositeType,
    sources: readonly unknown[],
    path: Path,
    objects: number,
  ): boolean => {
    const { fields, metaFields } = collected(selectionSets, parentType, path);
    if (tooLarge(objects * metaFields)) return false;
    for (const { responseKey, coordinate, field, introspects, selection, below } of fields) {
      if (tooLarge(objects)) return false;
      const responsePath: Path = { prev: path, key: responseKey };
      let args: Args = noArgs;
      // A field that takes no arguments has none to coerce (validation refused any written on it).
      if (field.args.length > 0) {
        // A variable too long for every argument of its type is left out of `variables`: the field is refused by its length.
        const tooLong = tooLongLists.size > 0 ? tooLongArgument(selection, tooLongLists) : undefined;
        if (tooLong) {
          errors.push(atPath(tooLong, pathArray(responsePath), selection));
          continue;
        }
        try {
          args = getArgumentValues(field, selection, variables);
        } catch (error) {
          refuse(error, selection, responsePath);
          continue;
        }
      }
      const source = creatorSources[coordinate];
      let children: readonly unknown[] = [];
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
        // A creator's source is its kolId.
        for (const kolId of sources as readonly string[]) {
          const request = load(kolId, args);
          const key = linkStructureRequestKey(request);
          const known = requests.get(key);
          if (known) known.places += 1;
          else requests.set(key, { request, places: 1 });
        }
      }
      // A representation left out of the plan fails on its own: its error is what it costs.
      if (coordinate === 'Query._entities') {
        const failed = (args.representations as unknown[]).length - children.length;
        if (tooLarge(objects * failed * failedRepresentationWeight)) return false;
      }
      if (below.length === 0) continue;
      // Introspection's roots are asked of the query type once; below them, `sources` holds every object.
      if (introspects) children = introspected(field, args, parentType.name.startsWith('__') ? sources : [undefined]);
      // No creators (an empty `kolIds`, no Creator among the representations): execution runs nothing below, so
      // nothing below costs a call or can fail.
      if ((source || introspects) && children.length === 0) continue;
      const objectsBelow = introspects ? children.length : objects * (source ? children.length : (listItems[coordinate] ?? 1));
      if (!walk(below, getNamedType(field.type) as GraphQLCompositeType, children, responsePath, objectsBelow)) return false;
    }
    return true;
  };

  if (!walk([operation.selectionSet], root, [], undefined, 1)) {
    return {
      requests: [],
      places: [],
      resultFields,
      errors: [],
      requestErrors: [
        answerTooLarge(maxResultFields, 'each field counted once per object it is asked of'),
      ],
    };
  }
  const loads = [...requests.values()];
  return { requests: loads.map((load) => load.request), places: loads.map((load) => load.places), resultFields, errors };
}

/** The refusal of a field with an argument given a variable whose list is too long for it. */
function tooLongArgument(selection: FieldNode, tooLongLists: TooLongLists): GraphQLError | undefined {
  for (const argument of selection.arguments ?? []) {
    const tooLong = argument.value.kind === Kind.VARIABLE ? tooLongLists.get(argument.value.name.value) : undefined;
    if (tooLong) return tooLong.limit.refusal(tooLong.given);
  }
  return undefined;
}

/** The refusal of an operation whose answer would hold more than MAX_RESULT_FIELDS fields, counted as `counting` says. */
export function answerTooLarge(maxResultFields: number, counting: string): GraphQLError {
  return codedError('QUERY_TOO_COMPLEX', {
    message: `The answer would hold more than ${maxResultFields} fields (${counting}).`,
    limit: maxResultFields,
    http: { status: 400, spec: true },
  });
}

/** The fields of one response key on one type, as collected at one level. */
interface CollectedField {
  responseKey: string;
  coordinate: string;
  field: GraphQLField<unknown, unknown>;
  /** Whether it answers with the schema's own objects: introspection's roots and every field of an introspection type. */
  introspects: boolean;
  /** The first node: execution reads the arguments from it (the others have the same, or validation refused them). */
  selection: FieldNode;
  /** The selection sets of all its nodes, collected together one level down. */
  below: SelectionSetNode[];
}

interface Collection {
  fields: Map<string, CollectedField>;
  /** The response keys of `__typename` collected at this level (one value per object each). */
  meta: Set<string>;
  /** The named fragments already spread at this level. */
  visited: Set<string>;
  /** Whether any selection collected carries a directive (so what is collected depends on the variables). */
  directives: boolean;
}

/** What one level collects: its fields, and how many meta fields it answers for each object. */
interface Collected {
  fields: readonly CollectedField[];
  metaFields: number;
}

/** What a selection set without directives collects, by the type it is collected on (see `collected`). */
const staticCollections = new WeakMap<SelectionSetNode, WeakMap<GraphQLCompositeType, Collected>>();

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
