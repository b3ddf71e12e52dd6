// Packs the TypeScript client as an npm package a backend installs (`npm install ./metering-client-<v>.tgz`):
// libs/client and the generated contract it needs (libs/contracts) compiled together to
// CommonJS with type declarations, so an outside project runs it with plain `node` and
// type-checks it with plain `tsc`, without this repo's tsconfig paths. Prints the tarball's path.
//   node libs/client/pack.mjs [--out <dir>]   (default dist/libs)
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..');
const args = process.argv.slice(2);
const out = args.includes('--out') ? args[args.indexOf('--out') + 1] : join(root, 'dist', 'libs');
const stage = join(root, 'dist', 'libs', 'client-package');
const rootPackage = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const clientPackage = JSON.parse(readFileSync(join(root, 'libs', 'client', 'package.json'), 'utf8'));
const notTest = (src) => !/\.spec\.ts$/.test(src);

rmSync(stage, { recursive: true, force: true });
mkdirSync(join(stage, 'src'), { recursive: true });
// The contract's stubs and registry become the package's own ./contracts module.
cpSync(join(root, 'libs', 'contracts', 'src'), join(stage, 'src', 'contracts'), { recursive: true, filter: notTest });
for (const file of readdirSync(join(root, 'libs', 'client', 'src')).filter((f) => f.endsWith('.ts') && notTest(f))) {
  const text = readFileSync(join(root, 'libs', 'client', 'src', file), 'utf8').replaceAll("from '@metering/contracts'", "from './contracts'");
  writeFileSync(join(stage, 'src', file), text);
}
writeFileSync(
  join(stage, 'tsconfig.json'),
  JSON.stringify({
    compilerOptions: {
      target: 'ES2022', lib: ['ES2022'], module: 'commonjs', moduleResolution: 'node', types: ['node'], strict: true, esModuleInterop: true,
      skipLibCheck: true, declaration: true, rootDir: 'src', outDir: 'lib', typeRoots: [join(root, 'node_modules', '@types')],
    },
    include: ['src/**/*.ts'],
  }),
);
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
execFileSync(process.execPath, [tsc, '-p', join(stage, 'tsconfig.json')], { stdio: 'inherit', cwd: stage });
rmSync(join(stage, 'src'), { recursive: true });
rmSync(join(stage, 'tsconfig.json'));

const range = (name) => `^${rootPackage.dependencies[name]}`;
writeFileSync(
  join(stage, 'package.json'),
  `${JSON.stringify(
    {
      name: clientPackage.name,
      version: clientPackage.version,
      description: clientPackage.description,
      license: clientPackage.license,
      main: 'lib/index.js',
      types: 'lib/index.d.ts',
      files: ['lib', 'README.md'],
      engines: rootPackage.engines,
      dependencies: { '@bufbuild/protobuf': range('@bufbuild/protobuf'), '@grpc/grpc-js': range('@grpc/grpc-js') },
      // meterOpenAI / meterAnthropic wrap a client you pass in: the SDKs are optional peers (typed structurally, never imported).
      peerDependencies: clientPackage.peerDependencies && Object.fromEntries(Object.entries(clientPackage.peerDependencies).filter(([name]) => clientPackage.peerDependenciesMeta?.[name]?.optional)),
      peerDependenciesMeta: clientPackage.peerDependenciesMeta,
    },
    null,
    2,
  )}\n`,
);
cpSync(join(root, 'libs', 'client', 'README.md'), join(stage, 'README.md'));
mkdirSync(out, { recursive: true });
const packed = JSON.parse(execFileSync('npm', ['pack', '--json', '--pack-destination', out], { cwd: stage, encoding: 'utf8' }));
process.stdout.write(`${join(out, packed[0].filename)}\n`);
