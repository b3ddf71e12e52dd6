import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import semver from 'semver';

/**
 * Node 20 is the promised runtime (README, package.json engines): every
 * package the lock installs must accept it. npm only warns (EBADENGINE) and
 * installs anyway, so a dependency that needs Node 22 would otherwise pass
 * unnoticed until it uses an API Node 20 lacks. (.ci/run also installs with
 * engine-strict, which turns the warning into a failure.)
 */
describe('dependencies and the Node 20 promise', () => {
  const root = join(__dirname, '..', '..', '..', '..');
  const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { version?: string; engines?: { node?: string } | string[] }>;
  };
  const declared = Object.entries(lock.packages)
    .filter(([path, pkg]) => path !== '' && pkg.engines && !Array.isArray(pkg.engines) && pkg.engines.node)
    .map(([path, pkg]) => ({ name: `${path.replace(/^.*node_modules\//, '')}@${pkg.version}`, node: (pkg.engines as { node: string }).node }));

  it('reads the engines of the locked packages', () => {
    expect(declared.length).toBeGreaterThan(50);
  });

  it('every locked package that declares engines.node accepts Node 20', () => {
    const refusing = declared.filter((d) => !semver.intersects(d.node, '20.x', { loose: true })).map((d) => `${d.name} wants node ${d.node}`);
    expect(refusing).toEqual([]);
  });

  it('every locked package accepts the Node running this test', () => {
    const refusing = declared.filter((d) => !semver.satisfies(process.version, d.node, { loose: true })).map((d) => `${d.name} wants node ${d.node}`);
    expect(refusing).toEqual([]);
  });

  it('the project itself promises Node 20', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { engines: { node: string } };
    expect(semver.intersects(pkg.engines.node, '20.x')).toBe(true);
  });
});
