"""One scenario run on an earlier revision and on the working tree, figures side by side.

A change that must not slow anything down is measured by running the same
scenario twice, one tree after the other, in one invocation: first on
``--base`` (checked out as a git worktree under ``var/bench-base/``), then on
this tree. Each figure compared is the scenario's own ratio to a reference it
measured in the same run (nginx serving a static file, pgbench, a binary COPY,
a product read by id, a bare WebSocket server), so a machine that is busier
during one half moves both sides of the ratio::

    python -m bench.compare --base <rev> catalog -- --seconds 8 --products 100000
    python -m bench.compare --base <rev> checkout -- --seconds 15
    python -m bench.compare --base <rev> catalog_import -- --rows 100000

``--runs 4`` runs base, this tree, this tree, base (ABBA order; more runs repeat it) and
averages each side, so a drift over the invocation (a warming cache, a
growing table, other work starting) weighs on both sides alike.

Both trees use the same virtual environment (this interpreter). A ratio that
fell by more than ``--tolerance`` (5 % by default) is marked and makes the
exit status 1.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import common

Figures = dict[str, tuple[float, bool]]  # name -> (value, higher is better)


def _rate(result: dict[str, Any]) -> float:
    return float(result["requests_per_second"])


def _catalog(saved: dict[str, Any]) -> Figures:
    static = _rate(saved["reference_nginx_static"])
    return {
        "(a) cached list via the app / nginx static": (saved["ratio_app_to_static"], True),
        "(a) cached list, micro-cache / nginx static": (saved["ratio_micro_cache_to_static"], True),
        "(b) uncached list / nginx static": (_rate(saved["uncached_list"]) / static, True),
        "(c) uncached detail / nginx static": (_rate(saved["uncached_detail"]) / static, True),
        "(d) page 1 uncached / nginx static": (_rate(saved["page_1_uncached"]) / static, True),
        "(d) page 5,000 p50 / page 1 p50": (saved["ratio_page_5000_to_page_1_p50"], False),
    }


def _checkout(saved: dict[str, Any]) -> Figures:
    ratio = _rate(saved["result"]) / saved["reference_pgbench_tpcb_tps"]
    return {"orders/s / pgbench tpcb tx/s": (ratio, True)}


def _ingest(saved: dict[str, Any]) -> Figures:
    ratio = saved["stored_points_per_second"] / saved["reference_copy_rows_per_second"]
    return {"points stored/s / binary COPY rows/s": (ratio, True)}


def _search(saved: dict[str, Any]) -> Figures:
    figures = saved["figures"]
    reference_name = next(iter(figures))
    reference = figures[reference_name]["p95_ms"]
    return {
        f"{name} p95 / {reference_name} p95": (values["p95_ms"] / reference, False)
        for name, values in figures.items()
        if name != reference_name
    }


def _search_load(saved: dict[str, Any]) -> Figures:
    reference = _rate(saved["reference: product by id"])
    return {
        "realistic mix req/s / product by id req/s": (_rate(saved["mix"]) / reference, True),
        "autocomplete p99 right after the words changed / steady p99": (
            saved["suggest_paced_cold"]["p99_ms"] / saved["suggest_paced_steady"]["p99_ms"],
            False,
        ),
    }


def _fanout(saved: dict[str, Any]) -> Figures:
    return {
        f"{row['emporium']['connections']} sockets: deliveries/s / bare server": (
            row["ratio"],
            True,
        )
        for row in saved["rows"]
    }


def _journey(saved: dict[str, Any]) -> Figures:
    return {"journeys/s / minimal Django view, same client": (saved["ratio"], True)}


def _signed_in(saved: dict[str, Any]) -> Figures:
    return {
        f"{name} / {values['reference']}": (values["ratio"], True)
        for name, values in saved["figures"].items()
        if values["reference"] != name
    }


def _orders(saved: dict[str, Any]) -> Figures:
    return {
        "(a) my orders / /api/auth/me/": (saved["ratio_list_to_reference"], True),
        "(b) one order / /api/auth/me/": (saved["ratio_detail_to_reference"], True),
    }


def _catalog_import(saved: dict[str, Any]) -> Figures:
    figures: Figures = {}
    for row in saved["results"]:
        copy = row["copy_rows_per_second"]
        figures[f"{row['rows']:,} rows: import rows/s / COPY rows/s"] = (
            row["import_rows_per_second"] / copy,
            True,
        )
        figures[f"{row['rows']:,} rows: unchanged rows/s / COPY rows/s"] = (
            row["unchanged_rows_per_second"] / copy,
            True,
        )
    return figures


EXTRACT: dict[str, Callable[[dict[str, Any]], Figures]] = {
    "catalog_import": _catalog_import,
    "catalog": _catalog,
    "checkout": _checkout,
    "ingest": _ingest,
    "search": _search,
    "search_load": _search_load,
    "fanout": _fanout,
    "orders": _orders,
    "journey": _journey,
    "signed_in": _signed_in,
}


def _mean(runs: list[Figures]) -> Figures:
    names = [name for name in runs[0] if all(name in run for run in runs)]
    return {
        name: (sum(run[name][0] for run in runs) / len(runs), runs[0][name][1]) for name in names
    }


def base_tree(revision: str) -> Path:
    """A worktree of ``revision`` under var/bench-base/, made or moved there as needed."""
    commit = subprocess.run(
        ["git", "rev-parse", "--verify", f"{revision}^{{commit}}"],
        cwd=common.ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    tree = common.ROOT / "var" / "bench-base" / commit[:12]
    if not (tree / ".git").exists():
        tree.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "worktree", "add", "--detach", "--force", str(tree), commit],
            cwd=common.ROOT,
            check=True,
        )
    return tree


def run(tree: Path, scenario: str, arguments: list[str]) -> dict[str, Any]:
    """Run the scenario in ``tree`` and return what it saved.

    A scenario the earlier tree does not have yet is run from this tree against
    the earlier tree's application (``--app-root``, which such scenarios take).
    """
    here = not (tree / "bench" / f"{scenario}.py").exists()
    if here:
        arguments = [*arguments, "--app-root", str(tree)]
    runner = common.ROOT if here else tree
    results = runner / "bench" / "results"
    started = time.time()
    print(f"\n==== {scenario} on {tree}", flush=True)
    subprocess.run([sys.executable, "-m", f"bench.{scenario}", *arguments], cwd=runner, check=True)
    saved = sorted(
        (path for path in results.glob(f"{scenario}-*.json") if path.stat().st_mtime >= started),
        key=lambda path: path.stat().st_mtime,
    )
    if not saved:
        raise SystemExit(f"{scenario} on {tree} saved no results")
    return dict(json.loads(saved[-1].read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the revision to compare with")
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--runs", type=int, default=2, help="runs in ABBA order; even")
    parser.add_argument("scenario", choices=sorted(EXTRACT))
    parser.add_argument("arguments", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    arguments = [a for a in args.arguments if a != "--"]
    extract = EXTRACT[args.scenario]
    trees = {"before": base_tree(args.base), "after": common.ROOT}
    if args.runs < 2 or args.runs % 2:
        parser.error("--runs must be an even number, at least 2")
    order = (["before", "after", "after", "before"] * args.runs)[: args.runs]
    measured: dict[str, list[Figures]] = {"before": [], "after": []}
    for side in order:
        measured[side].append(extract(run(trees[side], args.scenario, arguments)))
    before, after = _mean(measured["before"]), _mean(measured["after"])

    print(
        f"\n{args.scenario}: ratios to same-run references, {args.base} and this tree "
        f"(order {', '.join(order)}; each side averaged)"
    )
    print(f"{'figure':<58}{'before':>9}{'after':>9}{'change':>9}")
    regressed = []
    for name, (value, higher_is_better) in before.items():
        if name not in after:
            continue
        new = after[name][0]
        change = new / value - 1 if value else 0.0
        worse = -change if higher_is_better else change
        mark = "  worse" if worse > args.tolerance else ""
        if mark:
            regressed.append(name)
        print(f"{name:<58}{value:>9.3f}{new:>9.3f}{change:>+9.1%}{mark}")
    if regressed:
        raise SystemExit(f"worse by more than {args.tolerance:.0%}: {', '.join(regressed)}")


if __name__ == "__main__":
    main()
