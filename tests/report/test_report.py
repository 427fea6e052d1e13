"""Reports: tables over seeds, PNG plots, the per-run report, and the self-contained HTML page
(checked in a real headless Chromium when one is installed)."""

from __future__ import annotations

import asyncio
import json
import math
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from helpers.sweeps import ToyPool, make_sweep_file
from typer.testing import CliRunner

from fedtextgrad.cli import app
from fedtextgrad.errors import FedTextGradError
from fedtextgrad.llm import TokenLogprob
from fedtextgrad.metrics import profile_from_logprobs
from fedtextgrad.report import load_studies, table, write_report
from fedtextgrad.sweep import load_sweep, run_sweep

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def fake_uid(text: str, spiky: bool) -> dict:
    """A surprisal profile for a prompt (scripted engines have no log-probs)."""
    words = re.findall(r"\S+\s*", text)
    logprobs = [
        TokenLogprob(w, math.log(0.02 if spiky and i % 5 == 0 else 0.3))
        for i, w in enumerate(words[1:])
    ]
    return profile_from_logprobs(logprobs).to_dict()


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    """The toy 2 × 2 sweep, run once, with surprisal profiles added to its global prompts."""
    tmp = tmp_path_factory.mktemp("sweep")
    out = tmp / "out"
    asyncio.run(run_sweep(load_sweep(make_sweep_file(tmp)), out, pool=ToyPool()))
    for path in out.glob("*/results.json"):
        results = json.loads(path.read_text())
        spiky = "concat" in path.parent.name
        for entry in [results["initial"], *results["rounds"]]:
            entry["uid"] = fake_uid(entry.get("global_prompt") or entry["prompt"], spiky)
        path.write_text(json.dumps(results))
    return out


def test_the_table_averages_over_seeds_per_setting(sweep_dir):
    (study,) = load_studies([sweep_dir])
    assert study.name == "toy" and study.question == "Which aggregation?"
    assert [s.label for s in study.settings] == [
        {"federation.aggregation": "concat"},
        {"federation.aggregation": "uid_summarize"},
    ]
    header, rows = table(study)
    assert header[:4] == ["aggregation", "seeds", "test Δ (95% CI)", "initial test acc"]
    # 0 -> 1 on every test example of both seeds: +100 points, no spread
    assert [row[2] for row in rows] == ["+100 (+100..+100)"] * 2
    assert "surprisal var" in header
    final = header.index("final test acc")
    assert [row[0] for row in rows] == ["concat", "uid_summarize"]
    assert all(row[1] == "2" for row in rows)
    # The toy world always learns: 0 -> 1 on test in every run, so the std is 0.
    assert [row[final] for row in rows] == ["1.000 ± 0.000", "1.000 ± 0.000"]
    tokens = header.index("final prompt tokens")
    concat_tokens = float(rows[0][tokens].split()[0])
    assert concat_tokens > float(rows[1][tokens].split()[0])  # concatenation grows the prompt
    surprisal = header.index("surprisal var")
    assert float(rows[0][surprisal].split()[0]) > float(rows[1][surprisal].split()[0])


def test_loose_run_directories_are_grouped_by_the_keys_that_differ(sweep_dir):
    runs = sorted(p for p in sweep_dir.iterdir() if p.is_dir())
    (study,) = load_studies(runs)
    assert study.name == "runs" and study.keys == ["federation.aggregation"]
    assert [len(s.runs) for s in study.settings] == [2, 2]


def test_the_report_writes_markdown_json_pngs_and_a_self_contained_page(sweep_dir, tmp_path):
    out = write_report([sweep_dir], tmp_path / "report")
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["toy_accuracy_rounds.png", "toy_cost_rounds.png", "toy_surprisal.png"]
    for name in names:
        width, height = png_size(out / name)
        assert width > 300 and height > 200
    markdown = (out / "report.md").read_text()
    assert "| aggregation | seeds |" in markdown and "![Surprisal profile" in markdown
    assert "Count only the items of the asked kind." in markdown  # the final prompts
    summary = json.loads((out / "summary.json").read_text())
    first = summary[0]["settings"][0]
    assert first["metrics"]["final test acc"] == {"mean": 1.0, "ci95": 0.0, "n": 2}
    assert (first["paired"]["diff"], first["paired"]["runs"]) == (1.0, 2)
    page = (out / "index.html").read_text()
    assert page.count('src="data:image/png;base64,') == 3
    assert external_references(page) == []


def test_a_numeric_sweep_gets_an_accuracy_vs_key_plot(tmp_path):
    sweep = tmp_path / "k.toml"
    make_sweep_file(tmp_path)  # writes base.toml beside it
    sweep.write_text('base = "base.toml"\nseeds = [0]\n[grid]\n"train.local_steps" = [1, 2]\n')
    asyncio.run(run_sweep(load_sweep(sweep), tmp_path / "k", pool=ToyPool()))
    out = write_report([tmp_path / "k"], tmp_path / "report")
    assert (out / "k_accuracy_vs_local_steps.png").is_file()
    assert not (out / "k_surprisal.png").exists()  # no metrics recorded: no profile plot


def test_each_finished_run_has_its_own_report(sweep_dir):
    run = sweep_dir / "aggregation=concat__seed=0"
    report = (run / "report.md").read_text()
    assert report.startswith("# Run aggregation=concat__seed=0")
    assert "test 0.00 -> 1.00 (+100 pts, 95% CI +100..+100, n=" in report
    assert "| round | val acc |" in report and "![accuracy by round](accuracy.png)" in report
    png_size(run / "accuracy.png")
    # How the prompt evolved: each step's verdict, and the new global prompt as a diff.
    evolution = report[report.index("## How the prompt evolved") :]
    assert "### Round 1" in evolution and "| client | step | batch acc |" in evolution
    assert "accepted" in evolution or "reverted" in evolution
    diff = evolution[evolution.index("```diff") :].splitlines()[1:]
    added = [line for line in diff[: diff.index("```")] if line.startswith("+ ")]
    assert added and any("(from client" in line for line in added)  # who contributed the rule


def test_report_command_and_its_errors(sweep_dir, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["report", str(sweep_dir), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "index.html").is_file()
    result = runner.invoke(app, ["report", str(tmp_path / "nothing"), "--out", str(tmp_path)])
    assert isinstance(result.exception, FedTextGradError)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FedTextGradError, match="no runs found"):
        load_studies([tmp_path / "empty"])
    for damage in ('{"status": "complete"}', "[1]", "[" * 100_000):  # one line, no traceback
        (tmp_path / "bad").mkdir(exist_ok=True)
        (tmp_path / "bad" / "results.json").write_text(damage)
        with pytest.raises(FedTextGradError, match="results.json is not"):
            load_studies([tmp_path / "bad"])


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.urls += [v for k, v in attrs if k in ("src", "href", "srcset", "action", "data") and v]


def external_references(page: str) -> list[str]:
    """Every URL the page would load that is not inline data."""
    parser = _Links()
    parser.feed(page)
    urls = [u for u in parser.urls if not u.startswith(("data:", "#"))]
    return urls + re.findall(r"url\((?!['\"]?data:)[^)]*\)|@import", page)


# -- in a real browser -------------------------------------------------------------------------

CHROMIUM = next(
    (p for name in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(name))),
    None,
)
PROBE = """<script>
window.addEventListener("load", () => {
  const images = [...document.images].map(i => [i.naturalWidth, i.naturalHeight, i.complete]);
  const fetched = performance.getEntriesByType("resource").map(e => e.name);
  const probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify({images, fetched, width: document.documentElement.scrollWidth});
  document.body.appendChild(probe);
});
</script>"""


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile{len(list(tmp_path.glob('profile*')))}"
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        "--disable-extensions",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # should the page reach out, it gets nowhere
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_the_html_page_renders_in_headless_chromium(sweep_dir, tmp_path):
    out = write_report([sweep_dir], tmp_path / "report")
    page = (out / "index.html").read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    dom = chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.DOTALL)
    assert found, f"no probe in the DOM: {dom.stderr[-2000:]}"
    state = json.loads(found.group(1).replace("&quot;", '"'))
    assert len(state["images"]) == 3
    assert all(width > 0 and height > 0 and done for width, height, done in state["images"])
    assert state["fetched"] == []  # nothing was loaded from anywhere
    assert state["width"] <= 1366  # no horizontal overflow at laptop width... of the page body

    shot = tmp_path / "laptop.png"
    result = chromium(
        tmp_path,
        "--window-size=1366,768",
        "--hide-scrollbars",
        f"--screenshot={shot}",
        (out / "index.html").as_uri(),
    )
    assert shot.is_file(), result.stderr[-2000:]
    assert png_size(shot) == (1366, 768)
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.std() > 0.05  # not a blank page


def test_a_sweep_given_twice_counts_once_and_namesakes_stay_apart(sweep_dir, tmp_path):
    assert len(load_studies([sweep_dir, sweep_dir, sweep_dir / "aggregation=concat__seed=0"])) == 1
    shutil.copytree(sweep_dir, tmp_path / "copy")
    studies = load_studies([sweep_dir, tmp_path / "copy"])
    assert [s.name for s in studies] == ["toy", "toy-2"]


def test_a_heterogeneous_study_reports_the_accuracy_of_every_task(tmp_path):
    (tmp_path / "base.toml").write_text(
        'seed = 0\n[task]\nnames = ["bbh_object_counting", "bbh_multistep_arithmetic_two"]\n'
        'train_size = 4\n[federation]\nclients = 2\npartition = "by_task"\n'
        "[eval]\nval_size = 2\ntest_size = 2\n[llm]\ncache = false\n"
    )
    (tmp_path / "h.toml").write_text(
        'base = "base.toml"\n[grid]\nfederation.aggregation = ["concat", "summarize"]\n'
    )
    asyncio.run(run_sweep(load_sweep(tmp_path / "h.toml"), tmp_path / "h", pool=ToyPool()))
    (study,) = load_studies([tmp_path / "h"])
    header, rows = table(study)
    assert "test acc bbh_object_counting" in header
    assert "test acc bbh_multistep_arithmetic_two" in header
    assert all(cell != "–" for row in rows for cell in row)
    run_report = next((tmp_path / "h").glob("*/report.md")).read_text()
    assert "| val bbh_object_counting | val bbh_multistep_arithmetic_two |" in run_report


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_a_runs_html_page_shows_the_prompt_diff_and_the_step_verdicts(sweep_dir, tmp_path):
    page = sweep_dir / "aggregation=concat__seed=0" / "report.html"
    assert not external_references(page.read_text())
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", DIFF_PROBE + "</body>"))
    dom = chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.DOTALL)
    assert found, f"no probe in the DOM: {dom.stderr[-2000:]}"
    state = json.loads(found.group(1).replace("&quot;", '"'))
    assert state["added"] and all(height > 0 for height in state["added"])  # drawn, not hidden
    assert "from client" in state["text"] and (
        "accepted" in state["text"] or "reverted" in state["text"]
    )
    shot = tmp_path / "run.png"
    chromium(tmp_path, "--window-size=1366,2000", f"--screenshot={shot}", page.as_uri())
    from matplotlib.image import imread

    assert imread(shot).std() > 0.05


DIFF_PROBE = """<script>
window.addEventListener("load", () => {
  const added = [...document.querySelectorAll("ul.diff ins")].map(e => e.getBoundingClientRect().height);
  const probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify({added, text: document.body.innerText});
  document.body.appendChild(probe);
});
</script>"""


def test_each_added_sentence_names_the_clients_it_came_from():
    from fedtextgrad.record import ClientUpload, Initial, Round, Run
    from fedtextgrad.report.render import prompt_changes

    def client(number: int, prompt: str) -> ClientUpload:  # only the fields the diff reads
        return ClientUpload.model_construct(client=number, prompt=prompt, steps=[])

    entry = Round.model_construct(
        round=1,
        clients=[client(0, "Answer. Check list 5."), client(1, "Answer. Check list 2.")],
        global_prompt="Answer. Check list 5. Check the lists twice. Mind list 2!",
    )
    results = Run.model_construct(initial=Initial.model_construct(prompt="Answer."), rounds=[entry])
    (change,) = prompt_changes(results)
    assert change.diff == [
        (" ", "Answer.", []),
        ("+", "Check list 5.", [0]),  # exact: only the client that wrote it
        ("+", "Check the lists twice.", []),  # the merge's own
        ("+", "Mind list 2!", []),
    ]
