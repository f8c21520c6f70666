// The pure parts of the search page's autocomplete: which URL to ask, when,
// and where the arrow keys move the highlighted option. Tested in frontend/test/.

// What the endpoint accepts (emporium.search.selectors.SUGGEST_MAX_LENGTH).
export const SUGGEST_MAX_LENGTH = 100;

// The text to complete, whitespace collapsed, or null when there is nothing to ask.
export function suggestText(value) {
  const text = value.trim().replace(/\s+/g, " ");
  if (text === "" || text.length > SUGGEST_MAX_LENGTH) return null;
  return text;
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

// The options to show: completions, then categories, each with what choosing it does.
export function optionsOf(body) {
  const completions = (body.completions || []).map((text) => ({ kind: "query", text, label: text }));
  const categories = (body.categories || []).map((category) => ({
    kind: "category",
    id: String(category.id),
    text: body.query,
    label: `${body.query} in ${category.name}`,
  }));
  return [...completions, ...categories];
}
