"""The layout as a contract: the import-linter contracts in pyproject.toml hold (and a
broken one is caught), no import cycle anywhere, and modules stay small."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("assistant", "indexer")
MAX_LINES = 350
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
                          cwd=root, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def test_the_import_contracts_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "bad_import", "contract"), [
    ("assistant/generation/base.py", "import litestar", "only the service imports the web framework"),
    ("assistant/grounding/check.py", "from assistant.serve import app", "assistant layers"),
    ("indexer/store.py", "import assistant.cli", "indexer never imports assistant"),
])
def test_a_broken_contract_fails(tmp_path: Path, module: str, bad_import: str, contract: str) -> None:
    """The contracts can fail: the same sources with one forbidden import added."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{bad_import}  # noqa\n", encoding="utf-8")
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    broken = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(line.startswith(contract) for line in broken), result.stdout


def _imports(path: Path, module: str) -> set[str]:
    """Every module of our packages that ``path`` imports, at any depth (lazy imports count)."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _module_graph() -> dict[str, set[str]]:
    files = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return {module: {m for m in _imports(path, module) if m in files and m != module} for module, path in files.items()}


def test_no_import_cycles() -> None:
    graph = _module_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_check_sees_lazy_imports() -> None:
    """A function-level import is an edge too: the check can fail."""
    imports = _imports(ROOT / "assistant" / "generation" / "backends.py", "assistant.generation.backends")
    assert "assistant.generation.local" in imports and "assistant.generation.openai" in imports


def test_modules_stay_small() -> None:
    """Modules of more than MAX_LINES lines must say why in their docstring ("one job")."""
    long = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            lines = path.read_text(encoding="utf-8").splitlines()
            docstring = ast.get_docstring(ast.parse("\n".join(lines))) or ""
            if len(lines) > MAX_LINES and "one job" not in docstring.lower():
                long.append(f"{path.relative_to(ROOT)}: {len(lines)} lines")
    assert not long, "split these modules, or say in the docstring why each is one job:\n" + "\n".join(long)
