// Unit tests of the autocomplete's pure pieces, on Node's built-in runner: `npm test`.
// The page as a whole is tested in Chromium (emporium/search/tests/test_browser.py).

import assert from "node:assert/strict";
import { test } from "node:test";

import { nextIndex, optionsOf, suggestText, suggestUrl } from "../src/suggest.js";

test("only the last word is asked for; the words before are kept", () => {
  assert.deepEqual(suggestText("  walnut   la "), { before: "walnut ", word: "la", text: "walnut la" });
  assert.deepEqual(suggestText("café"), { before: "", word: "café", text: "café" });
  assert.equal(suggestText("lamp!"), null);
  assert.equal(suggestText("   "), null);
  assert.equal(suggestText("x".repeat(101)), null);
  assert.equal(suggestText("x".repeat(100)).word, "x".repeat(100));
});

test("the URL encodes the text", () => {
  assert.equal(suggestUrl("walnut la&b"), "/api/search/suggest/?q=walnut+la%26b");
});

test("arrows move through the options and wrap through the typed text", () => {
  assert.deepEqual(
    [-1, 0, 1, 2].map((index) => nextIndex(index, 3, "ArrowDown")),
    [0, 1, 2, -1],
  );
  assert.deepEqual(
    [-1, 0, 1, 2].map((index) => nextIndex(index, 3, "ArrowUp")),
    [2, -1, 0, 1],
  );
  assert.equal(nextIndex(-1, 0, "ArrowDown"), -1);
});

test("completions follow the words typed before, then the text in each category", () => {
  const options = optionsOf(
    { query: "lam", completions: ["lamp", "lampshade"], categories: [{ id: 7, name: "Lighting" }] },
    { before: "brass ", word: "lam", text: "brass lam" },
  );
  assert.deepEqual(options, [
    { kind: "query", text: "brass lamp", label: "brass lamp" },
    { kind: "query", text: "brass lampshade", label: "brass lampshade" },
    { kind: "category", id: "7", text: "brass lam", label: "brass lam in Lighting" },
  ]);
});
