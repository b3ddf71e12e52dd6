// Lint for every project. The module boundaries (docs/architecture.md) are enforced
// here: the app may use every lib; domain and pricing libs use no I/O
// library; contracts use nothing of ours.
import nx from '@nx/eslint-plugin';

const ioLibraries = ['knex', 'knex-pglite', 'pg', '@electric-sql/*', '@grpc/*', 'node:fs', 'fs', 'node:net', 'net', 'node:child_process', 'child_process'];

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
            { sourceTag: 'type:app', onlyDependOnLibsWithTags: ['type:contracts', 'type:domain', 'type:pricing', 'type:client'] },
            { sourceTag: 'type:tool', onlyDependOnLibsWithTags: ['type:contracts', 'type:domain', 'type:pricing', 'type:client'] },
            { sourceTag: 'type:domain', onlyDependOnLibsWithTags: ['type:pricing'], bannedExternalImports: ioLibraries },
            { sourceTag: 'type:pricing', onlyDependOnLibsWithTags: [], bannedExternalImports: ioLibraries },
            { sourceTag: 'type:contracts', onlyDependOnLibsWithTags: [] },
            { sourceTag: 'type:client', onlyDependOnLibsWithTags: ['type:contracts'] },
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
  {
    // Money code: every amount is a Dec (decimal.js). JS number arithmetic is
    // banned here so that a float can never creep into a cost; proven by
    // libs/pricing/src/money-lint.spec.ts.
    files: ['libs/pricing/src/cost.ts', 'libs/pricing/src/money.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        { selector: 'BinaryExpression[operator=/^[-+*/%]$|^\\*\\*$/]', message: 'money code: use Dec methods (plus, minus, times, dividedBy), never JS number operators' },
        { selector: 'AssignmentExpression[operator=/^([-+*/%]|\\*\\*)=$/]', message: 'money code: use Dec methods, never JS number operators' },
        { selector: 'UpdateExpression', message: 'money code: use Dec methods, never ++ or --' },
        { selector: 'UnaryExpression[operator="-"][argument.type!="Literal"]', message: 'money code: use Dec.negated(), never unary minus' },
        { selector: "MemberExpression[object.name='Math']", message: 'money code: Math works on floats; use Dec' },
        { selector: "CallExpression[callee.name=/^(parseFloat|parseInt|Number)$/]", message: 'money code: parse amounts with parseDecimal / new Dec' },
        { selector: "MemberExpression[property.name=/^(toFixed|toPrecision)$/][object.type='Literal']", message: 'money code: format with formatDecimal' },
      ],
    },
  },
];
