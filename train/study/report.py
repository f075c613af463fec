"""docs/study.md from the study's results: report.md.template filled with their figures.

Every figure is read from the results and their summary (`summary.summarize`); the words
are the template's. Where the wording follows the numbers, this module only picks which
of the template's sentences applies (`summary.verdict`, `summary.trend`, ...).
"""

from __future__ import annotations

import math
import os
import re
import string
from collections.abc import Sequence
from pathlib import Path

from keras_sideways.engines import ticks
from train.results import write_text
from train.study import summary as stats
from train.study.config import MOTION_COMPARED, SKIP_MODES, clip_plan

TEMPLATE = Path(__file__).with_name("report.md.template")
_FRAGMENT = re.compile(r"^<!-- fragment: (\w+) -->$", re.MULTILINE)


def load_template(path: str | os.PathLike = TEMPLATE) -> dict[str, str]:
    """The template's fragments, {name: text}; "page" is the page itself."""
    parts = _FRAGMENT.split(Path(path).read_text())
    return {name: text.strip("\n") for name, text in zip(parts[1::2], parts[2::2])}


def percent(figures: dict) -> str:
    """A mean ± std of fractions, in percent to 0.1 (no ± for a single seed)."""
    text = f"{100 * figures['mean']:.1f}"
    return text + (f" ± {100 * figures['std']:.1f}" if figures["n"] > 1 else "")


def number(figures: dict, digits: int) -> str:
    """A mean ± std to `digits` decimals (no ± for a single seed)."""
    text = f"{figures['mean']:.{digits}f}"
    return text + (f" ± {figures['std']:.{digits}f}" if figures["n"] > 1 else "")


def listing(values: Sequence) -> str:
    """The values as "a", "a and b" or "a, b and c"."""
    values = [str(v) for v in values]
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " and " + values[-1]


def _cosine(point: dict) -> str:
    return f"{point['fidelity'].get('cosine_mean', {}).get('mean', math.nan):.3f}"


def _final_loss(point: dict, mode: str) -> str:
    curve = point[mode].get("curves", {}).get("loss", {}).get("mean", [])
    return f"{curve[-1]:.3f}" if curve else "?"


def _frames(results: dict, experiment: str, clip_length: int | None = None) -> str:
    """Training frames per run of an experiment (classification: at `clip_length`)."""
    for run in results["runs"]:
        if run["experiment"] == experiment and run.get("clip_length") == clip_length:
            return f"{run['frames_seen']:,}"
    return "?"


class _Page:
    """The template's fragments and the results they are filled from."""

    def __init__(self, results: dict, figures: str, template: str | os.PathLike):
        self.fragments = load_template(template)
        self.results, self.s, self.summary = results, results["settings"], results["summary"]
        self.seeds = len(self.s["seeds"])
        self.figures = {k: v for k, v in self.s.items() if not isinstance(v, (list, dict))}
        tolerance = f"{stats.ACCURACY_TOLERANCE:g}"
        self.figures.update(figures=figures, tolerance=tolerance, seed_total=self.seeds)

    def __call__(self, fragment: str, /, **figures) -> str:
        """The fragment filled with the page's figures and `figures`; KeyError if one lacks."""
        return string.Template(self.fragments[fragment]).substitute(self.figures, **figures)

    def each(self, fragment: str, rows: list[dict]) -> str:
        return "\n".join(self(fragment, **row) for row in rows)

    def verdict(self, point: dict, spread: bool = True) -> str:
        gap = stats.accuracy_gap(point)
        text = self(stats.verdict(gap), gap=f"{gap:+.1f}", size=f"{abs(gap):.1f}")
        relation = stats.against_spread(point, self.seeds) if spread else ""
        if not relation:
            return text
        return self(relation, verdict=text, spread=f"{stats.spread(point):.1f}")

    def where(self, kind: str, keys) -> str:
        """Where Sideways matches BP, falls behind or is ahead, over the points of `kind`."""
        gaps = {x: stats.accuracy_gap(self.summary[kind][str(x)]) for x in keys}
        return "; ".join(
            self(
                f"where_{group}",
                items=self(f"{kind}_values", values=listing(chosen)),
                sizes=listing([f"{abs(gaps[x]):.1f}" for x in chosen]),
            )
            for group, chosen in stats.by_verdict(gaps).items()
            if chosen
        )

    def row(self, point: dict, **figures) -> dict:
        """The figures of one point's table row and list item, with `figures` of its own."""
        return dict(
            figures,
            bp=percent(point["bp"]["accuracy"]),
            sideways=percent(point["sideways"]["accuracy"]),
            gap=f"{stats.accuracy_gap(point):+.1f}",
            cosine=_cosine(point),
            verdict=self.verdict(point),
            loss_bp=_final_loss(point, "bp"),
            loss_sideways=_final_loss(point, "sideways"),
        )


def report_markdown(
    results: dict, figures: str = "study", template: str | os.PathLike = TEMPLATE
) -> str:
    """The report of finished `results` (with their "summary"); plots under `figures/`."""
    page = _Page(results, figures, template)
    sections = (
        _header,
        _headlines,
        _fidelity,
        _tables,
        _controls,
        _fixes,
        _motion,
        _realtime,
        _skips,
    )
    readings = (_why_gap, _why_fill, _why_controls, _why_depth_and_footage)
    for part in sections + readings:
        page.figures.update(part(page))
    text = page("page")
    return re.sub(r"\n{3,}", "\n\n", text).rstrip("\n") + "\n"


def _provenance(page: _Page) -> str:
    """Which commands wrote the results: one, several in turn, or (results written before
    they were listed) the last of them."""
    commands = page.results.get("commands")
    if commands is None:
        return page("last_command", commands=page.results["command"])
    fragment = "one_command" if len(commands) == 1 else "several_commands"
    return page(fragment, commands="\n".join(commands))


def _header(page: _Page) -> dict:
    """Where the figures come from, and the set-up."""
    results, s = page.results, page.s
    env, name = results["environment"], s["name"]
    return dict(
        {k: env[k] for k in ("python", "tensorflow", "keras", "machine", "cpus")},
        **results["footage"],
        provenance=_provenance(page),
        date=results["started"][:10],
        gpus=f"{env['gpus']} GPU" if env["gpus"] else "no GPU",
        minutes=f"{results['seconds'] / 60:.0f}",
        settings_note="" if name == "full" else page("settings_note"),
        L=s["num_stages"],
        T=s["clip_length"],
        R=s["recon_stages"],
        speed=f"{s['speed']:g}",
        learning_rate=f"{s['learning_rate']:g}",
        recon_learning_rate=f"{s['recon_learning_rate']:g}",
        classification_frames=_frames(results, "classification", s["clip_length"]),
        reconstruction_frames=_frames(results, "reconstruction"),
        videos=", ".join(s["videos"]),
        video_size="×".join(str(side) for side in s["video_size"]),
        train_percent=f"{100 * s['video_train_fraction']:.0f}",
        seeds=", ".join(str(x) for x in s["seeds"]),
        first_seed=s["seeds"][0],
        first_stride=s["strides"][0],
        last_stride=s["strides"][-1],
    )


def _headlines(page: _Page) -> dict:
    """The first two lines of "In short", the where-lines, and section 3."""
    s, summary = page.s, page.summary
    first, recon = summary["stride"][str(s["strides"][0])], summary["reconstruction"]
    change, spread = stats.mse_change(recon), stats.spread(first)
    aim = "met" if stats.accuracy_gap(first) >= -stats.ACCURACY_TOLERANCE else "missed"
    noisy = page.seeds > 1 and spread > stats.ACCURACY_TOLERANCE
    return dict(
        first_bp=percent(first["bp"]["accuracy"]),
        first_sideways=percent(first["sideways"]["accuracy"]),
        seed_count=f"{page.seeds} seed{'s' if page.seeds > 1 else ''}",
        first_verdict=page.verdict(first, spread=False),
        first_aim=page("aim_noisy" if noisy else "aim", aim=aim, spread=f"{spread:.1f}"),
        mse_bp=number(recon["bp"]["mse"], 5),
        mse_sideways=number(recon["sideways"]["mse"], 5),
        psnr_bp=number(recon["bp"]["psnr"], 2),
        psnr_sideways=number(recon["sideways"]["psnr"], 2),
        mse_change=f"{100 * change:+.1f}%",
        mse_change_size=f"{100 * abs(change):.1f}",
        mse_direction="above" if change > 0 else "below",
        mse_within="within" if change <= stats.MSE_TOLERANCE else "outside",
        mse_tolerance=f"{100 * stats.MSE_TOLERANCE:.0f}",
        mse_aim="met" if change <= stats.MSE_TOLERANCE else "missed",
        where_stride=page.where("stride", s["strides"]),
        where_depth=page.where("depth", s["depths"]),
        where_clip_length=page.where("clip_length", s["clip_lengths"]),
        recon_gap=ticks.bottom_gap(s["recon_stages"]),
    )


def _fidelity(page: _Page) -> dict:
    """Section 4 and its line in "In short": the cosine per stage against stride."""
    L, strides = page.s["num_stages"], page.s["strides"]
    fidelity = [page.summary["stride"][str(x)]["fidelity"] for x in strides]
    stages = stats.weighted_stages(page.summary["stride"], strides)
    bottom, top = stages[0], stages[-1]
    rows = [
        dict(
            stride=x,
            cells=" | ".join(f"{fid['cosine'][k]:.3f}" for k in stages),
            cosine=number(fid["cosine_mean"], 3),
            norm_ratio=number(fid["norm_ratio_mean"], 2),
        )
        for x, fid in zip(strides, fidelity)
    ]
    exact_top = max(fid["cosine"][top] for fid in fidelity) >= 0.999
    return dict(
        cosine_first=f"{fidelity[0]['cosine_mean']['mean']:.3f}",
        cosine_last=f"{fidelity[-1]['cosine_mean']['mean']:.3f}",
        bottom_stage_gap=ticks.frame_gap(L, bottom),
        top_stage_gap=ticks.frame_gap(L, top),
        bottom_first=f"{fidelity[0]['cosine'][bottom]:.3f}",
        bottom_last=f"{fidelity[-1]['cosine'][bottom]:.3f}",
        top_first=f"{fidelity[0]['cosine'][top]:.3f}",
        top_last=f"{fidelity[-1]['cosine'][top]:.3f}",
        stage_columns=" | ".join(
            page("stage_column", stage=k, gap=ticks.frame_gap(L, k)) for k in stages
        ),
        stage_alignments="---:|" * len(stages),
        fidelity_rows=page.each("fidelity_row", rows),
        measurements=fidelity[0].get("measurements", 0),
        top_stage=L - 1,
        top_stage_note="" if exact_top else page("top_stage_note"),
    )


def _tables(page: _Page) -> dict:
    """Sections 1, 2 and 5: a table row, and a list item, per point."""
    s, summary = page.s, page.summary
    L, T = s["num_stages"], s["clip_length"]
    strides = [
        page.row(
            summary["stride"][str(x)],
            stride=x,
            source_gap=ticks.bottom_gap(L) * x,
            shift=f"{ticks.bottom_gap(L) * x * s['speed']:g}",
        )
        for x in s["strides"]
    ]
    depths = [
        page.row(
            summary["depth"][str(d)],
            stages=d,
            gap_frames=ticks.bottom_gap(d),
            valid_ticks=ticks.valid_ticks(T, d, 0),
            loss_frames=ticks.loss_frames(T, d),
        )
        for d in s["depths"]
    ]
    lengths = [
        page.row(
            summary["clip_length"][str(t)],
            **dict(zip(("clips", "batch"), clip_plan(s, t))),
            T=t,
            valid_ticks=ticks.valid_ticks(t, L, 0),
            primed_ticks=ticks.primed_ticks(t, L, 0),
            loss_frames=ticks.loss_frames(t, L),
        )
        for t in s["clip_lengths"]
    ]
    return dict(
        bottom_gap=ticks.bottom_gap(L),
        stride_rows=page.each("stride_row", strides),
        stride_items=page.each("stride_item", strides),
        depth_rows=page.each("depth_row", depths),
        depth_items=page.each("depth_item", depths),
        clip_length_rows=page.each("clip_length_row", lengths),
        clip_length_items=page.each("clip_length_item", lengths),
    )


def _controls(page: _Page) -> dict:
    """Section 6, and the controls' lines in "In short"."""
    controls = page.summary.get("controls", {})
    short = [
        page(
            f"{key}_short",
            verdict=page.verdict(controls[key], spread=False),
            long_bp=percent(controls[key]["bp"]["accuracy"]),
        )
        for key in ("static", "long")
        if key in controls
    ]
    rows = [page.row(point, variant=page(f"{key}_name")) for key, point in controls.items()]
    items = [dict(row, Variant=row["variant"].capitalize()) for row in rows[1:]]
    section = page(
        "controls_section",
        control_rows=page.each("control_row", rows),
        control_items=page.each("control_item", items),
    )
    return dict(control_short="\n".join(short), controls_section=section if len(rows) > 1 else "")


MOTION_TASKS = {  # how the page names each task, and its chance level
    "moving_digits_direction": ("moving digits, direction of motion", 0.25),
    "arrow_of_time": ("real footage, arrow of time", 0.5),
}


def _percent_or_dash(accuracy: dict) -> str:
    """A mean ± std in percent, or a dash for a set-up that was not run."""
    return percent(accuracy) if accuracy["n"] else "–"


def _motion(page: _Page) -> dict:
    """Section 8: per-frame against temporal models on the tasks that need motion."""
    motion = page.summary.get("motion") or {}
    if not motion:
        return dict(motion_section="")
    rows = []
    for task, models in motion.items():
        name, chance = MOTION_TASKS[task]
        for model, entry in models.items():
            row = dict(task=name, chance=f"{100 * chance:.0f}", model=model)
            row["bp"] = _percent_or_dash(entry["bp"]["accuracy"])
            for way, prefix in MOTION_COMPARED:
                measured = entry["bp"]["accuracy"]["n"] and entry[way]["accuracy"]["n"]
                row[way] = _percent_or_dash(entry[way]["accuracy"])
                row[f"{prefix}gap"] = f"{entry[f'{prefix}gap']:+.1f}" if measured else "–"
                gaps = entry[f"{prefix}paired_gaps"]
                row[f"{prefix}paired"] = ", ".join(f"{g:+.1f}" for g in gaps) or "–"
            rows.append(row)
    seeds = len(page.s["motion_seeds"])
    section = page(
        "motion_section",
        motion_rows=page.each("motion_row", rows),
        motion_seeds=f"{seeds} seed{'s' if seeds > 1 else ''}",
    )
    return dict(motion_section=section)


def _realtime(page: _Page) -> dict:
    """Section 9 and its line in "In short": the real-time setting, or that it is not run."""
    rt = page.summary.get("realtime") or {}
    if not rt or math.isnan(rt["ratio"]):
        return dict(realtime_short="", realtime_section=page("realtime_not_run"))
    passes = rt["epochs"]
    pass_seconds = rt["stream_clips"] * rt["clip"][1] / rt["rate"]
    ratio = round(rt["ratio"], 3)  # the verdicts read the figure the page shows
    figures = dict(
        rate=f"{rt['rate']:.0f}",
        ratio=f"{ratio:.3f}",
        bound=f"{stats.REALTIME_BOUND:g}",
        aim=f"{stats.REALTIME_AIM:g}",
        bound_verdict="met" if ratio <= stats.REALTIME_BOUND else "missed",
        aim_verdict="met" if ratio <= stats.REALTIME_AIM else "missed",
        engine=rt["engine"],
        stream_clips=rt["stream_clips"],
        batch_clips=rt["clip"][0],
        clip_frames=rt["clip"][1],
        clip_size="×".join(str(side) for side in rt["clip"][2:4]),
        pass_seconds=f"{pass_seconds:.1f}",
        stream_seconds=f"{pass_seconds * passes:.1f}",
        realtime_epochs=passes,
        realtime_seed_list=listing(rt["sideways"]["seeds"]),
    )
    for mode in ("bp", "sideways"):
        figures.update(
            {
                f"fps_{mode}": f"{rt['fps'][mode]:.1f}",
                f"threads_{mode}": rt["threads"][mode],
                f"keep_{mode}": f"{rt['keep'][mode]:.3f}",
                f"percent_{mode}": f"{100 * rt['keep'][mode]:.0f}",
                f"taken_{mode}": rt[mode]["clips_taken"],
                f"realtime_mse_{mode}": number(rt[mode]["mse"], 5),
                f"realtime_psnr_{mode}": number(rt[mode]["psnr"], 2),
            }
        )
    figures["who_skips"] = page(f"{rt['slower'] or 'none'}_skips", **figures)
    return dict(
        realtime_short=page("realtime_short", **figures),
        realtime_section=page("realtime_section", **figures),
    )


def _fixes(page: _Page) -> dict:
    """Section 7: each fix against the same BP runs, per point; the reconstruction."""
    fixed = page.summary.get("fixes") or {}
    if not fixed:
        return dict(fixes_section="")
    names = fixed["names"]

    def cell(entry: dict) -> str:
        n = entry["accuracy"]["n"]
        if not n:
            return _percent_or_dash(entry["accuracy"])
        fewer = page("skip_seeds", n=n) if n < page.seeds else ""  # few_seed_fixes
        return f"{percent(entry['accuracy'])} ({entry['gap']:+.1f}){fewer}"

    rows, columns = [], []
    for key, row in fixed["points"].items():
        stride, stages = key.split("/")
        columns = row["columns"]
        cells = " | ".join(cell(row[label]) for label in columns)
        rows.append(
            dict(stride=stride, stages=stages, bp=percent(row["bp"]["accuracy"]), cells=cells)
        )
    recon = [
        dict(fix=name, mse=number(entry["mse"], 5), ratio=f"{entry['ratio']:.3f}")
        for name, entry in fixed["reconstruction"].items()
    ]
    section = page(
        "fixes_section",
        fix_header=" | ".join(
            f"{label} (%)" if label.startswith("BP") else f"Sideways, {label} (%)"
            for label in columns[1:]
        ),
        fix_rule="|".join("---:" for _ in columns[1:]),
        fix_rows=page.each("fix_row", rows),
        fix_recon=page.each("fix_recon_item", recon),
        fix_names=listing(names),
        constant_rate_strides=listing(page.s.get("constant_rate_strides") or ["(none)"]),
    )
    return dict(fixes_section=section)


SKIP_MODELS = {  # how the skip section names each model: the chain's, and with skips
    "classification": dict(chain="chain (`vgg_classifier`)", skips="skips (`skip_classifier`)"),
    "reconstruction": dict(chain="chain (`encoder_decoder`)", skips="U-Net (`unet`)"),
}


def _skips(page: _Page) -> dict:
    """Section 10 and its line in "In short": each model beside its skip-connected one."""
    skips = page.summary.get("skips") or {}
    if not skips:
        return dict(skips_short="", skips_section="")
    tables, moves, drains, exacts = [], [], [], []
    for key, point in skips["points"].items():
        stride, stages = key.split("/")
        where = page("skip_point", stride=stride, stages=stages)
        cells = {
            f"{model}_{field}": text
            for model in ("chain", "skips")
            for field, text in _skip_cells(page, point[model], ratio=False).items()
        }
        readings = [
            _skip_reading(page, SKIP_MODELS["classification"][model], mode, point[model])
            for model in ("chain", "skips")
            for mode in SKIP_MODES[1:]
        ]
        gaps = [point[model]["sideways_vs_bp"] for model in ("chain", "skips")]
        if all(gap["paired"]["n"] for gap in gaps):
            change = gaps[1]["value"] - gaps[0]["value"]
            spread = max(gap["spread"] for gap in gaps)
            figures = dict(
                chain_gap=f"{gaps[0]['value']:+.1f}",
                skips_gap=f"{gaps[1]['value']:+.1f}",
                change=f"{change:+.1f}",
                spread=f"{spread:.1f}",
                where=where,
            )
            readings.append(page(_skip_relation("skip_change", change, spread, page), **figures))
            moves.append(page("skip_move", **figures))
        drained = [point[model]["drained_vs_bp"]["paired"] for model in ("chain", "skips")]
        if drained[1]["n"]:
            chain_gap = _signed(drained[0]) if drained[0]["n"] else "–"
            figures = dict(chain_gap=chain_gap, skips_gap=_signed(drained[1]), where=where)
            drains.append(page("skip_move", **figures))
        exact = point["skips"]["exact_vs_bp"]
        if exact["paired"]["n"]:
            exacts.append(page("skip_exact", gap=_signed(exact["paired"]), where=where))
        tables.append(
            page("skip_table", **cells, where=where, readings="\n".join(r for r in readings if r))
        )
    recon = skips.get("reconstruction")
    recon_text, recon_short = "", ""
    if recon:
        cells = {
            f"{model}_{field}": text
            for model in ("chain", "skips")
            for field, text in _skip_cells(page, recon[model], ratio=True).items()
        }
        readings = [
            _skip_reading(page, SKIP_MODELS["reconstruction"][model], mode, recon[model], True)
            for model in ("chain", "skips")
            for mode in SKIP_MODES[1:]
        ]
        recon_text = page("skip_recon", **cells, readings="\n".join(r for r in readings if r))
        recon_short = page("skip_recon_short", **cells)
    realtime_text, realtime_short = _skip_realtime(page, skips.get("realtime") or {})
    short = page(
        "skips_short",
        moves=listing(moves) if moves else "–",
        drains=listing(drains) if drains else "–",
        exacts=listing(exacts) if exacts else "–",
        recon_short=recon_short + realtime_short,
    )
    section = page(
        "skips_section",
        skip_tables="\n\n".join(tables),
        skip_recon="\n\n".join(text for text in (recon_text, realtime_text) if text),
    )
    return dict(skips_short=short, skips_section=section)


def _skip_realtime(page: _Page, rt: dict) -> tuple[str, str]:
    """Section 10's real-time paragraph and its part of the "In short" line: the U-Net's
    three ways on section 9's stream; ("", "") until its rates are measured and BP and the
    paper's Sideways have trained on it."""
    if not rt or math.isnan(rt["sideways_vs_bp"]["value"]):
        return "", ""
    figures = dict(rate=f"{rt['rate']:.0f}", engine=rt["engine"])
    for name in ("bp", "sideways", "exact"):
        clips = rt[name]["stream_clips"]
        figures.update(
            {
                f"fps_{name}": f"{rt['fps'][name]:.1f}",
                f"threads_{name}": rt["threads"][name],
                f"taken_{name}": f"{rt[name]['clips_taken']} of {clips}" if clips else "–",
                f"keep_{name}": f"{rt['keep'][name]:.3f}",
                f"mse_{name}": number(rt[name]["mse"], 5) if rt[name]["mse"]["n"] else "–",
            }
        )
    for name in ("sideways", "exact"):
        versus = rt[f"{name}_vs_bp"]
        spread = f" ± {versus['paired']['std']:.3f}" if versus["paired"]["n"] > 1 else ""
        figures[f"{name}_vs_bp"] = (
            "–" if math.isnan(versus["value"]) else f"{versus['value']:.3f}{spread}"
        )
    ratio = round(rt["sideways_vs_bp"]["value"], 3)  # the verdicts read the figure shown
    figures.update(
        ratio=f"{ratio:.3f}",
        chain=f"{rt['chain']:.3f}" if not math.isnan(rt["chain"]) else "–",
        bound=f"{stats.SKIP_REALTIME_BOUND:g}",
        aim=f"{stats.SKIP_REALTIME_AIM:g}",
        bound_verdict="met" if ratio <= stats.SKIP_REALTIME_BOUND else "missed",
        aim_verdict="met" if ratio <= stats.SKIP_REALTIME_AIM else "missed",
        fastest=page(f"skip_way_{max(rt['fps'], key=rt['fps'].get)}"),
    )
    return page("skip_realtime", **figures), page("skip_realtime_short", **figures)


def _signed(figures: dict, digits: int = 1) -> str:
    """A mean ± std with its sign (no ± for a single seed)."""
    text = f"{figures['mean']:+.{digits}f}"
    return text + (f" ± {figures['std']:.{digits}f}" if figures["n"] > 1 else "")


def _skip_cells(page: _Page, triple: dict, ratio: bool) -> dict:
    """The table cells of one model in the skip modes: each figure, and its difference to
    BP (a gap in points, or a ratio of MSEs); "–" for what did not run."""
    cells = {}
    for mode in SKIP_MODES:
        figures = triple[mode]
        if not figures["n"]:
            cells[mode] = "–"
            continue
        cells[mode] = number(figures, 5) if ratio else percent(figures)
        if figures["n"] < page.seeds:
            cells[mode] += page("skip_seeds", n=figures["n"])
    for mode in SKIP_MODES[1:]:
        versus = triple[f"{mode}_vs_bp"]
        if not versus["paired"]["n"]:
            cells[f"{mode}_vs_bp"] = "–"
        elif ratio:
            spread = f" ± {versus['paired']['std']:.3f}" if versus["paired"]["n"] > 1 else ""
            cells[f"{mode}_vs_bp"] = f"{versus['value']:.3f}{spread}"
        else:
            cells[f"{mode}_vs_bp"] = _signed(versus["paired"])
    return cells


def _skip_relation(fragment: str, difference: float, spread: float, page: _Page) -> str:
    """`fragment`, or with a seed spread at least as wide as `difference` its "_inside"
    variant (its "_beyond" one when narrower); one seed has no spread to read."""
    if page.seeds < 2 or math.isnan(spread):
        return fragment
    return f"{fragment}_{'inside' if abs(difference) <= spread else 'beyond'}"


def _skip_reading(page: _Page, model: str, mode: str, triple: dict, ratio: bool = False) -> str:
    """One line on one model's difference to BP in `mode`, against the seed spread."""
    versus = triple[f"{mode}_vs_bp"]
    if not versus["paired"]["n"]:
        return ""
    model, who = model[0].upper() + model[1:], page(f"skip_mode_{mode}")
    if ratio:
        value = round(versus["value"], 3)  # the reading follows the figure the page shows
        fragment = _skip_relation("skip_ratio", value - 1, versus["spread"], page)
        spread = f"{100 * versus['spread']:.0f}"
        return page(fragment, model=model, who=who, ratio=f"{value:.3f}", spread=spread)
    gap = versus["value"]
    verdict = page(stats.verdict(gap), gap=f"{gap:+.1f}", size=f"{abs(gap):.1f}")
    fragment = _skip_relation("skip_gap", gap, versus["spread"], page)
    spread = f"{versus['spread']:.1f}"
    return page(fragment, model=model, who=who, verdict=verdict, spread=spread)


def _why_gap(page: _Page) -> dict:
    """The frame gap: fidelity against stride and along training, and the strides behind."""
    s, summary = page.s, page.summary
    strides, L = s["strides"], s["num_stages"]
    cosine = [summary["stride"][str(x)]["fidelity"]["cosine"] for x in strides]
    bottom = stats.weighted_stages(summary["stride"], strides)[0]
    shift = f"{ticks.bottom_gap(L) * s['speed']:g}"
    sentences = [
        page("gap_intro", digit=max(8, s["image_size"] // 2), bottom_shift=shift),
        page("gap_drift" if cosine[-1][bottom] < cosine[0][bottom] else "gap_no_drift"),
    ]
    steps = summary["stride"][str(strides[0])].get("fidelity_by_step", {}).get("steps", [])
    if len(steps) > 1:
        curve = summary["stride"][str(strides[0])]["fidelity_by_step"]["cosine_mean"]
        trend = page(f"trend_{stats.trend(curve)}")
        start, end = f"{curve[0]:.3f}", f"{curve[-1]:.3f}"
        sentences.append(
            page("gap_along_training", start=start, end=end, last_step=steps[-1], trend=trend)
        )
    gaps = {x: stats.accuracy_gap(summary["stride"][str(x)]) for x in strides}
    behind = stats.by_verdict(gaps)["behind"]
    sentences.append(
        page(
            "gap_behind",
            strides=listing(behind),
            sizes=listing([f"{-gaps[x]:.1f}" for x in behind]),
            spans=listing([ticks.bottom_gap(L) * x for x in behind]),
        )
        if behind
        else page("gap_no_cost")
    )
    return dict(why_gap=" ".join(sentences))


def _why_fill(page: _Page) -> dict:
    """The pipeline's fill: the shortest clips against the longest."""
    L, lengths = page.s["num_stages"], page.s["clip_lengths"]
    short, long = (page.summary["clip_length"][str(t)] for t in (lengths[0], lengths[-1]))
    page.figures.update(
        short=lengths[0],
        long=lengths[-1],
        short_loss=ticks.loss_frames(lengths[0], L),
        long_loss=ticks.loss_frames(lengths[-1], L),
        short_gap=f"{stats.accuracy_gap(short):+.1f}",
        long_gap=f"{stats.accuracy_gap(long):+.1f}",
        spread=f"{max(stats.spread(short), stats.spread(long)):.1f}",
    )
    sentences = [page("fill_intro"), page(f"fill_{stats.fill_cost(short, long)}")]
    bp_difference = 100 * (short["bp"]["accuracy"]["mean"] - long["bp"]["accuracy"]["mean"])
    if bp_difference > stats.ACCURACY_TOLERANCE:
        sentences.append(page("fill_bp_prefers_short", bp_difference=f"{bp_difference:.1f}"))
    return dict(why_fill=" ".join(sentences))


def _why_controls(page: _Page) -> dict:
    """The controls: static digits (noise) and longer training (speed or bias)."""
    controls, gap = page.summary.get("controls", {}), stats.accuracy_gap
    sentences = []
    if "static" in controls:
        static = controls["static"]
        name = "static_agrees" if stats.verdict(gap(static)) == "matches" else "static_differs"
        paired = listing([f"{g:+.1f}" for g in static.get("paired_gaps", [])])
        sentences.append(page(name, paired=paired, gap=f"{gap(static):+.1f}"))
    if "long" in controls:
        base, long = controls["baseline"], controls["long"]
        sentences.append(
            page(
                f"long_{stats.longer_training(base, long)}",
                base_gap=f"{gap(base):+.1f}",
                long_gap=f"{gap(long):+.1f}",
                long_bp=percent(long["bp"]["accuracy"]),
                long_spread=f"{stats.spread(long):.1f}",
                long_cosine=_cosine(long),
            )
        )
    return dict(why_controls=" ".join([page("controls_intro"), *sentences]) if sentences else "")


def _why_depth_and_footage(page: _Page) -> dict:
    """Depth (the gap and the fill together), and the real footage."""
    s, summary = page.s, page.summary
    depths, T, R = s["depths"], s["clip_length"], s["recon_stages"]
    gaps = {d: stats.accuracy_gap(summary["depth"][str(d)]) for d in depths}
    deep = stats.by_verdict(gaps)["behind"]
    bp_mse = summary["reconstruction"]["bp"]["mse"]
    bp_spread = f"{100 * bp_mse['std'] / bp_mse['mean']:.0f}"
    aim = page("footage_aim_seeds" if page.seeds > 1 else "footage_aim", bp_spread=bp_spread)
    return dict(
        why_depth=page(
            "depth_behind",
            stages=listing(deep),
            sizes=listing([f"{-gaps[d]:.1f}" for d in deep]),
            gaps=listing([ticks.bottom_gap(d) for d in deep]),
            loss_frames=listing([ticks.loss_frames(T, d) for d in deep]),
        )
        if deep
        else page("depth_fine", first_depth=depths[0], last_depth=depths[-1]),
        why_footage=page(
            "footage",
            footage_aim=aim,
            recon_gap_seconds=f"{ticks.bottom_gap(R) / 25:.2f}",
            recon_loss_frames=ticks.loss_frames(s["video_clip_length"], R),
        ),
    )


def write_report(results: dict, docs_path: str | os.PathLike) -> Path:
    """Writes the report of `results` to `docs_path` (atomically); its plots are in
    `<docs stem>/`."""
    return write_text(docs_path, report_markdown(results, figures=Path(docs_path).stem))
