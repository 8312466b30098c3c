"""dvc.yaml lists, for every stage, exactly the library modules its script imports (directly or
through other modules), so a code edit re-runs the stages it can change and no others."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
#: Modules no stage depends on: config.py, settings.py and data/params.py only validate
#: params (the values are tracked as params), errors.py holds exception classes, package
#: __init__ files hold no code that changes a result. Their imports are not followed either.
NOT_DEPS = {"hintpose/config.py", "hintpose/settings.py", "hintpose/data/params.py",
            "hintpose/topdown/params.py",
            "hintpose/errors.py"}


def imported_files(path: Path) -> set[str]:
    """Repository paths of the hintpose modules ``path`` imports (anywhere in the file)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hintpose"):
            assert node.module is not None
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("hintpose"))
    files = {Path(*name.split(".")).with_suffix(".py") for name in names}
    return {str(f) for f in files if (ROOT / f).is_file()}


def library_closure(script: str) -> set[str]:
    seen: set[str] = set()
    todo = [script]
    while todo:
        current = todo.pop()
        if current in NOT_DEPS or current.endswith("__init__.py"):
            continue
        for name in imported_files(ROOT / current) - seen:
            seen.add(name)
            todo.append(name)
    return {f for f in seen - NOT_DEPS if not f.endswith("__init__.py")}


def stages() -> dict[str, dict]:
    data = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    return {name: stage.get("do", stage) for name, stage in data["stages"].items()}


def paths(entries: list) -> set[str]:
    """The paths of a dvc.yaml list whose entries are a path or {path: options}."""
    return {str(next(iter(e)) if isinstance(e, dict) else e).rstrip("/") for e in entries}


def module_level_imports(path: Path) -> set[str]:
    """Top-level module names imported when ``path`` is imported (imports inside functions run
    only when the function is called, so they are not counted)."""
    names: set[str] = set()
    todo = list(ast.parse(path.read_text()).body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        else:
            todo.extend(ast.iter_child_nodes(node))
    return names


@pytest.mark.parametrize("name", sorted(stages()))
def test_stage_deps_are_its_scripts_import_closure(name: str) -> None:
    stage = stages()[name]
    script = stage["cmd"].split()[1]
    deps = {str(d).rstrip("/") for d in stage["deps"]}
    assert script in deps
    listed = {d for d in deps if d.startswith("hintpose/")}
    needed = library_closure(script)
    assert not needed - listed, f"{name}: missing deps {sorted(needed - listed)}"
    assert not listed - needed, f"{name}: deps it does not import {sorted(listed - needed)}"


@pytest.mark.parametrize("name", sorted(stages()))
def test_dataset_readers_depend_on_its_digest(name: str) -> None:
    """A stage given ``--dataset data/dataset`` depends on the digest the prepare stage writes
    next to it, not on the folder (DVC would hash its files once per such stage)."""
    stage = stages()[name]
    deps = {str(d).rstrip("/") for d in stage.get("deps", [])}
    assert "data/dataset" not in deps
    if "--dataset data/dataset" in stage["cmd"]:
        assert "data/dataset_digest.json" in deps
    if name == "prepare":
        assert {"data/dataset", "data/dataset_digest.json"} <= paths(stage["outs"])


def test_detect_needs_no_pose_module_and_score_no_torch() -> None:
    """The detector's inference does not re-run when a pose module changes, and scoring runs
    without torch (its closure imports no module that imports torch)."""
    detect = library_closure("stages/detect.py")
    assert "hintpose/detection/detect.py" in detect
    assert not {f for f in detect if f.startswith(("hintpose/topdown/", "hintpose/models/"))}
    closure = library_closure("stages/score.py")
    assert {"hintpose/scoring/evaluation.py", "hintpose/scoring/results.py"} <= closure
    for module in closure | {"stages/score.py"}:
        heavy = module_level_imports(ROOT / module) & {"torch", "torchvision", "mmdet", "mmcv"}
        assert not heavy, f"{module} imports {sorted(heavy)} at module level"
    # and in fact: loading the score stage's script and its modules leaves torch unloaded
    code = (
        "import importlib, importlib.util, sys\n"
        f"for m in {sorted(f[:-3].replace('/', '.') for f in closure)!r}:\n"
        "    importlib.import_module(m)\n"
        "spec = importlib.util.spec_from_file_location('score_stage', 'stages/score.py')\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3])\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]", f"the score stage loads torch: {proc.stdout}"
