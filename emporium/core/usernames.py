"""The one fold that decides which account a typed username means.

The account lookup, the uniqueness of usernames and the per-account login
limit all go through :func:`username_fold`, so two spellings that reach the
same account also share its login counter, and two accounts can never be
reached by the same spelling.

The fold is Unicode compatibility normalisation (NFKC) around case folding,
with an upper-casing step first: ``str.casefold`` alone keeps the Turkish
dotless i (U+0131) apart from ``i``, while upper-casing (what PostgreSQL's
``UPPER`` and most people's eyes do) maps it and the long s (U+017F) to ``I``
and ``S``.
"""

from __future__ import annotations

import unicodedata

# Longer folds are cut: the limit only needs a stable key, and a cut can only
# merge counters (more counting), never split one.
MAX_FOLD_LENGTH = 150


def username_fold(username: str) -> str:
    """The canonical key of ``username``: case, width, padding and compatibility forms aside."""
    normalised = unicodedata.normalize("NFKC", username.strip())
    folded = unicodedata.normalize("NFKC", normalised.upper().casefold())
    return folded[:MAX_FOLD_LENGTH]
