from __future__ import annotations

import pytest

from emporium.dashboard import collector


@pytest.fixture
def process_counts(monkeypatch: pytest.MonkeyPatch) -> collector.LocalCounts:
    """This process's counts, fresh for the test and out of the flusher thread's reach.

    The flusher thread keeps the instance it started with, so nothing the test
    records is flushed behind its back.
    """
    collector._flusher_ensure()
    counts = collector.LocalCounts()
    monkeypatch.setattr(collector, "_local", counts)
    return counts
