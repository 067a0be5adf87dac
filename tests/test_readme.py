"""The README's command examples with output (`$ python ...` followed by what it prints) run as
written, in a folder holding what they name, and print the README's first line."""

import re
import shutil
import subprocess

import pytest
import yaml
from conftest import PYTHON, REPO

from pgkeras.config import Config, _flatten, config_to_dict, load_config, save_config


def readme_examples() -> list[tuple[str, str]]:
    """(command, first line of its output) for every `$ ` line in the README's code blocks."""
    examples, lines, in_block = [], (REPO / "README.md").read_text().splitlines(), False
    for index, line in enumerate(lines):
        if line.startswith("```"):
            in_block = not in_block
        elif in_block and line.startswith("$ ") and not lines[index + 1].startswith(("$ ", "```")):
            examples.append((line[2:], lines[index + 1]))
    return examples


def matches(expected: str, line: str) -> bool:
    """`...` in the README stands for the rest of a line, or any text in the middle of one."""
    pattern = ".*".join(re.escape(part.strip()) for part in expected.split("..."))
    return re.fullmatch(pattern + (".*" if expected.endswith("...") else ""), line.strip()) is not None


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder with the repository's configs and scripts and the files the examples name."""
    folder = tmp_path_factory.mktemp("readme")
    for name in ("configs", "scripts"):  # copies, as in a clone: the scripts find configs/ beside them
        shutil.copytree(REPO / name, folder / name)
    (folder / "broken.yaml").write_text("seed: 0\nenv:\n  id: a: b\n")
    (folder / "notes.txt").write_text("not a folder")
    (folder / "runs" / "try1").mkdir(parents=True)
    save_config(load_config(REPO / "configs" / "pong.yaml"), folder / "runs" / "try1" / "config.yaml")
    trained = subprocess.run(
        [PYTHON, "scripts/train.py", "--config", "configs/cartpole.yaml", "--set", "train.max_steps=300",
         "--run-dir", "cartpole-run"],
        cwd=folder, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    return folder


def test_the_readme_has_examples():
    assert len(readme_examples()) >= 10


@pytest.mark.parametrize(("command", "expected"), readme_examples(), ids=lambda value: value[:60])
def test_a_readme_example_prints_what_the_readme_shows(workspace, command, expected):
    assert command.startswith("python ")
    words = command.split()
    result = subprocess.run([PYTHON, *words[1:]], cwd=workspace, capture_output=True, text=True, timeout=300)
    output = (result.stdout or result.stderr).strip().splitlines()
    assert output and matches(expected, output[0]), (expected, result.stdout, result.stderr)
    if expected.startswith("error:"):
        assert result.returncode == 2 and result.stderr.strip().splitlines() == [output[0]]


def test_the_python_api_example_runs_as_written(tmp_path):
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Python API", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    result = subprocess.run([PYTHON, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(
        r"\d+ updates, running reward \d+, 10 games \d+", result.stdout.strip().splitlines()[-1]
    )
    assert (tmp_path / "log.csv").is_file() and (tmp_path / "runs" / "cartpole-api" / "best.keras").is_file()


def config_defaults() -> dict[str, object]:
    """Every key of the config as `section.key` (the LQR's matrices as `env.lqr.A`...), with its default:
    the flattening that resumes compare settings with (`env.kwargs` stays one key)."""
    return _flatten(config_to_dict(Config()))


def shows(value: object, expected: object) -> bool:
    """Whether a default as the README writes it is the config's: `1e-3`, which PyYAML reads as a
    string, stands for 0.001."""
    try:
        return value == expected or float(value) == expected
    except (TypeError, ValueError):
        return False


def test_the_readme_config_table_names_every_key_with_its_default():
    readme = (REPO / "README.md").read_text()
    table = readme.split("| key | default | meaning |", 1)[1].split("\n\n", 1)[0]
    defaults, named = config_defaults(), set()
    for keys, shown in re.findall(r"^\| (`[^|]+?) \|([^|]*)\|", table, re.M):
        # "`train.epochs` / `clip_range`": the later keys are in the first key's section.
        first, *others = [key.strip(" `") for key in keys.split(" / ")]
        section = first.rsplit(".", 1)[0] + "." if "." in first else ""
        row = [first, *(section + key for key in others)]
        if not shown.strip():  # `env.kwargs`, `env.lqr.*`: tables of their own, no one default
            prefixes = [key.strip("*") for key in re.findall(r"`([^`]+)`", keys)]
            named.update(key for key in defaults if key.startswith(tuple(prefixes)))
            continue
        values = [yaml.safe_load(value.strip(" `")) for value in shown.split(" / ")]
        assert len(values) == len(row), (keys, shown)
        for key, value in zip(row, values, strict=True):
            assert shows(value, defaults[key]), (key, value, defaults[key])
            named.add(key)
    assert named == set(defaults), set(defaults) - named
