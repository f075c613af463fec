"""The race's figures and tables, from its raw results (`race.json`; pure: no TensorFlow).

A contender's time to the target at one point and seed is the training seconds at which
its validation accuracy first reaches the target (`summary.time_to`: interpolated between
epochs), in the budget that gets there soonest; a contender that gets there in no budget
is "never", and its budget is the one with the highest final validation accuracy. Its
frames/s and final test accuracy are those of that budget's run. `summarize` formats
every figure once, for the page and the terminal.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from train.bench.summary import Summary, Table, machine_figures, time_to

NAMES = {"bp": "BP", "sideways": "Sideways (defaults)", "sideways_paper": "Sideways (paper)"}


def choose_budget(runs: Sequence[Mapping], target: float) -> dict:
    """The run of one contender (at one point and seed) that counts, among its budgets.

    Args:
        runs: its runs, one per epoch budget: `budget`, cumulative training `seconds` and
            `val_accuracy` at the end of each epoch.
        target: the validation accuracy to reach.

    Returns:
        `run` (the one that counts), `time_to_target` (seconds, None: never) and
        `by_budget` ({budget: its time to the target or None}). The run that reaches the
        target soonest counts; where none does, the one with the highest final validation
        accuracy. Ties go to the smaller budget.
    """
    if not runs:
        raise ValueError("choose_budget needs at least one run; got none.")
    ordered = sorted(runs, key=lambda r: r["budget"])
    times = {r["budget"]: time_to(r["seconds"], r["val_accuracy"], target) for r in ordered}
    reached = [r for r in ordered if times[r["budget"]] is not None]
    if reached:
        run = min(reached, key=lambda r: times[r["budget"]])  # min keeps the first of ties
    else:
        run = max(ordered, key=lambda r: (r["val_accuracy"][-1], -r["budget"]))
    return dict(run=run, time_to_target=times[run["budget"]], by_budget=times)


def contender_figures(runs: Sequence[Mapping], target: float) -> dict:
    """`choose_budget`, and the counted run's threads, frames/s and final accuracies."""
    chosen = choose_budget(runs, target)
    run = chosen["run"]
    epochs = len(run["seconds"])
    return dict(
        budget=run["budget"],
        time_to_target=chosen["time_to_target"],
        by_budget=chosen["by_budget"],
        threads=run["threads"],
        fps=epochs * run["frames_per_epoch"] / run["seconds"][-1],
        val_accuracy=run["val_accuracy"][-1],
        test_accuracy=run["test_accuracy"],
        run=run,
    )


def _ratio(value: float | None, bp: float | None) -> float | None:
    return None if value is None or bp is None else value / bp


def seed_race(runs: Sequence[Mapping], target: float) -> dict:
    """One point and seed: `contender_figures` of each contender, and each one's time to
    the target and frames/s over BP's (`time_ratio` None where either never got there)."""
    names = list(dict.fromkeys(r["contender"] for r in runs))
    contenders = {
        name: contender_figures([r for r in runs if r["contender"] == name], target)
        for name in names
    }
    bp = contenders["bp"]
    for c in contenders.values():
        c["time_ratio"] = _ratio(c["time_to_target"], bp["time_to_target"])
        c["fps_ratio"] = c["fps"] / bp["fps"]
    return contenders


def _mean_std(values: Sequence[float]) -> tuple[float | None, float]:
    if not values:
        return None, 0.0
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def point_race(seeds: Mapping[int, Mapping]) -> dict:
    """Over the seeds of one point ({seed: `seed_race`}), per contender: the mean and std
    of its time ratio (over the seeds where it and BP reached the target), how many seeds
    it reached the target at, and the mean and std of its frames/s ratio and test
    accuracy."""
    names = list(next(iter(seeds.values())))
    figures = {}
    for name in names:
        runs = [seed[name] for seed in seeds.values()]
        ratio = _mean_std([c["time_ratio"] for c in runs if c["time_ratio"] is not None])
        fps = _mean_std([c["fps_ratio"] for c in runs])
        test = _mean_std([c["test_accuracy"] for c in runs])
        figures[name] = dict(
            time_ratio=ratio[0],
            time_ratio_std=ratio[1],
            compared=sum(c["time_ratio"] is not None for c in runs),
            reached=sum(c["time_to_target"] is not None for c in runs),
            seeds=len(runs),
            fps_ratio=fps[0],
            fps_ratio_std=fps[1],
            test_accuracy=test[0],
            test_accuracy_std=test[1],
        )
    return figures


def _key(run: Mapping) -> tuple[int, int]:
    return run["image_size"], run["num_stages"]


def race(raw: Mapping) -> list[dict]:
    """Per point asked for (`raw["points"]`), in order: its seeds whose every run is in
    (`seed_race` of each) and `point_race` over them; the missing (seed, contender, budget)
    runs."""
    points, budgets = raw["points"], raw["workload"]["budgets"]
    names = list(dict.fromkeys(r["contender"] for r in raw["runs"])) or ["bp"]
    target = raw["workload"]["target"]
    results = []
    for size in points["image_sizes"]:
        for stages in points["stages"]:
            here = [r for r in raw["runs"] if _key(r) == (size, stages)]
            seeds, missing = {}, []
            for seed in points["seeds"]:
                runs = [r for r in here if r["seed"] == seed]
                done = {(r["contender"], r["budget"]) for r in runs}
                lacking = [(seed, n, b) for n in names for b in budgets if (n, b) not in done]
                missing += lacking
                if not lacking:
                    seeds[seed] = seed_race(runs, target)
            results.append(
                dict(
                    image_size=size,
                    num_stages=stages,
                    seeds=seeds,
                    over_seeds=point_race(seeds) if seeds else None,
                    missing=missing,
                )
            )
    return results


def _or_never(value: float | None, spec: str, never: str = "never") -> str:
    return never if value is None else format(value, spec)


def _plus_minus(mean: float | None, std: float, count: int, spec: str = ".2f") -> str:
    if mean is None:
        return "–"
    return format(mean, spec) if count == 1 else f"{format(mean, spec)} ± {format(std, spec)}"


def _threads(setting: str) -> str:
    return setting.replace(",", ", ")


def _time_ratio(c: Mapping, bp: Mapping) -> str:
    if c["time_to_target"] is None:
        return "never"
    if bp["time_to_target"] is None:
        return "BP never"
    return f"{c['time_ratio']:.2f}"


def runs_table(points: Sequence[Mapping]) -> Table:
    """Per point, seed and contender: its threads, the budget that counts, its time to the
    target in each budget and in that one, frames/s, final accuracies and ratios to BP."""
    rows = []
    for point in points:
        for seed, contenders in point["seeds"].items():
            bp = contenders["bp"]
            for name, c in contenders.items():
                by_budget = ", ".join(
                    f"{b}: {_or_never(t, '.1f')}" for b, t in c["by_budget"].items()
                )
                rows.append(
                    (
                        str(point["image_size"]),
                        str(point["num_stages"]),
                        str(seed),
                        NAMES.get(name, name),
                        _threads(c["threads"]),
                        by_budget,
                        str(c["budget"]),
                        _or_never(c["time_to_target"], ".1f"),
                        f"{c['fps']:.1f}",
                        f"{c['val_accuracy']:.3f}",
                        f"{c['test_accuracy']:.3f}",
                        _time_ratio(c, bp),
                        f"{c['fps_ratio']:.2f}",
                    )
                )
    header = (
        "image (px)",
        "stages",
        "seed",
        "contender",
        "threads",
        "to target by budget (epochs: s)",
        "budget",
        "to target (s)",
        "frames/s",
        "validation accuracy",
        "test accuracy",
        "time ÷ BP",
        "frames/s ÷ BP",
    )
    return Table(header, tuple(rows))


def headline_table(points: Sequence[Mapping]) -> Table:
    """Per point and contender, over the seeds: time ratio, seeds that reached the target,
    frames/s ratio and test accuracy (mean ± std)."""
    rows = []
    for point in points:
        over = point["over_seeds"]
        if over is None:
            continue
        for name, c in over.items():
            time_ratio = _plus_minus(c["time_ratio"], c["time_ratio_std"], c["compared"])
            if not c["compared"]:  # at no seed did both get there
                time_ratio = "never" if not c["reached"] else "BP never"
            elif name != "bp" and c["compared"] < c["seeds"]:
                time_ratio += f" ({c['compared']} of {c['seeds']} seeds)"
            rows.append(
                (
                    str(point["image_size"]),
                    str(point["num_stages"]),
                    NAMES.get(name, name),
                    time_ratio,
                    f"{c['reached']} of {c['seeds']}",
                    _plus_minus(c["fps_ratio"], c["fps_ratio_std"], c["seeds"]),
                    _plus_minus(c["test_accuracy"], c["test_accuracy_std"], c["seeds"], ".3f"),
                )
            )
    header = (
        "image (px)",
        "stages",
        "contender",
        "time to target ÷ BP",
        "reached",
        "frames/s ÷ BP",
        "test accuracy",
    )
    return Table(header, tuple(rows))


def _settings(raw: Mapping, name: str) -> str:
    """How Sideways contender `name` ran at each depth, from its runs' records: the inputs
    each stage stashes, and whether the clip was filled and drained."""
    seen = {}
    for run in raw["runs"]:
        s = run.get("sideways")
        if run["contender"] == name and s is not None:
            drained = "filled and drained" if s["drain"] else "not drained"
            exact = ": BP's gradient" if s["exact"] else ""
            seen[f"at {run['num_stages']} stages, stash {s['stash']}, {drained}{exact}"] = None
    return "; ".join(seen) or "not run yet"


def _missing(points: Sequence[Mapping]) -> str:
    lines = []
    for point in points:
        seeds = sorted({seed for seed, _, _ in point["missing"]})
        if seeds:
            lines.append(
                f"{point['image_size']} px, {point['num_stages']} stages: seeds "
                + ", ".join(map(str, seeds))
            )
    return "; ".join(lines)


def summarize(raw: Mapping) -> Summary:
    """Every figure and table of the page and the terminal summary, formatted."""
    workload = raw["workload"]
    points = race(raw)
    figures = dict(
        **machine_figures(raw),
        target=f"{workload['target']:.2f}",
        budgets=", ".join(map(str, workload["budgets"])),
        train_clips=str(workload["train_clips"]),
        val_clips=str(workload["val_clips"]),
        test_clips=str(workload["test_clips"]),
        digits_variant=repr(workload["digits_variant"]),
        thread_settings="; ".join(f"{i}, {j}" for i, j in workload["thread_settings"]),
        image_sizes=", ".join(map(str, raw["points"]["image_sizes"])),
        stages=", ".join(map(str, raw["points"]["stages"])),
        seeds=", ".join(map(str, raw["points"]["seeds"])),
        sideways_settings=_settings(raw, "sideways"),
        paper_settings=_settings(raw, "sideways_paper"),
        processes="a fresh process for each run"
        if workload.get("process_per_run", True)
        else "its budgets one after another in one process (a new model each)",
        missing=_missing(points),
    )
    tables = dict(headline=headline_table(points), runs=runs_table(points))
    conditions = dict(missing=bool(figures["missing"]), sweep=len(workload["thread_settings"]) > 1)
    conditions["no_sweep"] = not conditions["sweep"]
    return Summary(figures, tables, conditions)
