"""Settings of the server the fuzz runner starts: the test profile, its own cache keys.

Each run works on a database created for it, so its cached catalog pages and
throttle counters must not meet those of another run (or of the test suite) in
a shared Redis: the run's id joins every cache key prefix.
"""

import os

from config.settings.test import *  # noqa: F403
from config.settings.test import CACHES

_RUN = os.environ.get("EMPORIUM_FUZZ_RUN", "fuzz")
CACHES = {
    alias: {**config, "KEY_PREFIX": f"{config.get('KEY_PREFIX', 'emporium')}-{_RUN}"}
    for alias, config in CACHES.items()
}
