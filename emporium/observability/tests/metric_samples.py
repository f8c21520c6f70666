"""Reading metric values in tests: from this process's registry, or a process's /metrics."""

from __future__ import annotations

import urllib.request

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families


def sample(name: str, **labels: str) -> float:
    """The current value of one sample of this process's metrics; 0 when it has none yet."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scraped(
    url: str, *, timeout: float = 5.0
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample a /metrics endpoint serves, keyed by name and label set."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - a test server
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scraped_value(url: str, name: str, **labels: str) -> float | None:
    """One sample from a /metrics endpoint; None when it is not served (yet)."""
    return scraped(url).get((name, frozenset(labels.items())))
