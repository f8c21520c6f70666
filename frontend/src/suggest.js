// The pure parts of the search page's autocomplete: which URL to ask, when,
// and where the arrow keys move the highlighted option. Tested in frontend/test/.

// What the endpoint accepts (emporium.search.selectors.SUGGEST_MAX_LENGTH).
export const SUGGEST_MAX_LENGTH = 100;

// What to ask about the text typed so far: only its last word, which is all the
// completions depend on, so every shopper typing "la" after any words shares one
// cached answer (in nginx's micro-cache too). The words before are added back
// here. Null when the text does not end in a word or is too long.
export function suggestText(value) {
  const text = value.trim().replace(/\s+/g, " ");
  if (text === "" || text.length > SUGGEST_MAX_LENGTH) return null;
  const last = text.match(/[\p{L}\p{N}]+$/u);
  if (!last) return null;
  return { before: text.slice(0, last.index), word: last[0], text };
}

export function suggestUrl(text, path = "/api/search/suggest/") {
  return `${path}?${new URLSearchParams({ q: text })}`;
}

// The option highlighted after a key: -1 is none (the text as typed).
// Down from the last one, and up from none, wrap around.
export function nextIndex(current, count, key) {
  if (count === 0) return -1;
  if (key === "ArrowDown") return current + 1 >= count ? -1 : current + 1;
  if (key === "ArrowUp") return current <= -1 ? count - 1 : current - 1;
  return current;
}

// The options to show: completions of the last word after the words typed
// before it, then the whole text in each category.
export function optionsOf(body, typed) {
  const completions = (body.completions || []).map((word) => {
    const text = typed.before + word;
    return { kind: "query", text, label: text };
  });
  const categories = (body.categories || []).map((category) => ({
    kind: "category",
    id: String(category.id),
    text: typed.text,
    label: `${typed.text} in ${category.name}`,
  }));
  return [...completions, ...categories];
}
