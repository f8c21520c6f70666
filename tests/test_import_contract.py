"""The import contract (.importlinter) names every production module of every app.

The contract lists modules explicitly (tests and migrations are not production
code), so a new module must be placed in its app's layer; this test says which
one is missing. ``lint-imports`` itself runs in CI (.ci/run) and ``make lint``.
"""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOT_PRODUCTION = {"tests", "migrations"}


def _production_modules(app: Path) -> set[str]:
    names = set()
    for path in app.iterdir():
        if path.name in NOT_PRODUCTION or path.name.startswith(("__", ".")):
            continue
        if path.is_dir() and (path / "__init__.py").exists():
            names.add(f"emporium.{app.name}.{path.name}")
        elif path.suffix == ".py":
            names.add(f"emporium.{app.name}.{path.stem}")
    return names


def test_every_module_of_every_app_is_in_the_apps_layers() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    layers = config["importlinter:contract:apps"]["layers"].split()
    listed = {name for name in layers if name != ":"}
    apps = [path for path in (ROOT / "emporium").iterdir() if (path / "__init__.py").exists()]

    on_disk = set().union(*(_production_modules(app) for app in apps))

    assert sorted(on_disk - listed) == []  # add them to their app's layer in .importlinter
    assert sorted(listed - on_disk) == []
    containers = set(config["importlinter:contract:inside-apps"]["containers"].split())
    assert containers == {f"emporium.{app.name}" for app in apps if app.name != "core"}
