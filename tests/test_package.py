"""pgkeras works without a clone: a built wheel installed into a fresh virtual environment gives the
`pgkeras` command and `python -m pgkeras`, with the shipped recipes as package data."""

import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from conftest import PYTHON, REPO


def run(*args, cwd, timeout=300):
    return subprocess.run(
        [str(arg) for arg in args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_the_wheel_installs_and_trains_plays_and_helps_from_an_empty_folder(tmp_path):
    built = run(PYTHON, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", tmp_path / "dist", REPO,
                cwd=tmp_path)  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("pgkeras-*.whl")

    # A fresh environment that sees this one's dependencies (Keras, TensorFlow, ale-py...) but not its
    # pgkeras: the editable install's import hook lives in a .pth file, which a path added by another
    # .pth file does not run.
    environment = tmp_path / "env"
    venv.EnvBuilder(with_pip=False).create(environment)
    python = environment / "bin" / "python"
    target = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path)
    environment_site = Path(target.stdout.strip())
    environment_site.mkdir(parents=True, exist_ok=True)
    (environment_site / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    installed = run(
        PYTHON, "-m", "pip", "--python", python, "install", "--no-deps", "--quiet", wheel, cwd=tmp_path
    )
    assert installed.returncode == 0, installed.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    where = run(python, "-c", "import pgkeras; print(pgkeras.__file__)", cwd=empty)
    assert where.stdout.startswith(str(environment)), where.stdout + where.stderr
    command = environment / "bin" / "pgkeras"
    trained = run(command, "train", "pong", "--set", "train.max_steps=20000", "--run-dir", "r", cwd=empty)
    assert trained.returncode == 0, trained.stderr
    assert "done:" in trained.stdout and (empty / "r" / "model.keras").is_file()
    played = run(command, "play", "r", "--episodes", "1", "--max-steps", "100", cwd=empty)
    assert played.returncode == 0, played.stderr
    assert "100 steps (cut by --max-steps)" in played.stdout
    helped = run(python, "-m", "pgkeras", "--help", cwd=empty)
    assert helped.returncode == 0 and "train" in helped.stdout and "play" in helped.stdout
    listed = run(command, "train", "--list", cwd=empty)
    assert {"pong", "pong_karpathy", "pong_blog", "cartpole"} <= {
        line.split()[0] for line in listed.stdout.splitlines()
    }


def test_plot_and_help_do_not_import_tensorflow(tmp_path):
    """A plot needs matplotlib and the CSV, not half a gigabyte of TensorFlow."""
    from pgkeras.metrics import COLUMNS

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    rows = [
        ",".join(map(str, [u, 1000 * u, u, -21 + u, -21 + u, 0.0, 1000, 2000.0, u, "nan"])) for u in (1, 2)
    ]
    (run_dir / "metrics.csv").write_text(",".join(COLUMNS) + "\n" + "\n".join(rows) + "\n")
    code = (
        "import sys\n"
        "from pgkeras.cli import main\n"
        f"assert main(['plot', {str(run_dir)!r}, '--out', {str(tmp_path / 'c.png')!r}]) == 0\n"
        "for command in (['--help'], ['train', '--help'], ['play', '--help'], ['plot', '--help']):\n"
        "    try:\n"
        "        main(command)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(name for name in ('tensorflow', 'keras', 'jax') if name in sys.modules))\n"
    )
    result = run(sys.executable, "-c", code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "c.png").stat().st_size > 1000


def imported_pgkeras_modules(path: Path) -> set[str]:
    """The pgkeras modules a module imports anywhere in its code (also inside functions)."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pgkeras"):
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("pgkeras"))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith("pgkeras.")
        ):
            names.add(node.value)  # importlib.import_module("pgkeras.play") and the lazy exports
    return names


def test_modules_import_downwards_only():
    modules = {f"pgkeras.{path.stem}": path for path in (REPO / "pgkeras").glob("*.py")}
    modules.pop("pgkeras.__init__")
    graph = {
        name: {other for other in imported_pgkeras_modules(path) if other in modules and other != name}
        for name, path in modules.items()
    }
    done, active = set(), []

    def visit(name):
        if name in active:
            cycle = active[active.index(name) :] + [name]
            raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
        if name not in done:
            active.append(name)
            for other in sorted(graph[name]):
                visit(other)
            active.pop()
            done.add(name)

    for name in sorted(graph):
        visit(name)
    assert "pgkeras.distributed" not in graph["pgkeras.processes"]  # the worker lives in rollout
    assert "pgkeras.play" not in graph["pgkeras.train"]  # evaluation is not in the play module
