import {
  BREAK,
  GraphQLError,
  Kind,
  getVariableValues,
  visit,
  type DocumentNode,
  type ExecutionResult,
  type OperationDefinitionNode,
  type Source,
} from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { compileQuery, isCompiledQuery, type CompiledQuery } from 'graphql-jit';
import { reworded } from './errors.js';

export interface HotDocumentJitOptions {
  /** Runs of a document through graphql-js before it is compiled. */
  compileAfterRuns: number;
  /** Told of each compiled document, by its operation name (logged at debug). */
  onCompile?: (operationName: string | undefined) => void;
}

interface DocumentEntry {
  /** False for a document graphql-jit must not run: several operations, or one it could not compile. */
  compilable: boolean;
  /** The document's only operation. */
  operation: OperationDefinitionNode | undefined;
  /** Its name (undefined: anonymous). */
  operationName: string | undefined;
  runs: number;
  compiled: CompiledQuery | undefined;
}

/**
 * Executes hot documents with graphql-jit, which compiles a query into a JavaScript function:
 * a cached creator query costs about 35 µs less CPU than through graphql-js.
 *
 * Compiling costs about as much as 20 runs of the same document, and more for a larger one (a
 * 100-alias document takes 75 ms), so only a document that has already run `compileAfterRuns`
 * times is compiled: a client cannot make the gateway compile more than it executes. A document
 * stays compiled while Yoga's parse cache keeps it (it is the WeakMap's key).
 *
 * Written here rather than taken from @envelop/graphql-jit, whose cache is keyed by document alone:
 * a document holding two operations ran whichever was compiled first, whatever `operationName` asked for.
 * Here only single-operation documents are compiled, and run only when `operationName` names that
 * operation or is absent; anything else goes to graphql-js, which answers it as the spec says.
 */
export function useHotDocumentJit(options: HotDocumentJitOptions): Plugin {
  const entries = new WeakMap<DocumentNode, DocumentEntry>();
  return {
    onExecute({ args, setExecuteFn }) {
      let entry = entries.get(args.document);
      if (!entry) {
        const operation = onlyOperation(args.document);
        entry = {
          compilable: operation !== undefined && !mustNotCompile(args.document, operation),
          operation,
          operationName: operation?.name?.value,
          runs: 0,
          compiled: undefined,
        };
        entries.set(args.document, entry);
      }
      if (!entry.compilable) return;
      if (args.operationName != null && args.operationName !== entry.operationName) return;
      if (!entry.compiled) {
        entry.runs += 1;
        if (entry.runs < options.compileAfterRuns) return;
        const compiled = compileQuery(args.schema, args.document, entry.operationName);
        if (!isCompiledQuery(compiled)) {
          entry.compilable = false;
          return;
        }
        entry.compiled = compiled;
        options.onCompile?.(entry.operationName);
      }
      const { compiled } = entry;
      const variableDefinitions = entry.operation?.variableDefinitions ?? [];
      const source = args.document.loc?.source;
      setExecuteFn((execution) => {
        // graphql-jit coerces variables too, but with other messages and a result Yoga answers with 200: the
        // checks Yoga's own executor makes come first, so bad variables read the same before and after compiling
        // (its limit too: one error per bad item of a long list, built and sent, would cost a second).
        if (variableDefinitions.length > 0) {
          const coerced = getVariableValues(execution.schema, variableDefinitions, execution.variableValues ?? {}, { maxErrors: executorMaxErrors });
          if (coerced.errors) return { errors: coerced.errors.map(requestError) };
        }
        const result = compiled.query(execution.rootValue, execution.contextValue, execution.variableValues);
        const answer = (settled: ExecutionResult) => errorsFirst(locateErrors(settled, source));
        return isPromiseLike(result) ? result.then(answer) : answer(result);
      });
    },
  };
}

/**
 * graphql-jit's errors carry `locations` but not the `source` and `positions` graphql-js errors have,
 * and Yoga rebuilds every error from those when it serializes, dropping the locations. Rebuilt here
 * as graphql-js errors, a compiled document's errors read exactly as graphql-js would have written them.
 */
function locateErrors<T extends ExecutionResult>(result: T, source: Source | undefined): T {
  if (!result.errors?.length || !source) return result;
  let lineStarts: number[] | undefined;
  const errors = result.errors.map((error) => {
    if (error.source || !error.locations?.length) return error;
    lineStarts ??= lineStartsOf(source.body);
    const starts = lineStarts;
    return new GraphQLError(error.message, {
      source,
      positions: error.locations.map(({ line, column }) => (starts[line - 1] ?? 0) + column - 1),
      path: error.path,
      originalError: error.originalError,
      extensions: error.extensions,
    });
  });
  return { ...result, errors };
}

/**
 * Yoga's executor answers `{ errors, data }`, graphql-jit `{ data, errors }`: Yoga writes the keys in the order it gets
 * them, so a client reading the text (a snapshot, a log, a streaming parser) would see the answer change once compiled.
 */
function errorsFirst(result: ExecutionResult): ExecutionResult {
  if (result.errors === undefined || !('data' in result)) return result;
  const { errors, data, ...rest } = result;
  return { errors, data, ...rest };
}

/** The variable errors Yoga's executor (@graphql-tools/executor) reports at most before it gives up. */
const executorMaxErrors = 50;

/** As @graphql-tools/executor marks an error that stops execution before it starts: the request's fault, HTTP 400. */
function requestError(error: GraphQLError): GraphQLError {
  return reworded(error, { extensions: { ...error.extensions, http: { status: 400 } } });
}

function lineStartsOf(body: string): number[] {
  const starts = [0];
  for (const match of body.matchAll(/\r\n|[\n\r]/g)) starts.push(match.index + match[0].length);
  return starts;
}

function isPromiseLike<T>(value: T | PromiseLike<T>): value is PromiseLike<T> {
  return typeof (value as PromiseLike<T> | undefined)?.then === 'function';
}

/**
 * Whether graphql-jit 0.8 must leave this document to graphql-js, because once compiled it would answer differently
 * from Yoga's executor, make calls the cost check (which reads documents as graphql-js does) never charged, or run the
 * client's text as code. One walk of the document, made once per document:
 *
 * - `@skip`/`@include`: graphql-jit marks a fragment visited before it reads the spread's directive, and joins the
 *   conditions of a field reached along several paths: `...F @include(if: false) ...F` lost F's fields (and the call the
 *   cost check had charged for them was never made).
 * - An object literal, in an argument or a variable's default (only `_Any`, federation's representations, takes one):
 *   graphql-jit writes literal values into its code as JSON, where a `__proto__` key sets the object's prototype.
 *   `[{ __proto__: { __typename: "Creator", kolId: "1" } }]` is no Creator to graphql-js (nor to the cost check) but was
 *   one once compiled: an upstream call nothing planned or charged, as many as the document has such representations.
 * - A variable inside a list or object literal (`representations: [{ __typename: "Creator", kolId: $id }]`): not
 *   substituted where a custom scalar (`_Any`) parses the literal, so the entity was refused once compiled while the
 *   cost check had charged for its call.
 * - A string holding graphql-jit's markers: it turns `__MAGIC_NAN__<uuid>`, `__MAGIC_DATE__<uuid>`… (public constants of
 *   the package) back into values by search and replace over that JSON, so a string argument `"__MAGIC_DATE__<uuid>(…)"`
 *   became `new Date(…)`, and whatever the client wrote between the parentheses ran as JavaScript in the gateway on every
 *   request (`__type(name:)` takes any string and costs nothing, so the cost check lets it through). An enum value too:
 *   `_Any` (federation's representations) parses any literal untyped, so a bare name `__MAGIC_DATE__<uuid>x` is such a
 *   string, and became `new Date(x)`, the client's name read as a JavaScript global (an unknown one threw: HTTP 500).
 * - An alias or a variable named `__proto__`: answers and variables are plain objects, where that name is the prototype
 *   rather than a key. The alias's key moved to the end of its object, and an absent `$__proto__` read as
 *   Object.prototype and was refused where graphql-js ran the operation. So with every other name Object.prototype has:
 *   graphql-jit reads a variable as `input["constructor"] == null`, so an absent `$constructor` (`$toString`, `$valueOf`…)
 *   with a default read as the inherited function and was refused ("got invalid value [function Object]").
 * - A non-null variable with a default (`$id: ID! = "1"`): graphql-jit gives a variable its default only when its type
 *   is nullable, so a request leaving `id` out was refused ("was not provided", no data) after the cost check had charged.
 */
function mustNotCompile(document: DocumentNode, operation: OperationDefinitionNode): boolean {
  if (operation.variableDefinitions?.some((definition) => definition.defaultValue !== undefined && definition.type.kind === Kind.NON_NULL_TYPE)) {
    return true;
  }
  let listDepth = 0;
  let found = false;
  const stop = () => {
    found = true;
    return BREAK;
  };
  visit(document, {
    Directive: (node) => (node.name.value === 'skip' || node.name.value === 'include' ? stop() : undefined),
    ObjectValue: stop,
    ListValue: { enter: () => void (listDepth += 1), leave: () => void (listDepth -= 1) },
    Variable: () => (listDepth > 0 ? stop() : undefined),
    StringValue: (node) => (node.value.includes('__MAGIC_') ? stop() : undefined),
    // `_Any` parses a literal untyped: an enum value (a bare name) reaches graphql-jit's JSON as a string too.
    EnumValue: (node) => (node.value.includes('__MAGIC_') ? stop() : undefined),
    // `__proto__`, `constructor`, `toString`…: every name a plain object has without being given it. And no name (an
    // alias, an object field's) that holds the markers either, wherever graphql-jit may write it.
    Name: (node) => (Object.hasOwn(Object.prototype, node.value) || node.value.includes('__MAGIC_') ? stop() : undefined),
  });
  return found;
}

function onlyOperation(document: DocumentNode): OperationDefinitionNode | undefined {
  let found: OperationDefinitionNode | undefined;
  for (const definition of document.definitions) {
    if (definition.kind !== Kind.OPERATION_DEFINITION) continue;
    if (found) return undefined;
    found = definition;
  }
  return found;
}
