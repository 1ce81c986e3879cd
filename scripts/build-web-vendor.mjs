// Bundles the web client's npm dependencies (the Signal protocol library and a QR encoder)
// from node_modules into web/vendor/vendor.js, one ES module that ternd serves with the rest of
// web/. Run by scripts/build (through cmake); the output is git-ignored.
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
await build({
  entryPoints: [path.join(root, 'scripts', 'web-vendor-entry.mjs')],
  outfile: path.join(root, 'web', 'vendor', 'vendor.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2020'],
  minify: true,
  legalComments: 'eof',
  // The curve code is emscripten output that, under node, asks for __dirname (an ES module has
  // none); its asm.js is inline, so an empty one does.
  define: { __dirname: '""' },
  logLevel: 'warning',
});
