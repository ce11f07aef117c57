import {
  Kind,
  getOperationAST,
  getVariableValues,
  type DocumentNode,
  type FragmentDefinitionNode,
  GraphQLError,
  type GraphQLSchema,
  type OperationDefinitionNode,
  type TypeNode,
  typeFromAST,
} from 'graphql';
import { codedError, reworded } from '../errors.js';
import { LRUCache } from 'lru-cache';
import { listLimits, listTypeKey, planUpstreamCalls, type ListLimit, type TooLongLists, type UpstreamPlan } from './upstream-plan.js';

export interface PlanArgs {
  schema: GraphQLSchema;
  document: DocumentNode;
  operationName?: string | null | undefined;
  /** The variables as the client sent them (before coercion). */
  variableValues?: Readonly<Record<string, unknown>> | null | undefined;
}

export interface UpstreamPlannerOptions {
  maxKolIds: number;
  /** Most fields the answer may hold, each counted once per object it is asked of (MAX_RESULT_FIELDS). */
  maxResultFields?: number;
  /** Plans remembered at most (least recently used go first). */
  maxPlans?: number;
  /**
   * Rough bytes the remembered plans may take (keys and requests, estimated); a plan larger than
   * this is not remembered. Small: what repeats is hot documents with a few variables, while a
   * stream of distinct 100-creator batches would otherwise park megabytes of plans never reused.
   */
  maxBytes?: number;
}

interface Remembered {
  schema: GraphQLSchema;
  plan: UpstreamPlan;
}

/**
 * planUpstreamCalls with a memory: which link structures an operation would load depends only on
 * the schema, the document, the operation name and the variables, so a hot document with the same
 * variables (a dashboard's polling query) is walked once, not on every request. What the cache holds
 * is not part of a plan: the caller still peeks the cache for each planned request, every time.
 *
 * Only a plan without errors is remembered (one that refuses the operation is rebuilt, errors and
 * all, on each request: they are rare and their error objects are per response). Documents are told
 * apart by identity (Yoga's parse cache hands out the same DocumentNode for the same text); variables
 * by their JSON text, which identifies them since they reach Yoga as parsed JSON.
 */
export function createUpstreamPlanner(options: UpstreamPlannerOptions) {
  const documentIds = new WeakMap<DocumentNode, number>();
  let nextDocumentId = 0;
  const remembered = new LRUCache<string, Remembered>({
    max: options.maxPlans ?? 1_000,
    maxSize: options.maxBytes ?? 2 ** 20,
    sizeCalculation: (entry, key) => 2 * key.length + 100 * (entry.plan.requests.length + 1),
  });

  const limitsBySchema = new WeakMap<GraphQLSchema, { byType: ReadonlyMap<string, ListLimit>; shortest: number }>();
  const tooLongLists = (
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    variables: PlanArgs['variableValues'],
  ): TooLongLists | undefined => {
    let limits = limitsBySchema.get(schema);
    if (!limits) {
      const byType = listLimits(schema, options.maxKolIds);
      limits = { byType, shortest: Math.min(...[...byType.values()].map((limit) => limit.longest)) };
      limitsBySchema.set(schema, limits);
    }
    let tooLong: Map<string, { given: number; limit: ListLimit }> | undefined;
    for (const definition of operation.variableDefinitions ?? []) {
      const name = definition.variable.name.value;
      const value = variables?.[name];
      // Most lists fit every limit: their type is not even looked at.
      if (!Array.isArray(value) || value.length <= limits.shortest) continue;
      const type = typeFromAST(schema, definition.type);
      const key = type && listTypeKey(type);
      const limit = key === undefined ? undefined : limits.byType.get(key);
      if (limit && value.length > limit.longest) (tooLong ??= new Map()).set(name, { given: value.length, limit });
    }
    return tooLong;
  };

  const keyOf = (args: PlanArgs): string => {
    let id = documentIds.get(args.document);
    if (id === undefined) {
      id = nextDocumentId++;
      documentIds.set(args.document, id);
    }
    return `${id} ${JSON.stringify([args.operationName ?? null, args.variableValues ?? null])}`;
  };

  return {
    /**
     * The plan of the operation `args` would execute, or undefined when there is nothing to plan
     * (no such operation, or variables that fail coercion: execution reports both before any resolver runs).
     */
    plan(args: PlanArgs): UpstreamPlan | undefined {
      const operation = getOperationAST(args.document, args.operationName);
      // A list longer than any argument of its type takes (20,000 kolIds, 80 KB) cost 7–14 ms of the walks below and
      // of coercion before MAX_KOL_IDS refused it. Its length is all the plan needs: it is left out of everything else.
      const tooLong = operation ? tooLongLists(args.schema, operation, args.variableValues) : undefined;
      const variableValues = tooLong ? withoutVariables(args.variableValues!, tooLong) : args.variableValues;
      // Before anything walks them recursively (the key's JSON.stringify, the checks below): a variable nested
      // tens of thousands of levels deep, which fits in a small body, would overflow the stack.
      const tooDeep = variableNestedTooDeep(variableValues);
      if (tooDeep !== undefined) {
        return refused([
          codedError('BAD_USER_INPUT', {
            message: `Variable "$${tooDeep}" is nested more than ${maxVariableDepth} levels deep.`,
            variable: tooDeep,
            http: { status: 400 },
          }),
        ]);
      }
      // A plan with a list too long is a refusal, never remembered.
      const key = tooLong ? undefined : keyOf(args);
      const known = key === undefined ? undefined : remembered.get(key);
      if (known && known.schema === args.schema) return known.plan;

      if (!operation) return undefined;
      // graphql-js validates a mutation's fields against a type that does not exist (so finds nothing wrong), and
      // execution then answers it with `data: null` and HTTP 200: refused here as the validation error it is.
      if (!args.schema.getRootType(operation.operation)) {
        return refused([
          new GraphQLError(`This gateway answers queries only: its schema has no ${operation.operation} type.`, {
            nodes: operation,
            extensions: { code: 'GRAPHQL_VALIDATION_FAILED', http: { status: 400 } },
          }),
        ]);
      }
      const protoVariable = operation.variableDefinitions?.find((definition) => definition.variable.name.value === '__proto__');
      if (protoVariable) {
        // graphql-js (this plan) keeps `$__proto__` like any variable; the executor Yoga runs stores coerced variables in a
        // plain object, where assigning `__proto__` is lost, and reads the argument's default instead: the plan would
        // count one request (a platform v1 refuses for free, a cached one) and execution make another, uncharged.
        return refused([
          new GraphQLError('A variable may not be named "$__proto__".', {
            nodes: protoVariable,
            extensions: { code: 'GRAPHQL_VALIDATION_FAILED', http: { status: 400 } },
          }),
        ]);
      }
      const requestErrors = inexactIdVariables(operation, variableValues ?? {});
      if (requestErrors.length > 0) return refused(requestErrors);
      const definitions = operation.variableDefinitions ?? [];
      // Stopped at its first error, which execution reports (with Yoga's executor's limit): graphql-js builds one error
      // per bad item otherwise, and 18,000 nulls for `_entities` representations (90 KB) took a second of CPU.
      const coerced = getVariableValues(
        args.schema,
        tooLong ? definitions.filter((definition) => !tooLong.has(definition.variable.name.value)) : definitions,
        variableValues ?? {},
        { maxErrors: 1 },
      );
      // Execution would coerce the long list too, to report the others' errors: the list is refused instead.
      if (coerced.errors) return tooLong ? refused([firstRefusal(tooLong)]) : undefined;
      const fragments = new Map<string, FragmentDefinitionNode>();
      for (const definition of args.document.definitions) {
        if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
      }
      const plan = planUpstreamCalls(args.schema, operation, fragments, coerced.coerced, options.maxKolIds, options.maxResultFields, tooLong);
      const refusing = plan.errors.length > 0 || plan.requestErrors !== undefined;
      // Every field the list feeds is skipped (`@skip`), yet execution would coerce it all the same.
      if (tooLong && !refusing) return refused([firstRefusal(tooLong)]);
      if (key !== undefined && !refusing) remembered.set(key, { schema: args.schema, plan });
      return plan;
    },
    /** Plans currently remembered (for tests). */
    get size() {
      return remembered.size;
    },
  };
}

export type UpstreamPlanner = ReturnType<typeof createUpstreamPlanner>;

/** A plan for a request that cannot run at all: no calls, and errors for the whole request (HTTP 400, no data). */
const refused = (requestErrors: GraphQLError[]): UpstreamPlan => ({ requests: [], places: [], resultFields: 0, errors: [], requestErrors });

/** The variables without those holding lists too long to read. */
function withoutVariables(variables: Readonly<Record<string, unknown>>, tooLong: TooLongLists): Record<string, unknown> {
  const kept = { ...variables };
  for (const name of tooLong.keys()) delete kept[name];
  return kept;
}

/**
 * The refusal of the first list too long, for an operation where no field it feeds refuses it: a request error, HTTP
 * 400 as the others (the coercion errors it stands for were; without a status Yoga answers one with no `data` 200).
 */
function firstRefusal(tooLong: TooLongLists): GraphQLError {
  const { given, limit } = tooLong.values().next().value!;
  const refusal = limit.refusal(given);
  return reworded(refusal, { extensions: { ...refusal.extensions, http: { status: 400 } } });
}

/** Far deeper than any input of the schema needs (`_entities` representations, the deepest, are 3 levels). */
const maxVariableDepth = 32;

/** The name of the first variable whose value nests lists or objects deeper than maxVariableDepth; iterative. */
function variableNestedTooDeep(variables: Readonly<Record<string, unknown>> | null | undefined): string | undefined {
  if (!variables) return undefined;
  for (const [name, value] of Object.entries(variables)) {
    if (typeof value !== 'object' || value === null) continue;
    const pending: Array<[unknown, number]> = [[value, 1]];
    while (pending.length > 0) {
      const [current, depth] = pending.pop()!;
      if (depth > maxVariableDepth) return name;
      for (const child of Object.values(current as object)) {
        if (typeof child === 'object' && child !== null) pending.push([child, depth + 1]);
      }
    }
  }
  return undefined;
}

/**
 * `ID` variables sent as JSON numbers past 2^53: JSON parsing has already changed their last digits, and
 * GraphQL's `ID` would turn the rounded number into a well-formed kolId of another creator, fetched and paid
 * for. A number that is still exact is accepted (it is what the client meant); kolIds belong in strings.
 */
function inexactIdVariables(operation: OperationDefinitionNode, variables: Readonly<Record<string, unknown>>): GraphQLError[] {
  const errors: GraphQLError[] = [];
  for (const definition of operation.variableDefinitions ?? []) {
    if (namedTypeOf(definition.type) !== 'ID') continue;
    const name = definition.variable.name.value;
    const values = [variables[name]].flat(Infinity);
    // A fraction is left to GraphQL's own coercion, which refuses it as no ID at all.
    const inexact = values.find((value) => typeof value === 'number' && Number.isInteger(value) && !Number.isSafeInteger(value));
    if (inexact === undefined) continue;
    errors.push(
      codedError('BAD_USER_INPUT', {
        message: `Variable "$${name}" holds a JSON number too large to be exact (${String(inexact)}): send kolIds as strings.`,
        variable: name,
        http: { status: 400 },
      }),
    );
  }
  return errors;
}

function namedTypeOf(type: TypeNode): string {
  return type.kind === Kind.NAMED_TYPE ? type.name.value : namedTypeOf(type.type);
}
