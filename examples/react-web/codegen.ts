// graphql-codegen's client preset: types for every operation in src/, generated from the
// gateway's published schema (graph/schema.graphql in the terragate repository) into
// src/gql/. `npm run build` runs it first, and it fails on an operation the schema does not
// allow, so the app cannot drift from the gateway.
//
// It also emits src/gql/persisted-documents.json, the manifest of every operation's text by
// its SHA-256 hash ("sha256:<hex>"), and puts each hash on its document (__meta__.hash). A
// gateway started with TRUSTED_DOCUMENTS=<that file> runs these documents and no others; the
// build for such a gateway (`npm run build:trusted`) sends each operation's documentId
// instead of its text (src/gateway.ts).
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
        // The trusted documents' manifest; the hashes are SHA-256, the gateway's.
        persistedDocuments: true,
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
