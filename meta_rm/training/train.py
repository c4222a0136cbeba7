"""Label GRM samples, fit the linear meta RM, and measure it on held-out prompts.

Labels follow the paper (Eq. 10): a sample is correct only when the preferred response gets a
strictly higher score than every other. The model is chosen by grouped cross-validation on the
training prompts (the L2 strength), refit on all of them, and evaluated on held-out prompts it never
saw: AUC and accuracy of the meta reward against the labels, and pair accuracy of plain voting over
all k samples (Voting@k), of guided voting over the k/2 best (MetaRM@k) and of a random half of the
samples (the baseline a useless meta RM would match).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from meta_rm.base import Trajectory
from meta_rm.labels import pair_accuracy, sample_is_correct
from meta_rm.linear import LinearModel, train_linear
from meta_rm.selection import default_k_meta, select_top_k
from meta_rm.training.data import PreferenceItem, file_sha256, heldout_side
from meta_rm.training.sampling import SamplingRun, load_cache, run_sampling
from server import __version__
from server.pipeline.domain import Message

log = logging.getLogger(__name__)

L2_GRID = (1e-3, 1e-2, 1e-1, 1.0)
CV_FOLDS = 5
RANDOM_HALF_DRAWS = 50


@dataclass(frozen=True)
class TrainOptions:
    """``grm-meta-rm train``: where samples come from and what to fit.

    Attributes:
        sampling: the sampling run (config, trajectory cache, engine options).
        out: the folder the artifact is written to.
        data_files: the preference files the items came from (their hashes go into the artifact).
        per_source: items drawn per source (recorded in the artifact).
        heldout_fraction: share of prompts kept out of training for evaluation.
        sample: sample what the cache lacks (False: train on cached trajectories only).
    """

    sampling: SamplingRun
    out: Path
    data_files: tuple[Path, ...]
    per_source: int | None = None
    heldout_fraction: float = 0.3
    sample: bool = True


@dataclass(frozen=True)
class LabelledSample:
    item_id: str
    prompt_key: str
    trajectory: Trajectory
    label: bool


def trajectories_of(record: dict[str, Any]) -> list[tuple[Trajectory, list[int]] | None]:
    """Per sample of a cache record: (trajectory, scores in the item's order), or None if unparsed."""
    messages = tuple(Message(m["role"], m["content"]) for m in record["messages"])
    responses = record["responses"]
    out: list[tuple[Trajectory, list[int]] | None] = []
    for s in record["samples"]:
        if s["status"] != "parsed" or s["scores"] is None:
            out.append(None)
            continue
        perm = s["permutation"]
        shown_scores = tuple(s["scores"][c] for c in perm)
        trajectory = Trajectory(messages, tuple(responses[c] for c in perm), s["text"], shown_scores)
        out.append((trajectory, list(s["scores"])))
    return out


def label_records(records: Sequence[dict[str, Any]]) -> list[LabelledSample]:
    """Every parsed sample of every record, labelled."""
    labelled = []
    for r in records:
        for entry in trajectories_of(r):
            if entry is not None:
                trajectory, scores = entry
                label = sample_is_correct(scores, r["preferred"])
                labelled.append(LabelledSample(r["id"], r["prompt_key"], trajectory, label))
    return labelled


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties count half); None with a single class."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return None
    order = s.argsort(kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _folds(keys: Sequence[str], n_folds: int) -> list[int]:
    unique = sorted(set(keys))
    random.Random(0).shuffle(unique)
    fold_of = {k: i % n_folds for i, k in enumerate(unique)}
    return [fold_of[k] for k in keys]


def choose_l2(train: Sequence[LabelledSample]) -> tuple[float, dict[str, float | None]]:
    """The L2 strength of best mean AUC over folds grouped by prompt."""
    folds = _folds([s.prompt_key for s in train], CV_FOLDS)
    results: dict[str, float | None] = {}
    best, best_auc = L2_GRID[-1], -1.0
    for l2 in L2_GRID:
        aucs = []
        for f in range(CV_FOLDS):
            fit = [s for s, k in zip(train, folds, strict=True) if k != f]
            val = [s for s, k in zip(train, folds, strict=True) if k == f]
            if not val or len({s.label for s in fit}) < 2:
                continue
            model = train_linear([s.trajectory for s in fit], [s.label for s in fit], l2=l2)
            a = auc(model.logits([s.trajectory for s in val]).tolist(), [s.label for s in val])
            if a is not None:
                aucs.append(a)
        mean = float(np.mean(aucs)) if aucs else None
        results[str(l2)] = mean
        if mean is not None and mean > best_auc:
            best, best_auc = l2, mean
    return best, results


def voting_accuracies(model: LinearModel, records: Sequence[dict[str, Any]], k_meta: int) -> dict[str, float]:
    """Mean pair accuracy of Voting@k, MetaRM@k and a random subset of k_meta samples."""
    plain, guided, random_half = [], [], []
    rng = random.Random(0)
    for r in records:
        entries = trajectories_of(r)
        parsed = [e for e in entries if e is not None]
        n = len(r["responses"])
        if not parsed:  # nothing voted: every response ties at zero
            plain.append(1 / n)
            guided.append(1 / n)
            random_half.append(1 / n)
            continue

        def total(chosen: Sequence[tuple[Trajectory, list[int]]], n: int = n) -> list[float]:
            return [float(sum(scores[i] for _, scores in chosen)) for i in range(n)]

        plain.append(pair_accuracy(total(parsed), r["preferred"]))
        ratings = model.logits([t for t, _ in parsed]).tolist()
        kept = select_top_k([True] * len(parsed), ratings, k_meta)
        guided.append(pair_accuracy(total([parsed[i] for i in kept]), r["preferred"]))
        draws = [rng.sample(parsed, min(k_meta, len(parsed))) for _ in range(RANDOM_HALF_DRAWS)]
        random_half.append(float(np.mean([pair_accuracy(total(d), r["preferred"]) for d in draws])))
    return {
        "voting": float(np.mean(plain)),
        "meta_rm_voting": float(np.mean(guided)),
        "random_subset_voting": float(np.mean(random_half)),
    }


def evaluate(
    model: LinearModel, heldout: Sequence[LabelledSample], records: Sequence[dict[str, Any]], k: int
) -> dict[str, Any]:
    """Held-out figures of a trained model."""
    k_meta = default_k_meta(k)
    logits = model.logits([s.trajectory for s in heldout]).tolist() if heldout else []
    labels = [s.label for s in heldout]
    accuracy = float(np.mean([(x > 0) == y for x, y in zip(logits, labels, strict=True)])) if heldout else None
    by_source: dict[str, dict[str, float]] = {}
    for source in sorted({r["source"] for r in records}):
        subset = [r for r in records if r["source"] == source]
        by_source[source] = {"items": len(subset), **voting_accuracies(model, subset, k_meta)}
    # Ties are always labelled wrong and are trivial to spot; the AUC among samples that separate the
    # responses says whether the meta RM can tell a right verdict from a wrong one.
    decisive = [i for i, s in enumerate(heldout) if len(set(s.trajectory.scores)) > 1]
    return {
        "samples": len(heldout),
        "positive_rate": float(np.mean(labels)) if labels else None,
        "tie_rate": 1 - len(decisive) / len(heldout) if heldout else None,
        "auc": auc(logits, labels),
        "auc_without_ties": auc([logits[i] for i in decisive], [labels[i] for i in decisive]),
        "accuracy": accuracy,
        "k": k,
        "k_meta": k_meta,
        "items": len(records),
        "pair_accuracy": voting_accuracies(model, records, k_meta),
        "pair_accuracy_by_source": by_source,
    }


def train_command(options: TrainOptions, items: list[PreferenceItem]) -> int:
    """``grm-meta-rm train``: sample (or reuse), split by prompt, fit, evaluate, save; the exit code."""
    config = options.sampling.config
    if options.sample:
        records = asyncio.run(run_sampling(options.sampling, items))
    else:
        cached = load_cache(options.sampling.trajectories, config)
        records = [cached[i.id] for i in items if i.id in cached]
        if len(records) < len(items):
            log.warning("--no-sample: %d of %d items have cached samples", len(records), len(items))
    by_id = {i.id: i for i in items}
    train_records = [r for r in records if not heldout_side(by_id[r["id"]], options.heldout_fraction)]
    heldout_records = [r for r in records if heldout_side(by_id[r["id"]], options.heldout_fraction)]
    train, heldout = label_records(train_records), label_records(heldout_records)
    log.info(
        "train: %d items, %d parsed samples; held out: %d items, %d samples",
        len(train_records),
        len(train),
        len(heldout_records),
        len(heldout),
    )
    if len({s.label for s in train}) < 2:
        log.error("the training samples are all of one class (or none parsed); nothing to learn")
        return 1
    l2, cv = choose_l2(train)
    model = train_linear([s.trajectory for s in train], [s.label for s in train], l2=l2)
    report = evaluate(model, heldout, heldout_records, config.k)
    model.metadata = {
        "grm_model": config.model,
        "template": config.template,
        "k": config.k,
        "temperature": config.temperature,
        "max_tokens": config.max_tokens,
        "format_guidance": config.format_guidance,
        "seed": config.seed,
        "per_source": options.per_source,
        "heldout_fraction": options.heldout_fraction,
        "data_files": {p.name: file_sha256(p) for p in options.data_files},
        "train": {
            "items": len(train_records),
            "samples": len(train),
            "positive_rate": float(np.mean([s.label for s in train])),
        },
        "l2": l2,
        "cv_auc_by_l2": cv,
        "heldout": report,
        "trained_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "grm_serve_version": __version__,
    }
    path = model.save(options.out)
    _print_report(model.metadata, path)
    return 0


def _print_report(meta: dict[str, Any], path: Any) -> None:
    h = meta["heldout"]
    pa = h["pair_accuracy"]

    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    print(f"meta RM saved to {path}")
    print(
        f"train: {meta['train']['items']} items, {meta['train']['samples']} samples, "
        f"positive rate {meta['train']['positive_rate']:.3f}, l2 {meta['l2']}"
    )
    print(f"held out: {h['items']} items, {h['samples']} samples, positive rate {fmt(h['positive_rate'])}")
    print(
        f"  meta-RM AUC {fmt(h['auc'])} (without tied samples {fmt(h['auc_without_ties'])}), "
        f"accuracy {fmt(h['accuracy'])}, tied samples {fmt(h['tie_rate'])}"
    )
    print(
        f"  pair accuracy  Voting@{h['k']} {fmt(pa['voting'])}  MetaRM@{h['k']} (k_meta={h['k_meta']}) "
        f"{fmt(pa['meta_rm_voting'])}  random {h['k_meta']} of {h['k']} {fmt(pa['random_subset_voting'])}"
    )
    for source, row in h["pair_accuracy_by_source"].items():
        print(
            f"  {source:<18} n={row['items']:<3} voting {fmt(row['voting'])}  meta-RM {fmt(row['meta_rm_voting'])}"
            f"  random half {fmt(row['random_subset_voting'])}"
        )
