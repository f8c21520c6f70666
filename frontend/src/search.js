// The search page's autocomplete (ARIA combobox with a listbox popup).
// Each keystroke asks GET /api/search/suggest/ (answered from the cache);
// an answer that arrives after a newer keystroke's request is dropped (the
// requests are not aborted: each is small and cached on the way). Arrow keys move
// through the options, Enter chooses one (or submits the text as typed),
// Escape closes the list. Without this script the form works as before.

import { nextIndex, optionsOf, suggestText, suggestUrl } from "./suggest.js";

function setUp(form) {
  const input = form.querySelector("#q");
  const list = form.querySelector("#q-suggestions");
  const category = form.querySelector("#category");
  if (!input || !list) return;
  let options = [];
  let active = -1;
  let asked = 0;

  input.setAttribute("role", "combobox");
  input.setAttribute("aria-autocomplete", "list");
  input.setAttribute("aria-controls", list.id);
  input.setAttribute("aria-expanded", "false");

  function close() {
    options = [];
    active = -1;
    list.replaceChildren();
    list.hidden = true;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
  }

  function highlight(index) {
    active = index;
    list.querySelectorAll("[role=option]").forEach((item, position) => {
      item.setAttribute("aria-selected", position === index ? "true" : "false");
    });
    if (index >= 0) input.setAttribute("aria-activedescendant", `q-option-${index}`);
    else input.removeAttribute("aria-activedescendant");
  }

  function show(found) {
    options = found;
    active = -1;
    list.replaceChildren(
      ...found.map((option, index) => {
        const item = document.createElement("li");
        item.id = `q-option-${index}`;
        item.setAttribute("role", "option");
        item.setAttribute("aria-selected", "false");
        item.className = `suggestion suggestion-${option.kind}`;
        item.textContent = option.label;
        item.addEventListener("mousedown", (event) => {
          event.preventDefault(); // keeps the focus in the input
          choose(index);
        });
        return item;
      }),
    );
    list.hidden = found.length === 0;
    input.setAttribute("aria-expanded", found.length ? "true" : "false");
    input.removeAttribute("aria-activedescendant");
  }

  function choose(index) {
    const option = options[index];
    if (!option) return;
    input.value = option.text;
    if (option.kind === "category" && category) category.value = option.id;
    close();
    form.requestSubmit();
  }

  async function ask() {
    const typed = suggestText(input.value);
    const ticket = ++asked;
    if (typed === null) {
      close();
      return;
    }
    try {
      const response = await fetch(suggestUrl(typed.word), {
        headers: { Accept: "application/json" },
      });
      if (!response.ok) return;
      const body = await response.json();
      if (ticket === asked) show(optionsOf(body, typed)); // else a newer keystroke's follows
    } catch {
      if (ticket === asked) close(); // offline: the form still works without suggestions
    }
  }

  input.addEventListener("input", ask);
  input.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      if (!options.length) return;
      event.preventDefault();
      highlight(nextIndex(active, options.length, event.key));
    } else if (event.key === "Enter" && active >= 0) {
      event.preventDefault();
      choose(active);
    } else if (event.key === "Escape" && !list.hidden) {
      event.preventDefault(); // a search input would clear its text too
      close();
    }
  });
  input.addEventListener("blur", close);
}

document.querySelectorAll("form.search-form").forEach(setUp);
