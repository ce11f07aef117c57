import type { CodegenConfig } from '@graphql-codegen/cli';

/**
 * Typed documents for the test operations, generated from the checked-in SDL, so a schema change that
 * breaks an operation fails codegen, the typecheck or test/codegen.test.ts. Run `npm run schema` first
 * when the schema changes; `npm run codegen -- --check` exits non-zero while test/gql/ is stale.
 */
const config: CodegenConfig = {
  schema: 'schema/schema.graphql',
  documents: 'test/operations/**/*.graphql',
  generates: {
    'test/gql/': {
      preset: 'client',
      // No fragments are shared between operations, so no masking helpers to generate.
      presetConfig: { fragmentMasking: false },
      config: {
        // verbatimModuleSyntax: a type-only import must be written `import type`.
        useTypeImports: true,
        // NodeNext resolution: relative imports between the generated files need their extension.
        importExtension: '.js',
        // A new scalar without a mapping here fails codegen instead of quietly becoming `any`.
        strictScalars: true,
        scalars: { SafeInt: 'number', DateTime: 'string', ID: 'string' },
      },
    },
  },
};

export default config;
