import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { printSubgraphSchema } from '@apollo/subgraph';
import { printSchema } from 'graphql';
import { schema, subgraphSchema } from './graphql/schema.js';

const schemaDir = new URL('../schema/', import.meta.url);

/** The checked-in SDL files and what they should contain now; `npm run schema` writes them, a test compares. */
export function renderSchemaFiles(): Map<URL, string> {
  return new Map([
    [new URL('schema.graphql', schemaDir), `${printSchema(schema)}\n`],
    // What `_service { sdl }` answers, for composing without a running subgraph; printSubgraphSchema
    // keeps `@link` and `@key`, which printSchema drops.
    [new URL('subgraph.graphql', schemaDir), `${printSubgraphSchema(subgraphSchema)}\n`],
  ]);
}

export async function staleSchemaFiles(): Promise<string[]> {
  const stale: string[] = [];
  for (const [file, expected] of renderSchemaFiles()) {
    const actual = await readFile(file, 'utf8').catch(() => '');
    if (actual !== expected) stale.push(fileURLToPath(file));
  }
  return stale;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const [file, content] of renderSchemaFiles()) {
    await writeFile(file, content);
    process.stdout.write(`wrote ${fileURLToPath(file)}\n`);
  }
}
