// Bundles the page scripts into their apps' static files.
// `npm run build`; `make frontend` runs it after `npm ci`.

import { build } from "esbuild";

const common = {
  bundle: true,
  minify: true,
  sourcemap: "linked",
  format: "iife",
  target: ["es2022"],
  legalComments: "linked",
  logLevel: "info",
};

await build({
  ...common,
  entryPoints: { dashboard: "src/dashboard.js" },
  outdir: "../emporium/dashboard/static/dashboard/build",
});
await build({
  ...common,
  entryPoints: { search: "src/search.js" },
  outdir: "../emporium/search/static/search/build",
});
