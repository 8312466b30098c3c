"""dvc.yaml lists, for every stage, exactly the library modules its script imports (directly or
through other modules), so a code edit re-runs the stages it can change and no others."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
#: Modules no stage depends on: config.py only validates params (the values are tracked as
#: params), errors.py holds exception classes, package __init__ files hold no code that
#: changes a result. Imports made by config.py are not followed either.
NOT_DEPS = {"hintpose/config.py", "hintpose/errors.py", "hintpose/__init__.py",
            "hintpose/data/__init__.py", "hintpose/models/__init__.py"}


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
        if current in NOT_DEPS:
            continue
        for name in imported_files(ROOT / current) - seen:
            seen.add(name)
            todo.append(name)
    return seen - NOT_DEPS


def stages() -> dict[str, dict]:
    data = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    return {name: stage.get("do", stage) for name, stage in data["stages"].items()}


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
        assert {"data/dataset", "data/dataset_digest.json"} <= set(stage["outs"])
