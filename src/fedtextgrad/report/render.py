"""Reports as files: Markdown with PNGs beside it, one self-contained HTML page, JSON summaries."""

from __future__ import annotations

import base64
import difflib
import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from fedtextgrad import text
from fedtextgrad.artifacts import refuse_foreign_report, write_atomic
from fedtextgrad.config import EnginesConfig
from fedtextgrad.record import Initial, Round
from fedtextgrad.record import Run as RunRecord
from fedtextgrad.report import plots
from fedtextgrad.report.data import NOTE, Run, Study, load_studies, summary, table
from fedtextgrad.stats import Paired


@dataclass
class StudyReport:
    study: Study
    header: list[str]
    rows: list[list[str]]
    images: list[tuple[str, Path]] = field(default_factory=list)  # (caption, png)


def write_report(paths: list[str | Path], out_dir: str | Path) -> Path:
    """Tables, plots, report.md, summary.json and index.html for the runs under `paths`."""
    out_dir = Path(out_dir)
    refuse_foreign_report(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    reports = [_study_report(study, out_dir) for study in load_studies(paths)]
    summaries = json.dumps([summary(r.study) for r in reports], indent=2, ensure_ascii=False)
    write_atomic(out_dir / "report.md", _markdown(reports))
    write_atomic(out_dir / "summary.json", summaries + "\n")
    write_atomic(out_dir / "index.html", _html(reports))
    return out_dir


def _study_report(study: Study, out_dir: Path) -> StudyReport:
    header, rows = table(study)
    report = StudyReport(study, header, rows)
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", study.name)
    figures = [("Validation accuracy by round", "accuracy_rounds", plots.accuracy_vs_rounds(study))]
    if key := plots.numeric_key(study):
        short = key.rsplit(".", 1)[-1]
        figures.append(
            (f"Test accuracy vs {short}", f"accuracy_vs_{short}", plots.accuracy_vs_key(study, key))
        )
    figures.append(
        ("Prompt length and LLM tokens by round", "cost_rounds", plots.cost_vs_rounds(study))
    )
    if (profile := plots.surprisal_profiles(study)) is not None:
        figures.append(("Surprisal profile of the final prompts", "surprisal", profile))
    for caption, name, figure in figures:
        report.images.append((caption, plots.save(figure, out_dir / f"{slug}_{name}.png")))
    return report


def _first_runs(study: Study) -> list[tuple[str, Run]]:
    """(setting, its first completed run): whose prompts the report shows."""
    firsts = []
    for setting in study.settings:
        run = next((r for r in setting.runs if r.complete), None)
        if run is not None:
            firsts.append((f"{setting.title} (seed {run.seed})", run))
    return firsts


# -- Markdown ----------------------------------------------------------------------------------


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *map(line, rows)])


def _markdown(reports: list[StudyReport]) -> str:
    parts = ["# FedTextGrad report", "", NOTE]
    for report in reports:
        study = report.study
        parts += ["", f"## {study.name}", ""]
        if study.question:
            parts += [study.question, ""]
        parts.append(markdown_table(report.header, report.rows))
        if study.missing:
            parts += ["", f"Not run yet: {len(study.missing)} run(s)."]
        for caption, path in report.images:
            parts += ["", f"![{caption}]({path.name})"]
        parts += ["", "<details><summary>Final prompts</summary>", ""]
        for title, run in _first_runs(study):
            parts += [f"**{title}**", "", "```text", run.final.prompt, "```", ""]
        parts.append("</details>")
        for title, run in _first_runs(study):
            parts += ["", f"<details><summary>How the prompt evolved: {title}</summary>", ""]
            parts += [*evolution(run.record), "</details>"]
    return "\n".join(parts) + "\n"


# -- HTML --------------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1200px;
       padding: 0 1rem; color: #222; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.8rem 0; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
.scroll { overflow-x: auto; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85rem; color: #555; }
pre { white-space: pre-wrap; background: #f8f8f8; padding: 0.6rem; font-size: 0.8rem; }
ul.diff { list-style: none; padding: 0.6rem; background: #f8f8f8; font-size: 0.85rem; }
ul.diff li { margin: 0.15rem 0; }
ul.diff li.add { color: #1a6b1a; } ul.diff li.add::before { content: "+ "; }
ul.diff li.del { color: #a11; } ul.diff li.del::before { content: "− "; }
ins { text-decoration: none; background: #e3f7e3; }
"""


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _html(reports: list[StudyReport]) -> str:
    sections = []
    for report in reports:
        study = report.study
        parts = [f"<section><h2>{html.escape(study.name)}</h2>"]
        if study.question:
            parts.append(f"<p>{html.escape(study.question)}</p>")
        parts.append(html_table(report.header, report.rows))
        if study.missing:
            parts.append(f"<p>Not run yet: {len(study.missing)} run(s).</p>")
        for caption, path in report.images:
            parts.append(
                f'<figure><img src="{_data_uri(path)}" alt="{html.escape(caption)}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        parts.append("<details><summary>Final prompts</summary>")
        for title, run in _first_runs(study):
            prompt = html.escape(run.final.prompt)
            parts.append(f"<h4>{html.escape(title)}</h4><pre>{prompt}</pre>")
        parts.append("</details>")
        for title, run in _first_runs(study):
            parts.append(
                f"<details open><summary>How the prompt evolved: {html.escape(title)}</summary>"
            )
            parts.append(evolution_html(run.record))
            parts.append("</details>")
        parts.append("</section>")
        sections.append("\n".join(parts))
    body = f"<h1>FedTextGrad report</h1><p>{html.escape(NOTE)}</p>\n" + "\n".join(sections)
    return _page("FedTextGrad report", body)


def _page(title: str, body: str) -> str:
    """One self-contained page: its style inline, its images as data URIs."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>"
        f"{body}\n</body></html>\n"
    )


# -- one run -----------------------------------------------------------------------------------


def write_run_report(run_dir: str | Path, record: RunRecord) -> Path:
    """report.md, report.html (self-contained) and accuracy.png in a run directory, written when
    the run finishes."""
    run_dir = Path(run_dir)
    run = Run(run_dir, record, {}, record.config.get("seed", 0))
    plots.save(plots.run_plot(run), run_dir / "accuracy.png")
    initial, final, usage = record.initial, run.final, record.usage
    assert initial is not None
    config = record.config
    fed, train = config["federation"], config["train"]
    tasks = config["task"].get("names") or [config["task"].get("name")]
    lines = [
        f"# Run {run_dir.name}",
        "",
        f"Tasks {', '.join(map(str, tasks))}; {fed['clients']} client(s), {fed['rounds']} round(s), "
        f"K={train['local_steps']} local steps, batch {train['batch_size']}, "
        f"aggregation {fed['aggregation']}; engines {_engines(config['engines'])}; "
        f"seed {config['seed']}.",
        "",
        f"- result (the best prompt on validation, round {final.round}): "
        f"{Paired(**final.paired.model_dump()).describe()}; exact McNemar p = "
        f"{final.paired.p_value:.3f}",
        f"- the last round's prompt (round {final.last.round}) scores "
        f"{final.last.test_accuracy:.3f} on test",
        f"- cost: {usage.calls} LLM calls ({usage.cache_hits} from the cache), "
        f"{usage.tokens_used} tokens used ({usage.total_tokens} paid), "
        f"{record.wall_seconds / 60:.1f} minutes",
        "",
    ]
    header = ["round", "val acc", "prompt tokens", "tokens used", "seconds"]
    rows = [["0", f"{initial.val_accuracy:.3f}", str(initial.prompt_tokens), "", ""]]
    rows += [
        [
            str(r.round),
            f"{r.val_accuracy:.3f}",
            str(r.prompt_tokens),
            str(r.usage.tokens_used),
            f"{r.seconds:.0f}",
        ]
        for r in record.rounds
    ]
    tasks = list(initial.val_by_task) if len(initial.val_by_task) > 1 else []
    header += [f"val {task}" for task in tasks]  # the heterogeneous setting: each task's own
    entries: list[Initial | Round] = [initial, *record.rounds]
    for row, entry in zip(rows, entries, strict=True):
        row += [f"{entry.val_by_task[task]:.3f}" for task in tasks]
    if run.final_uid() is not None:
        header.append("surprisal mean / var")
        for row, entry in zip(rows, entries, strict=True):
            row.append(_uid_cell(entry.uid))
    summary = lines[2:-1]
    lines += [markdown_table(header, rows), "", "![accuracy by round](accuracy.png)", ""]
    lines += ["## Final prompt", "", "```text", final.prompt, "```", ""]
    lines += ["## How the prompt evolved", "", *evolution(record)]
    path = run_dir / "report.md"
    write_atomic(path, "\n".join(lines))
    body = [
        f"<h1>Run {html.escape(run_dir.name)}</h1>",
        *(f"<p>{html.escape(line.removeprefix('- '))}</p>" for line in summary if line),
        html_table(header, rows),
        f'<figure><img src="{_data_uri(run_dir / "accuracy.png")}" alt="accuracy by round">'
        "<figcaption>Accuracy by round</figcaption></figure>",
        f"<h2>Final prompt</h2><pre>{html.escape(final.prompt)}</pre>",
        "<h2>How the prompt evolved</h2>",
        evolution_html(record),
    ]
    write_atomic(run_dir / "report.html", _page(f"Run {run_dir.name}", "\n".join(body)))
    return path


@dataclass
class RoundChange:
    """What one round did to the global prompt."""

    round: int
    steps: list[list[str]]  # one row per client step: STEP_HEADER
    diff: list[tuple[str, str, list[int]]]  # ("-" | "+" | " ", sentence, clients it came from)


STEP_HEADER = ["client", "step", "batch acc", "best candidate", "kept", "verdict"]


def prompt_changes(record: RunRecord) -> list[RoundChange]:
    """Each round's client steps (scores, verdict, where the kept candidate came from), and the
    new global prompt as a diff of sentences against the previous one; every added sentence
    names the clients whose uploads hold it (or a near copy)."""
    assert record.initial is not None
    changes, previous = [], record.initial.prompt
    for entry in record.rounds:
        steps = [
            [
                str(client.client),
                str(step.step),
                f"{step.batch_accuracy:.2f}",
                "" if step.candidate_accuracy is None else f"{step.candidate_accuracy:.2f}",
                step.chosen,
                step.reason,
            ]
            for client in entry.clients
            for step in client.steps
        ]
        uploads = {c.client: text.split_sentences(c.prompt) for c in entry.clients}
        diff = [
            (mark, sentence, _sources(sentence, uploads) if mark == "+" else [])
            for mark, sentence in _sentence_diff(previous, entry.global_prompt)
        ]
        changes.append(RoundChange(entry.round, steps, diff))
        previous = entry.global_prompt
    return changes


def evolution(record: RunRecord) -> list[str]:
    """The Markdown of `prompt_changes`."""
    lines = []
    for change in prompt_changes(record):
        lines += [f"### Round {change.round}", ""]
        lines += [markdown_table(STEP_HEADER, change.steps), ""] if change.steps else []
        if all(mark == " " for mark, _, _ in change.diff):
            lines += ["The global prompt did not change.", ""]
            continue
        lines.append("```diff")
        lines += [f"{mark} {sentence}{_from(clients)}" for mark, sentence, clients in change.diff]
        lines += ["```", ""]
    return lines


def evolution_html(record: RunRecord) -> str:
    """The HTML of `prompt_changes`: removed sentences struck out, added ones marked, each with
    the clients it came from."""
    parts = []
    for change in prompt_changes(record):
        parts.append(f"<h3>Round {change.round}</h3>")
        if change.steps:
            parts.append(html_table(STEP_HEADER, change.steps))
        if all(mark == " " for mark, _, _ in change.diff):
            parts.append("<p>The global prompt did not change.</p>")
            continue
        items = []
        for mark, sentence, clients in change.diff:
            body = html.escape(sentence)
            if mark == "+":
                items.append(f'<li class="add"><ins>{body}</ins>{html.escape(_from(clients))}</li>')
            elif mark == "-":
                items.append(f'<li class="del"><del>{body}</del></li>')
            else:
                items.append(f"<li>{body}</li>")
        parts.append(f'<ul class="diff">{"".join(items)}</ul>')
    return "\n".join(parts)


def _from(clients: list[int]) -> str:
    if not clients:
        return ""
    return f"  (from client{'s' if len(clients) > 1 else ''} {', '.join(map(str, clients))})"


def _sources(sentence: str, uploads: dict[int, list[str]]) -> list[int]:
    """The clients whose upload holds the sentence; failing that, a near copy of it (a merge
    rewords)."""
    key = sentence.lower()
    exact = [c for c, sentences in uploads.items() if key in (s.lower() for s in sentences)]
    if exact:
        return exact
    return [c for c, sentences in uploads.items() if text.near_copy(sentence, sentences)]


def _sentence_diff(before: str, after: str) -> list[tuple[str, str]]:
    """(mark, sentence): "-" removed, "+" added, " " kept."""
    return [
        (line[0], line[2:])
        for line in difflib.ndiff(text.split_sentences(before), text.split_sentences(after))
        if line[:1] in "-+ "
    ]


def _engines(engines: dict) -> str:
    return ", ".join(f"{role} {name}" for role, name in EnginesConfig(**engines).resolved.items())


def _uid_cell(uid: dict | None) -> str:
    return f"{uid['mean']:.2f} / {uid['variance']:.1f}" if uid else ""
