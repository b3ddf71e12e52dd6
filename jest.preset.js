// Shared Jest settings: TypeScript through ts-jest (transpile only; `build`
// type-checks), the tsconfig path aliases, Node environment.
const path = require('node:path');

module.exports = (projectDir) => ({
  rootDir: projectDir,
  testEnvironment: 'node',
  testTimeout: 60_000,
  testMatch: ['<rootDir>/**/*.spec.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: path.join(__dirname, 'tsconfig.base.json') }],
  },
  moduleNameMapper: {
    '^@metering/(client|contracts|domain|pricing)$': path.join(__dirname, 'libs/$1/src/index.ts'),
  },
});
