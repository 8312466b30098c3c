"""The library's shape: modules small enough to read, no import cycle, readable DVC views."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400
#: What `dvc metrics show` / `dvc exp show` may list: the headline figures, not diagnostics.
MAX_METRIC_COLUMNS = 40


def modules() -> dict[str, Path]:
    out = {}
    for path in (ROOT / "hintpose").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def test_no_module_is_over_the_line_limit() -> None:
    long = {name: n for name, path in modules().items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_import_graph_has_no_cycle() -> None:
    mods = modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hintpose"):
                deps.add(node.module)
                deps.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("hintpose"))
        graph[name] = {d for d in deps if d in mods and d != name and d != "hintpose"}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            assert state.get(dep) != 1, f"import cycle: {' -> '.join([*stack, node, dep])}"
            if dep not in state:
                visit(dep, [*stack, node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def _leaves(obj: object) -> int:
    if isinstance(obj, dict):
        return sum(_leaves(v) for v in obj.values())
    return 1 if isinstance(obj, int | float) and not isinstance(obj, bool) else 0


def registered_metrics() -> list[str]:
    """Every file dvc.yaml registers as a metric (stage-level and top-level)."""
    data = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    files = [str(next(iter(m))) if isinstance(m, dict) else str(m)
             for m in data.get("metrics", [])]
    for stage in data["stages"].values():
        for m in stage.get("do", stage).get("metrics", []):
            files.append(str(next(iter(m))) if isinstance(m, dict) else str(m))
    return files


def test_registered_metrics_are_a_few_dozen_headline_figures() -> None:
    """`dvc metrics show` and `dvc exp show` list one column per number in these files (the
    committed ones of the default run): a few dozen, with AP and the cue-probe follow rate
    among them; diagnostics stay in metrics/details/."""
    files = registered_metrics()
    assert all("${" not in f for f in files), "a foreach stage registers one file per model"
    columns = 0
    for name in files:
        path = ROOT / name
        assert path.is_file(), f"{name}: registered metrics file missing (run dvc repro)"
        columns += _leaves(json.loads(path.read_text()))
    assert 10 <= columns <= MAX_METRIC_COLUMNS, f"{columns} metric columns in {files}"
    summary = json.loads((ROOT / "metrics" / "summary.json").read_text())
    assert {"baseline", "icrr", "ensemble", "ensemble_posefix"} <= set(summary["AP"])
    assert {"det", "det_hard", "gt", "gt_hard"} <= set(summary["AP"]["baseline"])
    assert "icrr" in summary["follow_rate"]


def test_readme_stays_short() -> None:
    assert len((ROOT / "README.md").read_bytes()) <= 12 * 1024
