"""The study's statistics and readings: pure functions of the raw results of `runs`.

`summarize(results)` turns the runs of `study.json` into means and standard deviations over
seeds per set-up and mode, gradient fidelity per stage, and training curves. The small
functions after it read the summary the way the report words it (a gap, a verdict, which
way a trend goes); they return figures and keys, never prose.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from train.study.config import (
    CHAIN_DEFAULTS,
    CHAIN_DRAINED,
    MODES,
    MOTION_COMPARED,
    MOTION_MODELS,
    MOTION_WAYS,
    REALTIME_SKIP_MODES,
    SKIP_MODES,
    SKIP_RUNS,
    Point,
    fix_baseline,
    fix_modes,
    fix_points,
    fixes,
    realtime_ways,
    skip_points,
)

ACCURACY_TOLERANCE = 1.0  # points: the aim for stride 1
MSE_TOLERANCE = 0.10  # relative: the aim for the reconstruction
REALTIME_BOUND = 1.0  # Sideways ÷ BP real-time MSE: what it must not exceed ...
REALTIME_AIM = 0.8  # ... and what it aims at
SKIP_REALTIME_BOUND = 0.8  # the U-Net's (section 10), the paper's Sideways ÷ BP ...
SKIP_REALTIME_AIM = 0.7  # ... and its aim
TREND_THRESHOLD = 0.02  # change of the mean cosine along training that counts as a trend


def mean_std(values: Sequence[float]) -> dict:
    """{"mean", "std", "n"}: the sample standard deviation (0 for a single value; a NaN
    mean for none, without numpy's warning)."""
    if not len(values):
        return dict(mean=math.nan, std=0.0, n=0)
    values = np.asarray(values, np.float64)
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return dict(mean=float(np.mean(values)), std=std, n=len(values))


def mean_std_curve(curves: Sequence[Sequence[float]]) -> dict:
    """Per-epoch mean and sample standard deviation of several equally long curves."""
    table = np.asarray(curves, np.float64)
    std = table.std(axis=0, ddof=1) if len(table) > 1 else np.zeros(table.shape[1])
    return dict(mean=table.mean(axis=0).tolist(), std=std.tolist())


def column_means(table: np.ndarray) -> list[float]:
    """Means over rows, NaN for a column without a finite value."""
    means = []
    for column in np.asarray(table, np.float64).T:
        finite = column[~np.isnan(column)]
        means.append(float(finite.mean()) if len(finite) else math.nan)
    return means


def fidelity_means(fidelity: list[dict]) -> dict:
    """A run's fidelity history -> per-stage cosine and norm ratio averaged over its steps."""
    cosine = np.asarray([f["cosine"] for f in fidelity], np.float64)
    ratio = np.asarray([f["norm_ratio"] for f in fidelity], np.float64)
    return dict(
        cosine=column_means(cosine),
        norm_ratio=column_means(ratio),
        cosine_mean=float(np.nanmean([f["cosine_mean"] for f in fidelity])),
        norm_ratio_mean=float(np.nanmean([f["norm_ratio_mean"] for f in fidelity])),
    )


def fidelity_summary(runs: list[dict]) -> dict:
    """Per-stage fidelity averaged over each run's steps, then over runs (seeds)."""
    per_run = [fidelity_means(r["fidelity"]) for r in runs if r.get("fidelity")]
    if not per_run:
        return {}
    return dict(
        cosine=column_means(np.asarray([p["cosine"] for p in per_run])),
        norm_ratio=column_means(np.asarray([p["norm_ratio"] for p in per_run])),
        cosine_mean=mean_std([p["cosine_mean"] for p in per_run]),
        norm_ratio_mean=mean_std([p["norm_ratio_mean"] for p in per_run]),
        measurements=len(runs[0]["fidelity"]),
    )


def fidelity_by_step(runs: list[dict]) -> dict:
    """The mean cosine over stages at each measurement step, averaged over runs."""
    histories = [r["fidelity"] for r in runs if r.get("fidelity")]
    if not histories:
        return dict(steps=[], cosine_mean=[])
    count = min(len(h) for h in histories)
    table = np.asarray([[f["cosine_mean"] for f in h[:count]] for h in histories], np.float64)
    return dict(steps=[f["step"] for f in histories[0][:count]], cosine_mean=column_means(table))


def summarize(results: dict) -> dict:
    """Means and standard deviations over seeds, per point, per mode, of a finished study."""
    runs, s = results["runs"], results["settings"]

    def select(**where) -> list[dict]:
        return [r for r in runs if all(r.get(k) == v for k, v in where.items())]

    def pair(**where) -> dict:
        point = {
            mode: dict(accuracy=mean_std([r["accuracy"] for r in select(mode=mode, **where)]))
            for mode in MODES
        }
        point["fidelity"] = fidelity_summary(select(mode="sideways", **where))
        by_seed = {m: {r["seed"]: r["accuracy"] for r in select(mode=m, **where)} for m in MODES}
        point["paired_gaps"] = [
            100 * (by_seed["sideways"][seed] - bp)
            for seed, bp in sorted(by_seed["bp"].items())
            if seed in by_seed["sideways"]
        ]
        return point

    base = dict(
        experiment="classification",
        clip_length=s["clip_length"],
        speed=s["speed"],
        epochs=s["epochs"],
    )
    stride = {}
    for x in s["strides"]:
        where = dict(base, stride=x, num_stages=s["num_stages"])
        stride[str(x)] = pair(**where)
        for mode in MODES:
            chosen = select(mode=mode, **where)
            stride[str(x)][mode]["curves"] = {
                key: mean_std_curve([r["history"][key] for r in chosen])
                for key in ("loss", "val_accuracy")
            }
        stride[str(x)]["fidelity_by_step"] = fidelity_by_step(select(mode="sideways", **where))
    depth = {
        str(d): pair(**dict(base, stride=s["depth_stride"], num_stages=d)) for d in s["depths"]
    }
    at_stride_1 = dict(base, stride=1, num_stages=s["num_stages"])
    clip_length = {str(t): pair(**dict(at_stride_1, clip_length=t)) for t in s["clip_lengths"]}
    controls = {"baseline": pair(**at_stride_1)}
    if s["static_control"]:
        controls["static"] = pair(**dict(at_stride_1, speed=0.0))
    if s["long_epochs"]:
        controls["long"] = pair(**dict(at_stride_1, epochs=s["long_epochs"]))
    reconstruction = {
        mode: {
            key: mean_std([r[key] for r in select(experiment="reconstruction", mode=mode)])
            for key in ("mse", "psnr")
        }
        for mode in MODES
    }
    return dict(
        stride=stride,
        depth=depth,
        clip_length=clip_length,
        controls=controls,
        reconstruction=reconstruction,
        fixes=summarize_fixes(runs, s),
        motion=summarize_motion(runs, s),
        realtime=summarize_realtime(runs),
        skips=summarize_skips(runs, s),
    )


def summarize_skips(runs: list[dict], settings: dict) -> dict:
    """Experiment 10: the chain against its skip-connected model in each skip mode.

    Per skip point ("<stride>/<stages>"), for "chain" (`vgg_classifier`: sections 1 and 2,
    and section 7's fixes CHAIN_DRAINED and CHAIN_DEFAULTS as its "drained" and "exact")
    and "skips" (`skip_classifier`):
    `skip_triple` of the test accuracies; with `skip_recon`, "reconstruction" the same for
    "chain" (`encoder_decoder`: section 3, and a reconstruction fix CHAIN_DEFAULTS if run)
    and "skips" (`unet`) on the test MSE, its differences as ratios. Empty when the
    settings have no skip points.
    """
    points = skip_points(settings)
    if not points:
        return {}

    def got(experiment: str, key: str, mode: str, fix=None, point: Point | None = None):
        return {
            r["seed"]: r[key]
            for r in runs
            if r["experiment"] == experiment
            and r["mode"] == mode
            and r.get("fix") == fix
            and (point is None or all(r.get(k) == v for k, v in point._asdict().items()))
        }

    def chain(experiment: str, fixed: str, key: str, point: Point | None = None) -> dict:
        return dict(
            bp=got(experiment, key, "bp", None, point),
            sideways=got(experiment, key, "sideways", None, point),
            drained=got(fixed, key, "sideways", CHAIN_DRAINED, point),
            exact=got(fixed, key, "sideways", CHAIN_DEFAULTS, point),
        )

    def skips(experiment: str, key: str, point: Point | None = None) -> dict:
        return {
            name: got(experiment, key, mode, fix and fix[0], point)
            for name, (mode, fix) in SKIP_RUNS.items()
        }

    summary = dict(points={})
    for point in points:
        summary["points"][f"{point.stride}/{point.num_stages}"] = dict(
            chain=skip_triple(chain("classification", "fix", "accuracy", point), ratio=False),
            skips=skip_triple(skips("skips", "accuracy", point), ratio=False),
        )
    realtime = summarize_skip_realtime(runs)
    if realtime:
        summary["realtime"] = realtime
    if settings.get("skip_recon"):
        summary["reconstruction"] = dict(
            chain=skip_triple(chain("reconstruction", "reconstruction_fix", "mse"), ratio=True),
            skips=skip_triple(skips("skips_reconstruction", "mse"), ratio=True),
        )
    return summary


def skip_triple(values: dict[str, dict[int, float]], ratio: bool) -> dict:
    """One model's runs in the skip modes ({mode: {seed: figure}}): per mode the figure
    (mean ± std over seeds), and per mode but BP its difference to BP, "<mode>_vs_bp".

    A difference in accuracy (`ratio` False) is in points, seed by seed over the seeds
    both modes ran: "paired" its mean ± std. In MSE (`ratio` True) it is the ratio of the
    mean figures, and "paired" the per-seed ratios' mean ± std. "spread" is what it is
    read against: the larger of the two modes' standard deviations (in points, or relative
    to their means); NaN where a mode has no run.
    """
    modes = [m for m in SKIP_MODES if m in values]
    triple = {m: mean_std(list(values[m].values())) if values[m] else dict(n=0) for m in modes}
    bp = values["bp"]
    for mode in modes[1:]:
        seeds = [seed for seed in sorted(values[mode]) if seed in bp]
        if not seeds:
            triple[f"{mode}_vs_bp"] = dict(value=math.nan, paired=dict(n=0), spread=math.nan)
            continue
        if ratio:
            per_seed = [values[mode][seed] / bp[seed] for seed in seeds]
            value = triple[mode]["mean"] / triple["bp"]["mean"]
            spread = max(triple[m]["std"] / triple[m]["mean"] for m in ("bp", mode))
        else:
            per_seed = [100 * (values[mode][seed] - bp[seed]) for seed in seeds]
            value = float(np.mean(per_seed))
            spread = 100 * max(triple[m]["std"] for m in ("bp", mode))
        triple[f"{mode}_vs_bp"] = dict(
            value=value, paired=mean_std(per_seed), per_seed=per_seed, spread=spread
        )
    return triple


def stream_rates(measured: dict) -> dict:
    """The real-time setting from a "realtime_fps" record (or "skips_realtime_fps"): each
    method's frames/s (the fastest of all its timed rounds: a method's rounds vary up to
    twofold on a shared machine, from interruptions that are not the method's), the
    stream's rate (the fastest method's), the fraction of the stream each keeps up with,
    and the slowest method ("" when all run at one rate)."""
    fps = {m: float(np.max(np.concatenate(rounds))) for m, rounds in measured["fps"].items()}
    rate = max(fps.values())
    keep = {m: min(1.0, fps[m] / rate) for m in fps}
    slower = min(fps, key=fps.get) if len(set(fps.values())) > 1 else ""
    return dict(fps=fps, rate=rate, keep=keep, slower=slower)


def stream_summary(runs: list[dict], experiment: str, ways: dict) -> tuple[dict, dict]:
    """What both real-time settings report: `stream_rates`' figures from the last
    "<experiment>_fps" record, with its "threads", "engine" and "clip", and per method of
    `ways` ({name: (mode, fix)}, `config.realtime_ways`) its stream runs' test MSE and PSNR
    (mean ± std), "seeds" and "clips_taken".

    Returns (that summary, {name: its runs}); ({}, {}) before the rates are measured.
    """
    measured = [r for r in runs if r["experiment"] == f"{experiment}_fps"]
    if not measured:
        return {}, {}
    summary = dict(stream_rates(measured[-1]), threads=measured[-1]["threads"])
    summary.update(engine=measured[-1]["engine"], clip=measured[-1]["clip"])
    chosen = {
        name: [
            r
            for r in runs
            if r["experiment"] == experiment
            and r["mode"] == mode
            and r.get("fix") == (fix and fix[0])
        ]
        for name, (mode, fix) in ways.items()
    }
    for name, ran in chosen.items():
        summary[name] = dict(
            mse=mean_std([r["mse"] for r in ran]) if ran else dict(n=0),
            psnr=mean_std([r["psnr"] for r in ran]) if ran else dict(n=0),
            seeds=sorted(r["seed"] for r in ran),
            clips_taken=ran[0]["clips_taken"] if ran else 0,
        )
    return summary, chosen


def summarize_realtime(runs: list[dict]) -> dict:
    """Experiment 9, the real-time setting: `stream_summary` of BP and the paper's
    Sideways on the footage model, with per mode "curve" (the test MSE after each epoch
    of the stream, mean ± std over seeds), "stream_clips", "epochs", and "ratio"
    (Sideways ÷ BP mean MSE; NaN until both modes have runs). {} before the frame rates
    are measured.
    """
    summary, done = stream_summary(runs, "realtime", realtime_ways(skips=False))
    if not summary:
        return {}
    for mode, chosen in done.items():
        curves = [r["history"]["val_loss"] for r in chosen]
        summary[mode]["curve"] = mean_std_curve(curves) if chosen else {}
    ran = [r for chosen in done.values() for r in chosen]
    summary["stream_clips"] = ran[0]["stream_clips"] if ran else 0
    summary["epochs"] = len(ran[0]["history"]["val_loss"]) if ran else 0
    both = all(summary[m]["mse"]["n"] for m in MODES)
    summary["ratio"] = (
        summary["sideways"]["mse"]["mean"] / summary["bp"]["mse"]["mean"] if both else math.nan
    )
    return summary


def summarize_skip_realtime(runs: list[dict]) -> dict:
    """Experiment 10's real-time setting: `stream_summary` of the U-Net on the stream of
    section 9, in the skip modes at the rate of the fastest of them, with per mode
    "stream_clips", per mode but BP "<mode>_vs_bp" (its mean test MSE ÷ BP's, with the
    per-seed ratios' mean ± std as "paired"; NaN until both ran), and "chain": section
    9's Sideways ÷ BP. {} before its frame rates are measured.
    """
    summary, done = stream_summary(runs, "skips_realtime", realtime_ways(skips=True))
    if not summary:
        return {}
    for name, chosen in done.items():
        summary[name]["stream_clips"] = chosen[0]["stream_clips"] if chosen else 0
    mse = {name: {r["seed"]: r["mse"] for r in chosen} for name, chosen in done.items()}
    triple = skip_triple(mse, ratio=True)
    for name in REALTIME_SKIP_MODES[1:]:
        summary[f"{name}_vs_bp"] = triple[f"{name}_vs_bp"]
    chain = summarize_realtime(runs)
    summary["chain"] = chain.get("ratio", math.nan) if chain else math.nan
    return summary


def summarize_motion(runs: list[dict], settings: dict) -> dict:
    """Experiment 8: per task and model, BP, the paper's Sideways and SidewaysModel's
    defaults (mean ± std, gap to BP, paired gaps).

    Returns {"<task>": {"<model>": {"bp": ..., "sideways": ..., "defaults": ..., "gap":
    points, "paired_gaps": [...], "defaults_gap": ..., "defaults_paired_gaps": [...]}}};
    empty when the settings try no motion task.
    """
    summary = {}
    ways = {fix or mode: (mode, fix) for mode, fix in MOTION_WAYS}  # bp, sideways, defaults
    for task in settings.get("motion_tasks", ()):  # absent from older study.json
        summary[task] = {}
        for model in MOTION_MODELS:
            got = {
                name: {
                    r["seed"]: r["accuracy"]
                    for r in runs
                    if r["experiment"] == "motion"
                    and (r["task"], r["model"], r["mode"], r.get("fix")) == (task, model, *way)
                }
                for name, way in ways.items()
            }
            entry = {name: dict(accuracy=mean_std(list(got[name].values()))) for name in ways}
            bp = entry["bp"]["accuracy"]["mean"]  # NaN where none ran
            for name, prefix in MOTION_COMPARED:
                entry[f"{prefix}gap"] = 100 * (entry[name]["accuracy"]["mean"] - bp)
                entry[f"{prefix}paired_gaps"] = [
                    100 * (got[name][seed] - accuracy)
                    for seed, accuracy in sorted(got["bp"].items())
                    if seed in got[name]
                ]
            summary[task][model] = entry
    return summary


def summarize_fixes(runs: list[dict], settings: dict) -> dict:
    """Experiment 6: per point, BP, Sideways and each fix (mean ± std, and the gap to BP
    over the seeds both ran: its mean and each seed's).

    A fix that changes the data (streaming) is also run with BP, and its Sideways gap is
    taken to that BP; other fixes are compared with the plain BP runs.

    Returns {"points": {"<stride>/<stages>": {"bp": ..., "sideways": ..., "<fix>": ...,
    "columns": [...]}},
    "reconstruction": {"<fix>": {"mse": ..., "ratio": Sideways-with-fix MSE / BP MSE}}};
    empty when the settings try no fix.
    """
    s = settings
    names = [name for name, _ in fixes(s)] if "fix_stashes" in s else []
    if not names:
        return {}

    def accuracies(experiment: str, mode: str, point: Point, fix=None) -> dict[int, float]:
        return {
            r["seed"]: r["accuracy"]
            for r in runs
            if r["experiment"] == experiment
            and r["mode"] == mode
            and r.get("fix") == fix
            and all(r.get(k) == v for k, v in point._asdict().items())
        }

    points = {}
    for point in fix_points(s):
        bp = accuracies("classification", "bp", point)
        row = {"bp": dict(accuracy=mean_std(list(bp.values())))}
        variants = [("sideways", "classification", "sideways", None, bp)]
        for name, fields in fixes(s):
            fix_bp = accuracies("fix", "bp", point, fix_baseline(name, fields))
            if "bp" in fix_modes(fields):  # it changes the data or rate: BP's is its baseline
                variants.append((f"BP, {name}", "fix", "bp", name, bp))
            variants.append((name, "fix", "sideways", name, fix_bp or bp))
        for label, experiment, mode, fix, baseline in variants:
            got = accuracies(experiment, mode, point, fix)
            paired = [100 * (got[k] - baseline[k]) for k in sorted(got) if k in baseline]
            # Over the seeds both ran: a fix run on 3 seeds was set against BP's mean of 5.
            gap = float(np.mean(paired)) if paired else math.nan
            row[label] = dict(accuracy=mean_std(list(got.values())), gap=gap, paired_gaps=paired)
        row["columns"] = [label for label, *_ in variants]
        points[f"{point.stride}/{point.num_stages}"] = row
    reconstruction = {}
    bp = [r["mse"] for r in runs if r["experiment"] == "reconstruction" and r["mode"] == "bp"]
    for name in s.get("fix_recon", ()):
        mse = [
            r["mse"] for r in runs if r["experiment"] == "reconstruction_fix" and r["fix"] == name
        ]
        if mse and bp:
            reconstruction[name] = dict(mse=mean_std(mse), ratio=float(np.mean(mse) / np.mean(bp)))
    depths = ["0"] + [str(d) for d in s["fix_stashes"]]
    stages = sorted({p.num_stages for p in fix_points(s)})
    memory = {str(n): {d: stash_bytes(s, n, d) for d in depths} for n in stages}
    return dict(names=names, points=points, reconstruction=reconstruction, stash_memory=memory)


def stash_bytes(settings: dict, num_stages: int, depth: str) -> int:
    """Bytes the stash of `depth` ("0", "2", "full") adds to the study's classifier (float32
    stage inputs of one step's batch): what a pipeline keeps beyond the paper's Sideways."""
    import keras

    from keras_sideways import models
    from keras_sideways.engines import ticks

    size = settings["image_size"]
    x = keras.KerasTensor((settings["batch_size"], size, size, 1))
    inputs = []  # values per lane of each stage's input
    for stage in models.vgg_classifier(10, num_stages, settings["width"]):
        inputs.append(int(np.prod(x.shape[1:])))
        x = stage.compute_output_spec(x)
    stash = ticks.stash_depths(num_stages, int(depth) if depth.isdigit() else depth)
    return int(sum(d * n for d, n in zip(stash, inputs)) * settings["batch_size"] * 4)


# ------------------------------------------------------------------- readings of a summary
def accuracy_gap(point: dict) -> float:
    """Sideways minus BP mean test accuracy, in points (percent)."""
    return 100 * (point["sideways"]["accuracy"]["mean"] - point["bp"]["accuracy"]["mean"])


def spread(point: dict) -> float:
    """The larger of the two modes' seed-to-seed standard deviations, in points."""
    return 100 * max(point[m]["accuracy"]["std"] for m in MODES)


def mse_change(reconstruction: dict) -> float:
    """Sideways' test MSE relative to BP's: +0.05 is 5% worse."""
    bp, sideways = reconstruction["bp"]["mse"]["mean"], reconstruction["sideways"]["mse"]["mean"]
    return sideways / bp - 1.0


def verdict(gap: float, tolerance: float = ACCURACY_TOLERANCE) -> str:
    """Where a Sideways-minus-BP gap in points falls: "matches", "behind" or "ahead"."""
    if abs(gap) <= tolerance:
        return "matches"
    return "behind" if gap < 0 else "ahead"


def against_spread(point: dict, seeds: int, tolerance: float = ACCURACY_TOLERANCE) -> str:
    """A gap that is no match against the seed-to-seed spread: "inside" or "beyond"; else ""."""
    gap = accuracy_gap(point)
    if seeds < 2 or abs(gap) <= tolerance:
        return ""
    return "inside" if abs(gap) <= spread(point) else "beyond"


def by_verdict(gaps: dict) -> dict[str, list]:
    """The keys of `gaps` ({key: gap in points}) grouped by verdict, in their order."""
    groups = {"matches": [], "behind": [], "ahead": []}
    for key, gap in gaps.items():
        groups[verdict(gap)].append(key)
    return groups


def trend(values: Sequence[float], threshold: float = TREND_THRESHOLD) -> str:
    """How the last of `values` compares with the first: "down", "up" or "flat"."""
    change = values[-1] - values[0]
    if change < -threshold:
        return "down"
    return "up" if change > threshold else "flat"


def fill_cost(short: dict, long: dict, tolerance: float = ACCURACY_TOLERANCE) -> str:
    """Whether short clips cost Sideways more than long ones: "shown", "noise" or "none".

    "shown" when the short-clip gap is below the long-clip gap by more than the tolerance
    and the seed-to-seed spread, "noise" when only by more than the tolerance.
    """
    difference = accuracy_gap(long) - accuracy_gap(short)
    if difference > max(tolerance, spread(short), spread(long)):
        return "shown"
    return "noise" if difference > tolerance else "none"


def longer_training(baseline: dict, long: dict, tolerance: float = ACCURACY_TOLERANCE) -> str:
    """What training longer does to the gap: "narrows", "bias" or "undecided".

    "bias" when a gap beyond the seed-to-seed spread remains, "undecided" when what remains
    is within it.
    """
    gap = accuracy_gap(long)
    if gap > accuracy_gap(baseline) + tolerance:
        return "narrows"
    return "bias" if -gap > max(spread(long), tolerance) else "undecided"


def weighted_stages(points: dict, keys: Sequence) -> list[int]:
    """Stages with a finite cosine at some point (the stages with weights)."""
    cosines = [points[str(x)]["fidelity"].get("cosine", []) for x in keys]
    count = max(len(c) for c in cosines)
    return [k for k in range(count) if any(not math.isnan(c[k]) for c in cosines if len(c) > k)]
