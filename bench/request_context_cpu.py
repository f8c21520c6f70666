"""CPU per request of the request-context middleware, with its access line on and off.

Runs ``RequestContextMiddleware``'s request and response phases in one process,
on the test settings with JSON lines written to /dev/null, for a batch of GET
requests, alternately with the ``emporium.access`` line on (INFO) and off
(WARNING) in ABBA order, and prints the median CPU per request of each side.
Needs no database or server::

    python -m bench.request_context_cpu [--requests 20000] [--rounds 4]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=4, help="even: ABBA order")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    os.environ["LOG_FORMAT"] = "json"
    import django

    django.setup()
    from django.http import HttpResponse
    from django.test import RequestFactory

    from emporium.observability.requests import RequestContextMiddleware

    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - kept for the run
    middleware = RequestContextMiddleware(lambda request: HttpResponse())
    response = HttpResponse()
    factory = RequestFactory()
    figures: dict[str, list[float]] = {"INFO": [], "WARNING": []}
    order = ["INFO", "WARNING", "WARNING", "INFO"] * (args.rounds // 2)
    for level in order[: args.rounds * 2]:
        requests = [factory.get("/api/products/1/") for _ in range(args.requests)]
        logging.getLogger("emporium.access").setLevel(level)
        started = time.process_time()
        for request in requests:
            middleware.process_request(request)
            middleware.process_response(request, response)
        figures[level].append((time.process_time() - started) / args.requests * 1e6)
    for level, label in (("WARNING", "access line off"), ("INFO", "access line on")):
        print(f"{label:<18}{statistics.median(figures[level]):>8.1f} us CPU per request")


if __name__ == "__main__":
    main()
