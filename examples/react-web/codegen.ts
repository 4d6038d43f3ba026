// graphql-codegen's client preset: types for every operation in src/, generated from the
// gateway's published schema (graph/schema.graphql in the terragate repository) into
// src/gql/. `npm run build` runs it first, and it fails on an operation the schema does not
// allow, so the app cannot drift from the gateway.
import type { CodegenConfig } from '@graphql-codegen/cli';

const config: CodegenConfig = {
  schema: '../../graph/schema.graphql',
  documents: ['src/**/*.{ts,tsx}', '!src/gql/**'],
  ignoreNoDocuments: false,
  generates: {
    'src/gql/': {
      preset: 'client',
      presetConfig: {
        // Plain result types: components read fragment fields directly.
        fragmentMasking: false,
      },
      config: {
        scalars: { Time: 'string' },
        // String unions rather than TypeScript enums: the app compares plain strings.
        enumsAsTypes: true,
        useTypeImports: true,
        avoidOptionals: { field: true, inputValue: false, object: false, defaultValue: false },
      },
    },
  },
};

export default config;
