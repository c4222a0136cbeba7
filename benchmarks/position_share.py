"""Where a pairwise judge sends its verdicts: per ``samples.jsonl`` (grm-eval's or grm-train's cache), the
parsed samples that tie, and of the others the share where the response shown second scores higher and
the share where the preferred response does. A judge at chance that prefers a position shows it here.

Usage: ``python benchmarks/position_share.py SAMPLES.jsonl [SAMPLES.jsonl ...]``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def records(path: Path) -> list[dict]:
    """The records of one samples file, less the line a killed run was writing (the caches skip it too).

    Raises:
        ValueError: if the file holds samples of more than one sampling config (pooled, they would mix
            runs: another k, template or model).
    """
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    configs = {json.dumps(r.get("config"), sort_keys=True) for r in out}
    if len(configs) > 1:
        raise ValueError(f"{path} holds samples of {len(configs)} sampling configs; count one run's at a time")
    return out


def shares(path: Path) -> dict[str, float | int]:
    """Counts and shares over the pairs (two-response items) of one samples file.

    Raises:
        ValueError: as :func:`records`.
    """
    total = ties = second = decided = preferred = 0
    for record in records(path):
        if len(record["responses"]) != 2:
            continue
        for s in record["samples"]:
            if s["status"] != "parsed":
                continue
            total += 1
            first_shown, second_shown = (s["scores"][i] for i in s["permutation"])
            if first_shown == second_shown:
                ties += 1
                continue
            decided += 1
            second += second_shown > first_shown
            p = record["preferred"]
            preferred += s["scores"][p] > s["scores"][1 - p]
    return {
        "samples": total,
        "ties": ties / total if total else 0.0,
        "decided": decided,
        "shown_second_wins": second / decided if decided else 0.0,
        "preferred_wins": preferred / decided if decided else 0.0,
    }


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    for name in argv:
        try:
            r = shares(Path(name))
        except ValueError as exc:
            print(f"position_share: {exc}", file=sys.stderr)
            return 2
        print(
            f"{name}: {r['samples']} samples, ties {r['ties']:.1%}, shown-second wins {r['shown_second_wins']:.1%}"
            f" of {r['decided']} decided, preferred wins {r['preferred_wins']:.1%} of decided"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
