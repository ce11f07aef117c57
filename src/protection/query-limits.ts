import { maxAliasesPlugin } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthPlugin } from '@escape.tech/graphql-armor-max-depth';
import { maxTokensPlugin } from '@escape.tech/graphql-armor-max-tokens';
import {
  GraphQLError,
  Kind,
  NoSchemaIntrospectionCustomRule,
  TokenKind,
  type ASTVisitor,
  getNamedType,
  isInterfaceType,
  isObjectType,
  type DocumentNode,
  type GraphQLNamedType,
  type GraphQLOutputType,
  type GraphQLSchema,
  type SelectionSetNode,
  type ValidationContext,
} from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { codedError, type ErrorCode } from '../errors.js';

export interface QueryLimits {
  maxDepth: number;
  maxAliases: number;
  maxTokens: number;
  maxRepeatedFields: number;
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
    useCommentsCounted(limits.maxTokens),
    maxDepthPlugin({
      n: limits.maxDepth,
      flattenFragments: true,
      propagateOnRejection: false,
      onReject: [report('QUERY_TOO_DEEP', limits.maxDepth)],
    }) as Plugin,
    useRepeatedFieldsLimit(limits.maxRepeatedFields),
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
 * graphql-js's OverlappingFieldsCanBeMergedRule compares every two fields of one response key at one level, and for
 * each such pair their selection sets, field by field: 240 copies of `linkStructure { stale }` (5 KB, 1,000 tokens)
 * took 40–60 ms to validate, on every new document (graphql-js's own budget stops it only past about 80 ms); 75 named
 * fragments each asking for it, 5–7 ms. Clients seldom repeat a field at one level, even through colocated fragments,
 * but the key fields (`kolId`, `__typename`), which are not counted (see `repeatedFields`): past `max` repeated fields
 * in the whole document, it is refused before validation starts, QUERY_TOO_COMPLEX.
 */
export function useRepeatedFieldsLimit(max: number): Plugin {
  // Counted once per document (Yoga's parse cache hands the same one back): this hook runs on every request.
  const overLimit = new WeakMap<DocumentNode, boolean>();
  return {
    onValidate({ params, setResult }) {
      let over = overLimit.get(params.documentAST);
      if (over === undefined) overLimit.set(params.documentAST, (over = repeatedFields(params.documentAST, max, params.schema) > max));
      if (over) {
        setResult([
          codedError('QUERY_TOO_COMPLEX', {
            message: `The document repeats a field at one level more than ${max} times in all; ask for each field once.`,
            limit: max,
          }),
        ]);
      }
    },
  };
}

/**
 * Fields with the response key of an earlier field at the same level, over the whole document, counted until past
 * `stopAfter`. A level is an operation's, fragment's or field's selection set with what execution collects into it:
 * the fields of its inline fragments and of the named fragments it spreads, through theirs, each fragment once (as
 * execution spreads it; a cycle, which validation refuses, ends there too). So a fragment's fields count where it is
 * defined and again at each level that spreads it, where graphql-js compares them with that level's own; beside only
 * other fragments' fields, once in the document, as graphql-js compares two fragments once. A fragment is read
 * once and collected at most once per level: a chain of fragments that each spread the next twice costs its length,
 * not 2^length, and a document built for the count (many levels spreading one long chain) at most levels × fragments,
 * about 0.3 ms for 1,000 tokens, which graphql-js then takes 6 ms to validate. Iterative.
 *
 * Copies of a simple leaf (no arguments, no selection set: `kolId`, `__typename`, which every colocated client fragment
 * repeats) are not counted while every field of their key at that level is the same field of the same type: graphql-js
 * compares two such fields in constant time, and its own budget stops a document of nothing else (990 copies of
 * `kolId`, 1,000 tokens) after 3–5 ms. Once the key holds anything else (another field under an alias, the same name
 * on another type, a selection set or arguments), all its copies count: 30 aliases `kolId: stale` beside 900 `kolId`
 * took 28–54 ms, 490 `kolId` beside 490 in `... on Unknown`, 11–37 ms. The schema gives each field its type, as
 * graphql-js reads it.
 */
export function repeatedFields(document: DocumentNode, stopAfter: number, schema?: GraphQLSchema): number {
  const fragments = new Map<string, Fragment>();
  const levels: Array<{ selectionSet: SelectionSetNode; type: GraphQLNamedType | undefined; fragment?: Fragment }> = [];
  for (const definition of document.definitions) {
    if (definition.kind === Kind.OPERATION_DEFINITION) {
      levels.push({ selectionSet: definition.selectionSet, type: schema?.getRootType(definition.operation) ?? undefined });
    }
    if (definition.kind === Kind.FRAGMENT_DEFINITION) {
      const fragment: Fragment = { selectionSet: definition.selectionSet, type: typeNamed(schema, definition.typeCondition.name.value), spreadAt: -1 };
      fragments.set(definition.name.value, fragment);
      levels.push({ selectionSet: definition.selectionSet, type: fragment.type, fragment });
    }
  }
  // What the level that last collected each response key holds of it (the fragments keep their own): nothing to
  // allocate per level. `leaf`: the simple leaf all its fields have been so far, none once it holds anything else;
  // `free`: how many of them were not counted; `own`: whether one of them is the level's own (not a named fragment's).
  const keys = new Map<string, { level: number; leaf: SimpleLeaf | undefined; free: number; own: boolean }>();
  let count = 0;
  for (let level = 0; levels.length > 0; level += 1) {
    const { selectionSet, type, fragment } = levels.pop()!;
    const own = fragment ? selectionsOf(fragment, schema) : flattenedSelections(selectionSet, type, schema);
    for (const below of own.below) levels.push(below);
    // A fragment's own level has spread it already: its fields are not collected twice there.
    if (fragment) fragment.spreadAt = level;
    // The level's own fields first, then the fragments' (`from`).
    const collected: Array<{ selections: Selections; from?: Fragment }> = [{ selections: own }];
    while (collected.length > 0) {
      const { selections, from } = collected.pop()!;
      const { fieldKeys, leaves, spreads } = selections;
      for (let index = 0; index < fieldKeys.length; index += 1) {
        const key = fieldKeys[index]!;
        const leaf = leaves[index];
        const held = keys.get(key);
        if (held === undefined) {
          keys.set(key, { level, leaf, free: 0, own: from === undefined });
          continue;
        }
        if (held.level !== level) {
          Object.assign(held, { level, leaf, free: 0, own: from === undefined });
          continue;
        }
        if (from === undefined) held.own = true;
        if (held.leaf !== undefined && leaf !== undefined && leaf.name === held.leaf.name && leaf.type === held.leaf.type) {
          held.free += 1;
          continue;
        }
        // The key holds something else now: every copy counts, those not counted before too. But graphql-js compares
        // two fragments once in a document, wherever they are spread together: a fragment's field that repeats only
        // other fragments' fields counts once, not again at each level that spreads both (a page's fragment, which
        // spreads its components', spread in `creator` and `creators`).
        if (from === undefined || held.own || !(from.counted ??= new Set()).has(index)) {
          count += 1;
          from?.counted?.add(index);
        }
        count += held.free;
        held.leaf = undefined;
        held.free = 0;
        if (count > stopAfter) return count;
      }
      for (const name of spreads) {
        const target = fragments.get(name);
        if (target === undefined || target.spreadAt === level) continue;
        target.spreadAt = level;
        collected.push({ selections: selectionsOf(target, schema), from: target });
      }
    }
  }
  return count;
}

/** A fragment definition, its selections read once however many levels spread it. */
interface Fragment {
  selectionSet: SelectionSetNode;
  /** Its type condition's type, if the schema has it. */
  type: GraphQLNamedType | undefined;
  selections?: Selections;
  /** The last level that collected it. */
  spreadAt: number;
  /** Its fields (by index in `selections`) counted already as repeating another fragment's. */
  counted?: Set<number>;
}

const selectionsOf = (fragment: Fragment, schema: GraphQLSchema | undefined) =>
  (fragment.selections ??= flattenedSelections(fragment.selectionSet, fragment.type, schema));

const typeNamed = (schema: GraphQLSchema | undefined, name: string) => schema?.getType(name) ?? undefined;

/** A field without arguments or selection set: its name and its type, as graphql-js finds it on its parent type. */
interface SimpleLeaf {
  name: string;
  type: GraphQLOutputType | undefined;
}

/** One selection set's selections, its inline fragments flattened into it. */
interface Selections {
  /** The response key of each field, repeats included. */
  fieldKeys: string[];
  /** For each of them, the simple leaf it is, if it is one. */
  leaves: Array<SimpleLeaf | undefined>;
  /** The names of the fragments it spreads. */
  spreads: string[];
  /** The selection sets of its fields, with their types: the levels below. */
  below: Array<{ selectionSet: SelectionSetNode; type: GraphQLNamedType | undefined }>;
}

function flattenedSelections(selectionSet: SelectionSetNode, type: GraphQLNamedType | undefined, schema: GraphQLSchema | undefined): Selections {
  const selections: Selections = { fieldKeys: [], leaves: [], spreads: [], below: [] };
  const pending = [{ selectionSet, type }];
  while (pending.length > 0) {
    const { selectionSet: set, type: parentType } = pending.pop()!;
    for (const selection of set.selections) {
      if (selection.kind === Kind.FIELD) {
        const name = selection.name.value;
        // As graphql-js's OverlappingFieldsCanBeMergedRule looks a field up (`__typename` is none of the type's fields).
        const field = isObjectType(parentType) || isInterfaceType(parentType) ? parentType.getFields()[name] : undefined;
        selections.fieldKeys.push(selection.alias?.value ?? name);
        const simple = !selection.selectionSet && !selection.arguments?.length;
        selections.leaves.push(simple ? { name, type: field?.type } : undefined);
        if (selection.selectionSet) selections.below.push({ selectionSet: selection.selectionSet, type: field && getNamedType(field.type) });
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        const condition = selection.typeCondition ? typeNamed(schema, selection.typeCondition.name.value) : parentType;
        pending.push({ selectionSet: selection.selectionSet, type: condition });
      } else {
        selections.spreads.push(selection.name.value);
      }
    }
  }
  return selections;
}

/**
 * Comments are tokens too, and a parsed document keeps every one of them (graphql-js links them into its token list),
 * but graphql-armor counts only the others: 49,000 empty comment lines in one ~100 KB request parsed to 4 MB kept in
 * Yoga's document cache, and a few hundred such requests exhausted the heap. Comments are counted before parsing (a
 * scan that stops past the limit), and every token, comments included, after it.
 */
export function useCommentsCounted(maxTokens: number): Plugin {
  const tooMany = () => codedError('QUERY_TOO_MANY_TOKENS', { message: `Token limit of ${maxTokens} exceeded.`, limit: maxTokens });
  type ParseFn = Parameters<NonNullable<Plugin['onParse']>>[0]['parseFn'];
  // This hook runs on every request, parse-cache hit or not: the wrapper is made once per parse function, not per request.
  const wrappers = new WeakMap<ParseFn, ParseFn>();
  const wrap = (parseFn: ParseFn): ParseFn => (source, options) => {
    if (countComments(typeof source === 'string' ? source : source.body, maxTokens) > maxTokens) throw tooMany();
    const document = parseFn(source, options);
    if (tokenCount(document) > maxTokens) throw tooMany();
    return document;
  };
  return {
    onParse({ parseFn, setParseFn }) {
      let wrapped = wrappers.get(parseFn);
      if (!wrapped) wrappers.set(parseFn, (wrapped = wrap(parseFn)));
      setParseFn(wrapped);
    },
  };
}

/** The comments in a GraphQL source (a `#` outside a string, to the end of its line), counted until past `stopAfter`. */
export function countComments(source: string, stopAfter: number): number {
  let count = 0;
  const length = source.length;
  for (let index = 0; index < length; index += 1) {
    const code = source.charCodeAt(index);
    if (code === 0x23) {
      count += 1;
      if (count > stopAfter) return count;
      while (index + 1 < length && !isLineEnd(source.charCodeAt(index + 1))) index += 1;
    } else if (code === 0x22) {
      index = source.startsWith('"""', index) ? blockStringEnd(source, index + 3) : stringEnd(source, index + 1);
    }
  }
  return count;
}

const isLineEnd = (code: number) => code === 0x0a || code === 0x0d;

/** Where a `"…"` string whose text starts at `from` ends (its closing quote, or the line's end where it is unterminated). */
function stringEnd(source: string, from: number): number {
  for (let index = from; index < source.length; index += 1) {
    const code = source.charCodeAt(index);
    if (code === 0x5c) index += 1;
    else if (code === 0x22 || isLineEnd(code)) return index;
  }
  return source.length;
}

/** Where a block string whose text starts at `from` ends (the last quote of its closing `"""`), read as graphql-js reads it. */
function blockStringEnd(source: string, from: number): number {
  for (let index = from; index < source.length; index += 1) {
    const code = source.charCodeAt(index);
    if (code === 0x22 && source.startsWith('"""', index)) return index + 2;
    // An escaped triple quote is four characters of text.
    if (code === 0x5c && source.startsWith('"""', index + 1)) index += 3;
  }
  return source.length;
}

/** Every lexical token the document keeps, comments included. */
function tokenCount(document: DocumentNode): number {
  let count = 0;
  for (let token = document.loc?.startToken.next; token && token.kind !== TokenKind.EOF; token = token.next) count += 1;
  return count;
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
