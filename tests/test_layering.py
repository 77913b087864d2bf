"""The stages stay layered: the edge app installs on a Raspberry Pi without what sits above it.

Data flows one way (photos -> train -> export -> edge_app -> review -> learn -> edge_app), but
imports only go down: `edge_app` imports no other stage, `learn` only edge_app, `review` edge_app
and learn, and nothing outside tests/ imports tests. The edge app, the review page and learning
run without TensorFlow, so none of them may import it (not even inside a function). Every import
of every module is read with `ast`, so an import hidden in a function or written relatively counts.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The stages a stage must not import: the ones above it (dogtag.cli is the command over them all).
ABOVE = {
    "models": {"edge_app", "learn", "review", "train", "export", "benchmarks", "cli"},
    "edge_app": {"learn", "review", "train", "export", "benchmarks", "cli"},
    "learn": {"review", "train", "export", "benchmarks", "cli"},
    "review": {"train", "export", "benchmarks", "cli"},
}
WITHOUT_TENSORFLOW = {"models", "edge_app", "learn", "review"}
TENSORFLOW = {"tensorflow", "keras", "tf_keras", "keras_tuner", "tf2onnx", "tensorflow_hub", "tensorflow_datasets"}


def imports(path: Path, root: Path) -> Iterator[tuple[int, list[str]]]:
    """(line, modules) of every import statement in a file: relative ones resolved, `from a import b` as a and a.b."""
    module = ".".join(path.relative_to(root).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module.removesuffix(".__init__")
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, [alias.name]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            yield node.lineno, [base, *(f"{base}.{alias.name}" for alias in node.names)]


def stage_of(module: str) -> str | None:
    """The dogtag stage a module belongs to (`dogtag.edge_app.results` -> edge_app); None outside dogtag."""
    parts = module.split(".")
    return parts[1] if parts[0] == "dogtag" and len(parts) > 1 else None


def layering_problems(root: Path) -> list[str]:
    """One line per import that breaks the layering, in every module outside tests/ under `root`."""
    problems = []
    files = sorted(path for folder in ("dogtag", "deploy") for path in (root / folder).rglob("*.py"))
    files += sorted(root.glob("*.py"))
    for path in files:
        where = path.relative_to(root)
        stage = stage_of(".".join(where.with_suffix("").parts))
        for line, names in imports(path, root):
            problem = next(filter(None, (_problem(stage, name) for name in names)), None)
            if problem:
                problems.append(f"{where}:{line}: {problem}")
    return problems


def _problem(stage: str | None, name: str) -> str:
    if name.split(".")[0] == "tests":
        return f"imports {name} (tests are not part of the program)"
    if stage in ABOVE and stage_of(name) in ABOVE[stage]:
        return f"{stage} imports {name}, a stage above it"
    if stage in WITHOUT_TENSORFLOW and name.split(".")[0] in TENSORFLOW:
        return f"{stage} imports {name}; it must run without TensorFlow"
    return ""


def test_no_stage_imports_one_above_it_and_the_edge_app_never_imports_tensorflow():
    assert layering_problems(REPO) == []


def test_the_layering_check_catches_upward_hidden_and_relative_imports(tmp_path):
    files = {
        "dogtag/edge_app/tagging.py": "def later():\n    from dogtag.review.app import create_app\n",
        "dogtag/edge_app/results.py": "from dogtag import train\n",
        "dogtag/learn/fit.py": "from ..export import convert\n",
        "dogtag/review/app.py": "import tensorflow as tf\nfrom dogtag.edge_app import Classifier\n",
        "dogtag/models/__init__.py": "from .. import edge_app\n",
        "deploy/check.py": "from tests.fakes import FakeModel\n",
        # allowed: downward imports, and TensorFlow where training needs it
        "dogtag/review/library.py": "from dogtag.edge_app.results import Row\nfrom . import security\n",
        "dogtag/train/fit.py": "import keras\nfrom dogtag.edge_app.model_file import ModelInfo\n",
        "dogtag/benchmarks/cli.py": "from dogtag.review.server import ReviewServer\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")

    assert layering_problems(tmp_path) == [
        "deploy/check.py:1: imports tests.fakes (tests are not part of the program)",
        "dogtag/edge_app/results.py:1: edge_app imports dogtag.train, a stage above it",
        "dogtag/edge_app/tagging.py:2: edge_app imports dogtag.review.app, a stage above it",
        "dogtag/learn/fit.py:1: learn imports dogtag.export, a stage above it",
        "dogtag/models/__init__.py:1: models imports dogtag.edge_app, a stage above it",
        "dogtag/review/app.py:1: review imports tensorflow; it must run without TensorFlow",
    ]
