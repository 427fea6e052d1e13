"""PNG plots of a study. Built on matplotlib's Figure API with the Agg canvas: no pyplot, no
display, no global state, so plots can be drawn from any thread or a headless machine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fedtextgrad.metrics import DensityProfile
from fedtextgrad.report.data import Run, Setting, Study

DPI = 110


def save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def _curves(setting: Setting, curve: Callable[[Run], list[float]]) -> np.ndarray | None:
    """The runs' curves, cut to the shortest, one row each."""
    runs = setting.complete_runs() or setting.runs  # an unfinished run must not cut the rest
    curves = [c for r in runs if (c := curve(r))]
    if not curves:
        return None
    length = min(len(c) for c in curves)
    return np.array([c[:length] for c in curves], dtype=float)


def _band(ax, setting: Setting, curve: Callable[[Run], list[float]]) -> None:
    values = _curves(setting, curve)
    if values is None:
        return
    x = np.arange(values.shape[1])
    mean = values.mean(axis=0)
    (line,) = ax.plot(x, mean, marker="o", markersize=3, label=setting.title)
    if len(values) > 1:
        std = values.std(axis=0, ddof=1)
        ax.fill_between(x, mean - std, mean + std, alpha=0.15, color=line.get_color())


def accuracy_vs_rounds(study: Study) -> Figure:
    figure = Figure(figsize=(7, 4), layout="constrained")
    ax = figure.add_subplot()
    for setting in study.settings:
        _band(ax, setting, Run.val_curve)
    ax.set(
        xlabel="round (0 = initial prompt)",
        ylabel="validation accuracy",
        title=f"{study.name}: accuracy vs rounds (mean ± std over seeds)",
        ylim=(-0.05, 1.05),
    )
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return figure


def numeric_key(study: Study) -> str | None:
    """The swept key, when the study sweeps exactly one numeric key (e.g. local steps)."""
    if len(study.keys) != 1:
        return None
    key = study.keys[0]
    values = [s.label.get(key) for s in study.settings]
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    return key if numeric and len(values) > 1 else None


def accuracy_vs_key(study: Study, key: str) -> Figure:
    figure = Figure(figsize=(6, 4), layout="constrained")
    ax = figure.add_subplot()
    for title, value in (
        ("final", lambda r: r.final.test_accuracy),
        ("last round", lambda r: r.final.last.test_accuracy),
    ):
        points = [(s.label[key], s.stat(value)) for s in study.settings]
        points = [(x, stat) for x, stat in points if stat is not None]
        if not points:
            continue
        ax.errorbar(
            [x for x, _ in points],
            [stat[0] for _, stat in points],
            yerr=[stat[1] for _, stat in points],
            marker="o",
            capsize=3,
            label=f"{title} prompt",
        )
    short = key.rsplit(".", 1)[-1]
    ax.set(xlabel=short, ylabel="test accuracy", title=f"{study.name}: test accuracy vs {short}")
    ax.set_xticks([s.label[key] for s in study.settings])
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return figure


def cost_vs_rounds(study: Study) -> Figure:
    figure = Figure(figsize=(10, 3.8), layout="constrained")
    left, right = figure.subplots(1, 2)
    for setting in study.settings:
        _band(left, setting, Run.prompt_tokens_curve)
        _band(right, setting, Run.cumulative_tokens)
    left.set(xlabel="round", ylabel="tokens", title="global prompt length")
    right.set(
        xlabel="round", ylabel="tokens", title="LLM tokens used (cumulative, cached calls included)"
    )
    for ax in (left, right):
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    left.legend(fontsize=7)
    figure.suptitle(f"{study.name}: prompt length and cost")
    return figure


def surprisal_profiles(study: Study) -> Figure | None:
    """Per-token surprisal of each setting's final prompt (first seed), sentence means on top."""
    shown = []
    for setting in study.settings:
        run = next((r for r in setting.runs if r.complete and r.final_uid()), None)
        if run is not None:
            shown.append((setting, run.final_uid()))
    if not shown:
        return None
    figure = Figure(figsize=(10, 1.9 * len(shown) + 0.6), layout="constrained")
    axes = figure.subplots(len(shown), 1, sharey=True, squeeze=False)[:, 0]
    for ax, (setting, uid) in zip(axes, shown, strict=True):
        values = np.array(uid["surprisals"])
        ax.plot(values, linewidth=0.8, color="tab:blue")
        _sentence_steps(ax, uid)
        ax.set_title(
            f"{setting.title}: {uid['length_tokens']} tokens, mean {uid['mean']:.2f} bits, "
            f"var {uid['variance']:.1f}, sentence var {uid['sentence_variance']:.2f}",
            fontsize=8,
        )
        ax.set_ylabel("bits", fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("token")
    figure.suptitle(f"{study.name}: surprisal profile of the final prompts")
    return figure


def _sentence_steps(ax, uid: dict) -> None:
    """Each sentence's mean surprisal as a horizontal segment over its tokens."""
    profile = DensityProfile(uid["tokens"], uid["surprisals"], uid["length_tokens"])
    for index, (start, end) in enumerate(profile.sentence_spans()):
        mean = float(np.mean(profile.surprisals[start:end]))
        label = None if index else "sentence mean"
        ax.hlines(mean, start, end - 1, colors="tab:red", linewidth=1.6, label=label)
    ax.legend(fontsize=7, loc="upper right")


def run_plot(run: Run) -> Figure:
    """A single run: validation accuracy and global prompt length by round."""
    figure = Figure(figsize=(7, 3.6), layout="constrained")
    ax = figure.add_subplot()
    acc = run.val_curve()
    ax.plot(range(len(acc)), acc, marker="o", color="tab:blue", label="validation accuracy")
    ax.set(xlabel="round (0 = initial prompt)", ylabel="validation accuracy", ylim=(-0.05, 1.05))
    ax.xaxis.get_major_locator().set_params(integer=True)
    twin = ax.twinx()
    tokens = run.prompt_tokens_curve()
    twin.plot(range(len(tokens)), tokens, marker="s", color="tab:orange", label="prompt tokens")
    twin.set_ylabel("global prompt tokens")
    lines = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    ax.set_title(run.dir.name, fontsize=9)
    return figure
