// Summarises a V8 profile: a .cpuprofile (from --cpu-prof) by the functions with the most self time,
// or a .heapprofile (from --heap-prof) by the functions that allocated the most bytes themselves.
// Usage: node tools/bench/profile-summary.mjs <file.cpuprofile|file.heapprofile> [top] [calls]
// (calls: how many calls the heap profile covers, to print KB per call)
import { readFileSync } from 'node:fs';

const [file, top = '25', calls] = process.argv.slice(2);
const profile = JSON.parse(readFileSync(file, 'utf8'));
/** A function's name and where it is (the bundle's path shortened). */
const nameOf = (f) => {
  const where = f.url ? `${f.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/dist\//, 'dist/')}:${f.lineNumber + 1}` : '';
  return `${f.functionName || '(anonymous)'} ${where}`;
};
const self = new Map();
let total = 0;
const add = (key, amount) => {
  self.set(key, (self.get(key) ?? 0) + amount);
  total += amount;
};
const heap = file.endsWith('.heapprofile');
if (heap) {
  const walk = (node) => {
    add(nameOf(node.callFrame), node.selfSize);
    for (const child of node.children) walk(child);
  };
  walk(profile.head);
} else {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  profile.samples.forEach((id, i) => add(nameOf(byId.get(id).callFrame), profile.timeDeltas[i] ?? 0));
}
const rows = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, Number(top));
for (const [k, amount] of rows) {
  const share = ((100 * amount) / total).toFixed(1).padStart(5);
  const perCall = calls ? `  ${(amount / 1024 / Number(calls)).toFixed(2).padStart(6)} KB/call` : '';
  console.log(heap ? `${share}%  ${(amount / 2 ** 20).toFixed(1).padStart(7)} MB${perCall}  ${k}` : `${share}%  ${(amount / 1000).toFixed(0).padStart(7)} ms  ${k}`);
}
const totalPerCall = calls ? `, ${(total / 1024 / Number(calls)).toFixed(1)} KB per call` : '';
console.log(heap ? `total ${(total / 2 ** 20).toFixed(0)} MB allocated (collected or not)${totalPerCall}` : `total ${(total / 1e6).toFixed(1)} s sampled`);
