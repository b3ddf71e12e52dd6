// The dashboard's build: Vite bundles src/ into dist/dashboard, which the server's HTTP port
// serves at /. `npm run build` (nx) runs it; tests build it before they open a browser.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));

export default defineConfig({
  root: here('.'),
  base: './',
  build: { outDir: here('../../dist/dashboard'), emptyOutDir: true, target: 'es2022', chunkSizeWarningLimit: 1024 },
  // Only the contract's descriptors (registry.ts) are used here, never the Node stubs.
  resolve: { alias: { '@metering/registry': here('../../libs/contracts/src/registry.ts') } },
});
