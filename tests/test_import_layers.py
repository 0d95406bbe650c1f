"""The import graph follows the layers of docs/architecture.md: no package imports one above it, inside `models`
each layer imports only those below it (an objective never imports a family), and no module-level imports form
a circle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("beam_jobs", "models", "serving", "tfx_pipeline")
# What each package may import of ours besides itself.
MAY_IMPORT = {"beam_jobs": set(), "models": {"beam_jobs"}, "serving": {"beam_jobs", "models"},
              "tfx_pipeline": {"beam_jobs", "models"}}
# Inside models, bottom to top: a module imports only from its own layer or those below.
MODEL_LAYERS = (
    ("models.vocabulary", "models.hf_checkpoint", "models.input_pipeline"),
    ("models.layers",),
    ("models.networks",),
    ("models.objectives",),
    ("models.family", "models.protbert", "models.protalbert", "models.protxlnet", "models.prottxl", "models.prott5"),
    ("models.registry",),
    ("models.training", "models.export", "models.probes", "models.finetuning", "models.cli"),
)


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _graph() -> dict[str, set[str]]:
    """Module → the modules of ours it imports at module level (a name imported from a module counts as that
    module; a bare package, as the package)."""
    modules = _modules()

    def resolve(name: str) -> str | None:
        parts = name.split(".")
        while parts and ".".join(parts) not in modules:
            parts.pop()
        return ".".join(parts) or None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            graph[name] |= {target for target in map(resolve, targets) if target and target != name}
    return graph


def _layer(module: str) -> int | None:
    for index, prefixes in enumerate(MODEL_LAYERS):
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return index
    return None


def test_no_package_imports_one_above_it_or_beside_it():
    wrong = [f"{module} → {target}" for module, targets in _graph().items() for target in targets
             if target.split(".")[0] != module.split(".")[0]
             and target.split(".")[0] not in MAY_IMPORT[module.split(".")[0]]]
    assert not wrong


def test_inside_models_each_layer_imports_only_the_layers_below_it():
    graph = _graph()
    models = [module for module in graph if module.startswith("models.")]
    assert all(_layer(module) is not None for module in models), [m for m in models if _layer(m) is None]
    wrong = [f"{module} → {target}" for module in models for target in graph[module]
             if target.startswith("models.") and _layer(target) > _layer(module)]
    assert not wrong


def test_module_level_imports_form_no_circle():
    graph, done, path, circles = _graph(), set(), [], []

    def visit(module: str) -> None:
        path.append(module)
        for target in sorted(graph[module]):
            if target in path:
                circles.append(" → ".join(path[path.index(target):] + [target]))
            elif target not in done:
                visit(target)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            visit(module)
    assert not circles
