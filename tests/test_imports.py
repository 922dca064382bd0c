"""odkd's import graph: no cycle, and no module imports one from a higher layer.

The graph is read from the source with ``ast`` (nothing is imported): every ``import`` and
``from ... import`` in a module counts, at module level or inside a function, under
``TYPE_CHECKING`` or not, with relative imports resolved. ``from pkg import name`` is an edge
to ``pkg.name`` when that is a module, else to ``pkg``. Importing ``a.b.c`` runs the
``__init__`` of ``a`` and ``a.b`` too; those implicit edges are left out (every module would
then depend on the package root, which imports the API). Imports by a computed name
(``importlib.import_module(f"odkd.commands.{name}")``) are not seen.
"""
from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Lower layers never import higher ones. A module takes the layer of the longest entry that
# is its name or a package above it ("odkd.data" covers odkd.data.coco; "odkd" is the package
# root alone, so a new subpackage must be placed here); modules of one layer may import each
# other, and the cycle check keeps that acyclic.
LAYERS: dict[str, int] = {
    # foundations: no odkd imports beyond each other
    "odkd._version": 0, "odkd.errors": 0, "odkd.utils": 0, "odkd.config": 0,
    "odkd.geometry": 0, "odkd.keypoints": 0,
    # keypoints <-> heatmaps, both directions: shared by data, eval and deploy
    "odkd.codec": 1,
    # what a deployed model needs besides weights (its codec included), and an ONNX export
    # run like an odkd model: evaluation and the checkpoint teacher run exports too
    "odkd.spec": 1, "odkd.onnxrt": 1,
    # datasets: COCO records, crops and targets; the synthetic data generator
    "odkd.data": 2, "odkd.synth": 2,
    "odkd.models": 3,
    # what students learn from: ground-truth losses, distillation, pretrained outside teachers
    "odkd.losses": 4, "odkd.distill": 4, "odkd.teachers": 4,
    "odkd.eval": 5,
    # training and evaluation loops
    "odkd.engine": 6,
    # using what the engine trains: deployment, and experiments made of many runs
    "odkd.deploy": 7, "odkd.experiment": 7,
    # entry points
    "odkd.api": 8, "odkd.commands": 8, "odkd.cli": 8, "odkd": 8,
}


def module_graph(src: Path, package: str) -> dict[str, set[str]]:
    """``{module: {modules it imports}}`` for every module of ``package`` under ``src``
    (edges to other packages left out)."""
    files = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        files[".".join(parts)] = (path, is_pkg)

    def nearest(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for mod, (path, is_pkg) in files.items():
        here = mod if is_pkg else mod.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(nearest(a.name) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[:len(here.split(".")) - node.level + 1]
                    full = ".".join(base + ([node.module] if node.module else []))
                else:
                    full = node.module or ""
                for a in node.names:
                    sub = f"{full}.{a.name}"
                    targets.add(sub if sub in files else nearest(full))
        graph[mod] = {t for t in targets if t is not None and t != mod
                      and (t == package or t.startswith(package + "."))}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None (depth-first search)."""
    state: dict[str, int] = {}   # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def layer_of(module: str) -> int | None:
    name = module
    while "." in name:
        if name in LAYERS:
            return LAYERS[name]
        name = name.rpartition(".")[0]
    return LAYERS.get(module)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return module_graph(SRC, "odkd")


def test_the_import_graph_has_no_cycle(graph):
    assert len(graph) > 50  # the walk found the package
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_module_has_a_layer(graph):
    missing = sorted(m for m in graph if layer_of(m) is None)
    assert not missing, f"add these modules to LAYERS in {Path(__file__).name}: {missing}"


def test_no_module_imports_from_a_higher_layer(graph):
    upward = sorted(f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
                    for m, targets in graph.items() for t in targets
                    if None not in (layer_of(m), layer_of(t)) and layer_of(t) > layer_of(m))
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_the_codec_sits_below_data_eval_and_deploy(graph):
    """The codec owns encoding and decoding; data, evaluation and deployment use it."""
    codec = {m for m in graph if m == "odkd.codec" or m.startswith("odkd.codec.")}
    assert {"odkd.codec.encode", "odkd.codec.decode"} <= codec
    below = {t for m in codec for t in graph[m]} - codec
    assert below <= {"odkd.config", "odkd.errors", "odkd.geometry", "odkd.keypoints"}, below
    assert "odkd.codec" in graph["odkd.data.dataset"]
    assert "odkd.codec" in graph["odkd.engine.evaluate"]
    assert "odkd.codec" in graph["odkd.deploy.infer"]


def test_the_spec_and_the_onnxruntime_model_sit_below_deployment(graph):
    assert "odkd.spec" in graph["odkd.onnxrt"]
    assert not graph["odkd.spec"] & {"odkd.onnxrt", "odkd.deploy.loader"}
    # the checkpoint teacher runs `odkd export` files through them
    assert "odkd.onnxrt" in graph["odkd.teachers.checkpoint"]


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


def test_the_walk_sees_relative_function_level_and_type_checking_imports(tmp_path):
    """The checks above can fail: a cycle closed by a relative import inside a function is
    found, and so is one through a TYPE_CHECKING import and ``from pkg import module``."""
    src = _package(tmp_path, {
        "__init__.py": "",
        "a.py": "def f():\n    from .sub import b\n",
        "sub/__init__.py": "",
        "sub/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                    "    from pkg.sub.c import X\n",
        "sub/c.py": "import os\nfrom .. import a\nfrom ..a import f\nimport pkg.sub\n",
    })
    g = module_graph(src, "pkg")
    assert g == {"pkg": set(), "pkg.a": {"pkg.sub.b"}, "pkg.sub": set(),
                 "pkg.sub.b": {"pkg.sub.c"}, "pkg.sub.c": {"pkg.a", "pkg.sub"}}
    assert find_cycle(g) == ["pkg.a", "pkg.sub.b", "pkg.sub.c", "pkg.a"]
    (src / "pkg" / "sub" / "c.py").write_text("import os\n")
    assert find_cycle(module_graph(src, "pkg")) is None
