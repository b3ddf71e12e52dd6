// Lint for every project. The module boundaries of DESIGN.md are enforced
// here: the app may use every lib; domain and pricing libs use no I/O
// library; contracts use nothing of ours.
import nx from '@nx/eslint-plugin';

const ioLibraries = ['knex', 'knex-pglite', 'pg', '@electric-sql/*', '@grpc/*', 'grpc-health-check', 'node:fs', 'fs', 'node:net', 'net', 'node:child_process', 'child_process'];

export default [
  ...nx.configs['flat/base'],
  ...nx.configs['flat/typescript'],
  { ignores: ['**/dist', '**/node_modules', '**/.nx', 'libs/contracts/src/gen/**', '**/.data'] },
  {
    files: ['**/*.ts'],
    rules: {
      '@nx/enforce-module-boundaries': [
        'error',
        {
          enforceBuildableLibDependency: false,
          allow: [],
          depConstraints: [
            { sourceTag: 'type:app', onlyDependOnLibsWithTags: ['type:contracts', 'type:domain', 'type:pricing'] },
            { sourceTag: 'type:tool', onlyDependOnLibsWithTags: ['type:contracts', 'type:domain', 'type:pricing'] },
            { sourceTag: 'type:domain', onlyDependOnLibsWithTags: ['type:pricing'], bannedExternalImports: ioLibraries },
            { sourceTag: 'type:pricing', onlyDependOnLibsWithTags: [], bannedExternalImports: ioLibraries },
            { sourceTag: 'type:contracts', onlyDependOnLibsWithTags: [] },
          ],
        },
      ],
    },
  },
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
];
