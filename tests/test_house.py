"""The house: imports point one way, every command starts, and the wheel works on its own.

* No import cycle among the package's modules (imports inside functions count too), and no
  stage imports a later one: data -> preprocess -> learn -> (explain, search) -> report.
* No module over 500 lines of code, no function over 80 lines.
* ``python -m mammo_ray <command>`` reaches every command.
* A wheel built from the tree and installed without its dependencies into an empty folder
  runs ``python -m mammo_ray.search --help`` and finds the shipped ``published.yaml``.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mammo_ray.__main__ import COMMANDS
from mammo_ray.__main__ import main as dispatch

PACKAGE = Path(__file__).resolve().parents[1] / "mammo_ray"
STAGES = ("data", "preprocess", "learn", "explain", "search", "report")
"""Subpackages in data-flow order; explain and search may not import each other's later
stages: search may import explain (it explains the best model), explain never imports search."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}``, from every import statement (ast)."""
    modules = {_module_name(p): p for p in package.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target not in (name, package.name):
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first == last), or None; depth-first search."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def _stage(module: str) -> int | None:
    parts = module.split(".")
    return STAGES.index(parts[1]) if len(parts) > 2 and parts[1] in STAGES else None


def test_find_cycle_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_the_package():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_stages_import_only_earlier_stages():
    upward = [
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        for target in targets
        if _stage(module) is not None
        and _stage(target) is not None
        and _stage(target) > _stage(module)
        and not (module.startswith("mammo_ray.search") and target.startswith("mammo_ray.report"))
    ]
    assert not upward, "imports pointing up the data flow:\n" + "\n".join(upward)


MAX_CODE_LINES = 500
MAX_FUNCTION_LINES = 80


def test_modules_and_functions_stay_short():
    """Code lines: not blank, not a comment. A function's lines include its docstring."""
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        code = sum(1 for ln in source.splitlines() if ln.strip() and not ln.strip().startswith("#"))
        if code > MAX_CODE_LINES:
            too_long.append(f"{path.relative_to(PACKAGE.parent)}: {code} lines of code")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.name}:{node.lineno} {node.name}: {lines} lines")
    assert not too_long, "\n".join(too_long)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_answers_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        dispatch([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_no_command_prints_the_list_and_an_unknown_one_exits_2(capsys):
    assert dispatch([]) == 2
    listing = capsys.readouterr().out
    assert all(f"  {name} " in listing for name in COMMANDS)
    assert dispatch(["serch"]) == 2
    assert "unknown command 'serch'" in capsys.readouterr().err


def test_data_summary_stays_light():
    code = (
        "import sys, mammo_ray.__main__, mammo_ray.data.__main__; "
        "print(sorted({'torch', 'ray', 'mlflow', 'lime'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_installed_wheel_finds_its_search_spaces(tmp_path):
    repo = PACKAGE.parent
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(wheels), str(repo)],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("mammo_ray-*.whl")
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target)]
        + [str(wheel)],
        check=True,
        capture_output=True,
    )
    # The installed copy first on the path, the checkout nowhere on it (cwd is tmp_path).
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = (
        "import mammo_ray, mammo_ray.search.space as s; "
        "print(mammo_ray.__file__); print(s.PUBLISHED_CONFIG.is_file()); "
        "print(s.load_search_space(s.BUILTIN_SPACES / 'default.yaml').published_point() != {})"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    file, published, loads = out.stdout.split()
    assert Path(file).is_relative_to(target) and published == "True" and loads == "True"
    help_out = subprocess.run(
        [sys.executable, "-m", "mammo_ray.search", "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert help_out.returncode == 0 and "search_spaces/default.yaml" in help_out.stdout
