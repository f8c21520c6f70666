// Bundles the page scripts into the dashboard app's static files.
// `npm run build`; `make frontend` runs it after `npm ci`.

import { build } from "esbuild";

await build({
  entryPoints: { dashboard: "src/dashboard.js" },
  outdir: "../emporium/dashboard/static/dashboard/build",
  bundle: true,
  minify: true,
  sourcemap: "linked",
  format: "iife",
  target: ["es2022"],
  legalComments: "linked",
  logLevel: "info",
});
