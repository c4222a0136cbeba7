"""Two grm-eval reports on the same items side by side: ``python -m grm_eval.compare BEFORE AFTER``.

For each data file and the macro mean over files, Voting@k of both runs with their 95% bootstrap
intervals, the difference ``after - before`` with a paired interval (one resample draws the same items
for both runs, :func:`grm_eval.bootstrap.paired_difference`), and each run's parse and flip rates. The
two reports must cover the same items (same ``--data``, ``--limit`` and ``--seed``). Prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grm_eval.bootstrap import RESAMPLES, paired_difference


def _scores(report: dict[str, Any], ks: Sequence[str]) -> dict[str, list[list[float]]]:
    by_file: dict[str, list[tuple[str, list[float]]]] = defaultdict(list)
    for item in report["items"]:
        by_file[item["file"]].append((item["id"], [item["voting"][k] for k in ks]))
    return {f: [v for _, v in sorted(rows)] for f, rows in by_file.items()}


def _ids(report: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((i["file"], i["id"]) for i in report["items"])


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def _span(ci: Sequence[float]) -> str:
    return f"[{_pct(ci[0])}, {_pct(ci[1])}]"


def _signed(x: float) -> str:
    return f"{100 * x:+.1f}"


def compare(before: dict[str, Any], after: dict[str, Any], ks: Sequence[str] | None = None) -> str:
    """The side-by-side Markdown table.

    Raises:
        ValueError: if a report has no per-item figures or the two cover different items.
    """
    if "items" not in before or "items" not in after:
        raise ValueError("both reports need per-item figures (written by grm-eval with bootstrap intervals)")
    if _ids(before) != _ids(after):
        raise ValueError("the two reports cover different items: use the same --data, --limit and --seed")
    # Same ids are not the same items if a file changed in between (a label fixed, a response edited).
    hashes = before.get("data_files", {}), after.get("data_files", {})
    changed = sorted(f for f, h in hashes[0].items() if hashes[1].get(f, h) != h)
    if changed:
        raise ValueError(f"the two reports were run on different data: {', '.join(changed)} differs (sha256)")
    ks = list(ks or [str(k) for k in before["config"]["k"]])
    for name, report in (("BEFORE", before), ("AFTER", after)):
        has = [str(k) for k in report["config"]["k"]]
        if missing := [k for k in ks if k not in has]:
            raise ValueError(f"{name} has no Voting@{missing[0]} (its k: {', '.join(has)}); run both with the same --k")
    seed = before["bootstrap"]["seed"]
    diff_files, diff_macro = paired_difference(_scores(before, ks), _scores(after, ks), seed=seed)
    head = ["file", "run", *(f"Voting@{k} [95% CI]" for k in ks), "parsed", "flips"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = [(f, before["by_file"][f], after["by_file"][f], diff_files[f]) for f in sorted(before["by_file"])]
    # The macro row's parse and flip rates are over all items (a mean over files weighs them the same here).
    rates = ("parse_rate", "flip_rate_sampled")
    macro = [r["macro_files"] | {k: r["overall"][k] for k in rates} for r in (before, after)]
    rows.append(("**macro over files**", macro[0], macro[1], diff_macro))
    for name, b, a, d in rows:
        for run, f in (("before", b), ("after", a)):
            cells = [
                name if run == "before" else "",
                run,
                *(f"{_pct(f['voting'][k])} {_span(f['voting_ci'][k])}" for k in ks),
            ]
            cells += [_pct(f.get("parse_rate")), _pct(f.get("flip_rate_sampled"))]
            lines.append("| " + " | ".join(cells) + " |")
        deltas = [f"{_signed(a['voting'][k] - b['voting'][k])} {_span(d[j])}" for j, k in enumerate(ks)]
        lines.append("| " + " | ".join(["", "after - before (paired)", *deltas, "", ""]) + " |")
    note = (
        f"Voting@k in %, ties half; intervals: percentile bootstrap over items within each file, {RESAMPLES} "
        f"resamples, seed {seed}; the difference's interval is paired (the same items drawn for both runs)."
    )
    return "\n".join([note, "", *lines]) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m grm_eval.compare", description=__doc__)
    p.add_argument("before", type=Path, help="a grm-eval report.json (or its folder)")
    p.add_argument("after", type=Path, help="a grm-eval report.json (or its folder) on the same items")
    args = p.parse_args(argv)
    try:
        reports = [json.loads((r / "report.json" if r.is_dir() else r).read_text()) for r in (args.before, args.after)]
        print(compare(*reports), end="")
    except (OSError, ValueError, KeyError) as exc:
        print(f"grm_eval.compare: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
