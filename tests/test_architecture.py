"""The layout docs/ARCHITECTURE.md describes, enforced: layers import only downward (import-linter's layers
contract in pyproject.toml), library imports sit at module level, and modules and functions stay readable."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "largo"
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60
LONG_MARK = "# long function:"  # the reason a longer function is kept whole, on the lines just above its def
# Optional dependencies, imported where they are used so largo works without them.
OPTIONAL = ("diffusers", "torch_fidelity", "torchmetrics", "torch.utils.tensorboard", "open_clip")
# Required, but seconds to import (torchvision loads torch._dynamo): imported where a dataset is decoded or VGG built.
SLOW_TO_IMPORT = ("torchvision",)


def _modules():
    return sorted(SRC.rglob("*.py"))


def test_layers_only_import_downward():
    """The report printed on failure names each import that breaks the contract."""
    pytest.importorskip("importlinter")
    from importlinter.cli import lint_imports

    assert lint_imports(config_filename=str(ROOT / "pyproject.toml")) == 0


def _local_imports(tree: ast.AST):
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and node.module:
                    yield node.lineno, node.module
                elif isinstance(node, ast.Import):
                    yield from ((node.lineno, a.name) for a in node.names)


def test_imports_inside_functions_are_only_for_optional_dependencies_and_the_cli():
    """The CLI imports the library inside each command so that `largo --help` and a mistyped flag do not pay for
    importing torch (about 3 s here); everywhere else a function-local import hides a cycle or a layer break."""
    offenders = []
    for path in _modules():
        in_cli = path.parent.name == "cli"
        for line, module in _local_imports(ast.parse(path.read_text())):
            if module.startswith(OPTIONAL + SLOW_TO_IMPORT) or (in_cli and module.startswith("largo")):
                continue
            offenders.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not offenders, "\n".join(offenders)


def test_modules_and_functions_stay_small():
    too_long = []
    for path in _modules():
        lines = path.read_text().splitlines()
        if len(lines) > MAX_FILE_LINES:
            too_long.append(f"{path.relative_to(ROOT)}: {len(lines)} lines > {MAX_FILE_LINES}")
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                reason = any(LONG_MARK in line for line in lines[max(0, start - 4):start - 1])
                if length > MAX_FUNCTION_LINES and not reason:
                    too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {length} lines > "
                                    f"{MAX_FUNCTION_LINES} with no '{LONG_MARK}' reason above it")
    assert not too_long, "\n".join(too_long)


def test_every_module_is_listed_in_the_architecture_doc():
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    missing = [str(p.relative_to(SRC)) for p in _modules()
               if p.name != "__init__.py" and f"`{p.relative_to(SRC)}`" not in doc]
    assert not missing, f"docs/ARCHITECTURE.md does not list: {', '.join(missing)}"


@pytest.mark.slow
def test_the_public_api_is_exported_lazily():
    import subprocess
    import sys

    code = ("import sys, largo; assert 'torch' not in sys.modules, 'import largo loaded torch'; "
            "print(sorted(n for n in largo.__all__ if not hasattr(largo, n)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"names in largo.__all__ that do not resolve: {out}"


def test_no_benchmark_patches_the_library():
    """Benchmarks hand other data or networks to `Trainer(data=..., task=...)`; none assigns to an attribute of an
    imported largo module (as `trainer_mod.load_images = ...` once did)."""
    offenders = []
    for path in sorted((ROOT / "benchmarks").rglob("*.py")):
        tree = ast.parse(path.read_text())
        largo_names = {a.asname or a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                       for a in node.names if a.name.startswith("largo")}
        largo_names |= {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                        and (node.module or "").startswith("largo") for a in node.names}
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            for t in targets:
                if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id in largo_names:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} assigns {t.value.id}.{t.attr}")
    assert not offenders, "\n".join(offenders)
