"""The package's shape: no import cycles, and imports only run down the layers of docs/ARCHITECTURE.md.

Read from the source with `ast` (nothing is imported). Every import counts, the lazy ones inside
functions too; only imports under `if TYPE_CHECKING:` are left out (they never run).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "mixllm_cli"

# Lower layers first; a module may import its own layer or any lower one. Keep in step with
# docs/ARCHITECTURE.md ("Layers").
LAYERS: list[tuple[str, ...]] = [
    ("errors",),
    ("core",),
    ("paths", "files", "manifest", "catalogue", "dataset", "upstream"),
    ("artifacts", "training_rows", "embcache", "state"),
    ("learning",),
    ("routing",),
    ("training", "evaluation", "collect"),
    ("api", "asking", "serve"),
    ("output", "cli", "__main__", ""),
]
# Third-party packages `core` may use: the numeric and encoder runtimes, nothing with I/O of its own.
CORE_THIRD_PARTY = {"numpy", "onnxruntime", "tokenizers"}


def layer_of(module: str) -> int:
    top = module.split(".")[0]
    for k, names in enumerate(LAYERS):
        if top in names:
            return k
    raise AssertionError(f"mixllm_cli.{module}: not in any layer of LAYERS; add it (and to docs/ARCHITECTURE.md)")


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(path: Path) -> tuple[set[str], set[str]]:
    """(modules of ours that `path` imports, third-party / stdlib top-level names it imports)."""
    module = module_name(path)
    is_package = path.name == "__init__.py"
    package = module.split(".") if is_package else module.split(".")[:-1]
    ours: set[str] = set()
    others: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking_block(child):
                for sub in child.orelse:  # the `else:` branch does run
                    visit(sub)
                continue
            if isinstance(child, ast.ImportFrom):
                if child.level == 0:
                    mod = child.module or ""
                    if mod == "mixllm_cli" or mod.startswith("mixllm_cli."):
                        base = mod.removeprefix("mixllm_cli").lstrip(".")
                        _add(base, child)
                    else:
                        others.add(mod.split(".")[0])
                else:
                    base_parts = package[: len(package) - (child.level - 1)] if child.level > 1 else package
                    base = ".".join([*base_parts, *([child.module] if child.module else [])])
                    _add(base, child)
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.startswith("mixllm_cli."):
                        ours.add(alias.name.removeprefix("mixllm_cli."))
                    elif alias.name != "mixllm_cli":
                        others.add(alias.name.split(".")[0])
            visit(child)

    def _add(base: str, node: ast.ImportFrom) -> None:
        for alias in node.names:
            candidate = f"{base}.{alias.name}" if base else alias.name
            # `from . import x` imports the module x when it is one; else a name of `base`
            if (PKG / Path(*candidate.split("."))).with_suffix(".py").is_file() or \
                    (PKG / Path(*candidate.split(".")) / "__init__.py").is_file():
                ours.add(candidate)
            else:
                ours.add(base)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    ours.discard(module)
    return ours, others


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p)[0] for p in sorted(PKG.rglob("*.py"))}


def test_no_import_cycles() -> None:
    g = graph()
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []
    cycles: list[list[str]] = []

    def dfs(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(g.get(m, ())):
            if n not in g:
                continue
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                dfs(n)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            dfs(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_imports_run_down_the_layers() -> None:
    wrong = []
    for m, deps in graph().items():
        for d in sorted(deps):
            # A package's own __init__ may be imported by its modules (it is their namespace).
            if m.startswith(d + ".") or d == "":
                continue
            if layer_of(d) > layer_of(m):
                wrong.append(f"mixllm_cli.{m} (layer {layer_of(m)}) imports mixllm_cli.{d} (layer {layer_of(d)})")
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_core_uses_only_numpy_and_the_encoder_runtimes() -> None:
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    wrong = []
    for p in sorted((PKG / "core").rglob("*.py")):
        ours, others = imports_of(p)
        wrong += [f"{module_name(p)} imports mixllm_cli.{d}" for d in sorted(ours)
                  if not (d == "errors" or d == "core" or d.startswith("core."))]
        wrong += [f"{module_name(p)} imports {o}" for o in sorted(others - stdlib - CORE_THIRD_PARTY)]
    assert not wrong, "core must stay numpy-only and import nothing of ours but errors:\n" + "\n".join(wrong)


# The Python API (`import mixllm`): a client on top, like `cli` and `serve`. It re-exports names
# of `mixllm_cli` (its code is `mixllm_cli.api`); nothing of `mixllm_cli` imports it.
CLIENT = PKG.parent / "mixllm"


def _client_imports(path: Path) -> set[str]:
    """What a file of the client package imports of `mixllm_cli`, including the module names it
    imports lazily by string (`importlib.import_module("mixllm_cli.errors")`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            found.add(node.module or "")
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.add(node.value)
    return {n.removeprefix("mixllm_cli").lstrip(".") for n in found if n == "mixllm_cli" or n.startswith("mixllm_cli.")}


def test_the_python_api_package_sits_on_top() -> None:
    wrong = [f"mixllm_cli.{module_name(p)} imports the client package mixllm"
             for p in sorted(PKG.rglob("*.py")) if "mixllm" in imports_of(p)[1]]
    api = layer_of("api")
    for p in sorted(CLIENT.rglob("*.py")):
        for d in sorted(_client_imports(p)):
            if d and (layer_of(d) > api or d.split(".")[0] == "serve"):
                wrong.append(f"{p.relative_to(CLIENT.parent)} imports mixllm_cli.{d} (layer {layer_of(d)}): "
                             "the Python API stands beside cli and serve, not on them")
    assert CLIENT.is_dir()
    assert not wrong, "\n".join(wrong)


def _fake_package(tmp_path: Path, files: dict[str, str]) -> Path:
    pkg = tmp_path / "mixllm_cli"
    for rel, text in {"__init__.py": "", "core/__init__.py": "", "routing/__init__.py": "", **files}.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    return pkg


def test_the_layer_check_sees_an_upward_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = _fake_package(tmp_path, {"core/decision.py": "def f():\n    from ..routing.router import Router\n",
                                   "routing/router.py": "from typing import TYPE_CHECKING\n"
                                                        "if TYPE_CHECKING:\n    from ..cli import app\n"})
    monkeypatch.setattr(sys.modules[__name__], "PKG", pkg)
    with pytest.raises(AssertionError, match=r"core.decision \(layer 1\) imports mixllm_cli.routing.router") as err:
        test_imports_run_down_the_layers()
    assert "mixllm_cli.cli" not in str(err.value)  # a TYPE_CHECKING import never runs: not counted


def test_the_cycle_check_sees_a_cycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = _fake_package(tmp_path, {"core/a.py": "from .b import x\n", "core/b.py": "def f():\n    from . import a\n"})
    monkeypatch.setattr(sys.modules[__name__], "PKG", pkg)
    with pytest.raises(AssertionError, match="core.a -> core.b -> core.a"):
        test_no_import_cycles()
