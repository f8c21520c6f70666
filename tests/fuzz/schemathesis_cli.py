"""``schemathesis`` 3.39's command line, runnable with the locked Hypothesis.

hypothesis-jsonschema 0.23.1 (the latest release, which schemathesis 3.39
needs) draws object properties with ``many(...).more()``; Hypothesis 6.170
replaced that method with iteration (``with many(...) as e: for _ in e``).
Without it every operation whose schema has an object errors before sending a
request. ``more`` is added back here on top of the iterator, for this process
only; once a hypothesis-jsonschema release iterates, the shim does nothing.

    python -m tests.fuzz.schemathesis_cli run <schema-url> [options]
"""

from __future__ import annotations

import sys
from typing import Any

from hypothesis.internal.conjecture import utils as conjecture_utils


def _more(self: Any) -> bool:
    """One more element? The old ``many.more()``, on top of the new iterator."""
    if self._depth is None:  # first call: what ``with many(...)`` and ``for`` would do
        self.__enter__()
        self._iterated = True
        self._compat_elements = self._iterate()
    if self._done:
        return False
    try:
        next(self._compat_elements)
    except StopIteration:
        return False
    return True


def install() -> None:
    if not hasattr(conjecture_utils.many, "more"):
        conjecture_utils.many.more = _more  # type: ignore[attr-defined]


def main() -> None:
    install()
    from schemathesis.cli import schemathesis

    sys.exit(schemathesis())


if __name__ == "__main__":
    main()
