"""Issues courier devices for the ingestion benchmark and writes '<id> <token>' lines.

Run inside the benchmark's environment (production profile, its own database):
``python -m bench.seed_ingest --devices 64 --tokens FILE``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import django


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--tokens", type=Path, required=True)
    args = parser.parse_args()
    django.setup()

    from emporium.delivery.services import device_issue

    lines = []
    for number in range(args.devices):
        issued = device_issue(name=f"bench courier {number + 1}")
        lines.append(f"{issued.device.pk} {issued.token}\n")
    args.tokens.write_text("".join(lines))


if __name__ == "__main__":
    main()
