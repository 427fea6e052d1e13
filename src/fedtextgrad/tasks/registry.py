"""Task names -> loaders: the three BBH tasks, GSM8K (two splits), the 19 packaged
instruction-induction tasks (`ii_*`), or a path to a user file."""

from __future__ import annotations

from pathlib import Path

from fedtextgrad.errors import ConfigError, DataError
from fedtextgrad.tasks import bbh, custom, gsm8k, instruction_induction
from fedtextgrad.tasks.base import DATA_ENV, Example, Task, draw, resolve_data_dir


def list_tasks() -> list[str]:
    """The built-in task names."""
    return [*bbh.BBH_TASKS, *gsm8k.NAMES, *instruction_induction.NAMES]


def _custom_path(name: str | Path) -> Path:
    """`name` as a task file, or an error listing what a task name can be."""
    path = Path(name).expanduser()
    if path.suffix.lower() in custom.SUFFIXES:
        if not path.is_file():
            raise DataError(f"task file '{name}' not found: check the path")
        return path
    raise ConfigError(
        f"unknown task '{name}': use one of {', '.join(list_tasks())} "
        f"or a path to a .json/.jsonl/.csv file"
    )


def load_task(
    name: str | Path,
    *,
    data_dir: str | Path | None = None,
    train_size: int | None = None,
    val_size: int | None = None,
    test_size: int | None = None,
    data_seed: int = 0,
) -> Task:
    """A task with its train/val/test splits, each cut to its first *_size examples.

    Real files come from data_dir or $FEDTEXTGRAD_DATA; a BBH task whose file is absent is
    generated (seeded by data_seed, which real files ignore: their splits are fixed). The
    `ii_*` tasks ship with the package; data_seed draws their train and validation examples.
    """
    sizes = (train_size, val_size, test_size)
    if name in bbh.BBH_TASKS:
        return bbh.load(name, resolve_data_dir(data_dir), data_seed, sizes)
    if name in gsm8k.NAMES:
        return gsm8k.load(resolve_data_dir(data_dir), sizes, name)
    if name in instruction_induction.NAMES:
        return instruction_induction.load(name, data_seed, sizes)
    return custom.load(_custom_path(name), sizes)


def sample_examples(
    name: str | Path, n: int, seed: int, data_dir: str | Path | None = None
) -> list[Example]:
    """n examples of a task: drawn from its data file when found, else freshly generated."""
    if n < 1:
        raise ConfigError(f"asked for {n} examples: use n >= 1")
    if name in bbh.BBH_TASKS:
        return bbh.sample(name, n, seed, resolve_data_dir(data_dir))
    if name in gsm8k.NAMES:
        return gsm8k.sample(n, seed, resolve_data_dir(data_dir), name)
    if name in instruction_induction.NAMES:
        return instruction_induction.sample(name, n, seed)
    path = _custom_path(name)
    return draw(custom.read_examples(path, path.stem), n, seed, str(path))


def data_status(data_dir: str | Path | None = None) -> dict[str, str]:
    """For each built-in task, the real file found or what happens without one."""
    root = resolve_data_dir(data_dir)
    status = {}
    for name in bbh.BBH_TASKS:
        path = bbh.data_file(name, root)
        status[name] = f"file {path}" if path else "no file: offline generator"
    files = gsm8k.data_files(root)
    status[gsm8k.NAME] = (
        f"files {files[0]}, {files[1]}"
        if files
        else f"no files: unavailable until {DATA_ENV} is set"
    )
    for name in instruction_induction.NAMES:
        status[name] = "packaged"
    return status
