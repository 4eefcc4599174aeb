"""The import rules between the top-level packages (docs/architecture.md, "Packages and layers").

Every module of every package is parsed (not imported), and each import is checked: static
`import` / `from ... import` anywhere in the file (inside functions and TYPE_CHECKING blocks too),
`importlib.import_module("...")` with a literal name, and the "module:attribute" strings of a
package's `COMMANDS` table, which the CLI root imports by name.

A new top-level package is picked up from the folders with an `__init__.py`; it must be installed
(setup.cfg) and be given its layer in LAYERS before this file passes.
"""

from __future__ import annotations

import ast
import configparser
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: What each package may import besides itself (downward only).
LAYERS: dict[str, frozenset[str]] = {
    "manifests": frozenset(),
    "opreid_builder": frozenset({"manifests"}),
    "benchmarks": frozenset({"manifests"}),
    "reid_model": frozenset({"manifests", "benchmarks"}),
    "opreid": frozenset({"opreid_builder"}),  # `python -m opreid`: runs the CLI root, nothing else
}
#: The `opreid` click group: registers every package's commands, so it may import any package's
#: public modules; nothing may import it but the entry point `python -m opreid`.
COMPOSITION_ROOT = "opreid_builder.cli"
ENTRY_POINT = "opreid.__main__"


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    file: str  # relative to the root, POSIX
    line: int
    target: str  # the imported module (or module.name), dotted
    names: tuple[str, ...] = ()  # names taken by `from target import ...`


def _is_private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _literal_import_module(node: ast.Call) -> str | None:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name in {"import_module", "__import__"} and node.args:
        arg = node.args[0]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return arg.value
    return None


def _command_targets(tree: ast.Module) -> list[tuple[int, str]]:
    """The module halves of "module:attribute" strings in a module-level COMMANDS table."""
    out = []
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        if isinstance(target, ast.Name) and target.id == "COMMANDS" and node.value is not None:
            for const in ast.walk(node.value):
                if isinstance(const, ast.Constant) and isinstance(const.value, str) and ":" in const.value:
                    spec = const.value.split(":")[0]
                    if spec.replace(".", "").replace("_", "").isalnum():
                        out.append((const.lineno, spec))
    return out


def collect_imports(root: Path, packages: list[str]) -> list[Import]:
    """Every import made by every module of `packages` (folders under `root`)."""
    found: list[Import] = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            module = _module_name(path, root)
            rel = path.relative_to(root).as_posix()
            is_package = path.name == "__init__.py"
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    found += [Import(module, rel, node.lineno, alias.name) for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    target = node.module or ""
                    if node.level:
                        target = _resolve_relative(module, is_package, node.level, node.module)
                    names = tuple(alias.name for alias in node.names)
                    found.append(Import(module, rel, node.lineno, target, names))
                elif isinstance(node, ast.Call) and (target := _literal_import_module(node)):
                    found.append(Import(module, rel, node.lineno, target))
            if path.name == "commands.py":
                found += [Import(module, rel, line, spec) for line, spec in _command_targets(tree)]
    return found


def violations(imports: list[Import], layers: dict[str, frozenset[str]], root_module: str) -> list[str]:
    """One line per broken rule: a forbidden package, a private name of another package, the root."""
    out = []
    for imp in imports:
        own, other = imp.module.split(".")[0], imp.target.split(".")[0]
        if other not in layers:
            continue  # the standard library or a third-party package
        where = f"{imp.file}:{imp.line}: {imp.module} imports " + imp.target
        where += f" ({', '.join(imp.names)})" if imp.names else ""
        full = [imp.target] + [f"{imp.target}.{name}" for name in imp.names]
        if imp.module not in (root_module, ENTRY_POINT) and any(
            t == root_module or t.startswith(root_module + ".") for t in full
        ):
            out.append(f"{where}: the CLI root {root_module}, which nothing may import")
            continue
        if other == own:
            continue
        if imp.module != root_module and other not in layers[own]:
            out.append(f"{where}: {own} may import {', '.join(sorted(layers[own])) or 'no other package'}")
        private = [part for part in imp.target.split(".")[1:] + list(imp.names) if _is_private(part)]
        if private:
            out.append(f"{where}: private to {other} ({', '.join(private)})")
    return out


def _packages_on_disk(root: Path) -> list[str]:
    return sorted(p.parent.name for p in root.glob("*/__init__.py"))


def _packages_installed(root: Path) -> list[str]:
    cfg = configparser.ConfigParser()
    cfg.read(root / "setup.cfg")
    include = cfg["options.packages.find"]["include"].split()
    return sorted({pattern.rstrip("*").rstrip(".") for pattern in include})


def test_every_package_is_installed_and_has_a_layer():
    on_disk = _packages_on_disk(ROOT)
    assert on_disk == _packages_installed(ROOT), "setup.cfg [options.packages.find] include vs folders"
    assert sorted(LAYERS) == on_disk, "give every top-level package its layer in LAYERS"


def test_packages_import_only_downward_and_only_public_names():
    imports = collect_imports(ROOT, _packages_on_disk(ROOT))
    assert len({i.module for i in imports}) > 50  # the walk really saw the code
    problems = violations(imports, LAYERS, COMPOSITION_ROOT)
    assert not problems, "layering broken:\n" + "\n".join(problems)


def test_perf_scripts_use_public_names_only():
    """The speed scripts stand for a user: no private module or name of any package."""
    scripts = sorted((ROOT / "perf").glob("*.py"))
    assert scripts
    imports = []
    for path in scripts:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in LAYERS:
                parts = node.module.split(".")[1:] + [a.name for a in node.names]
                imports += [f"{path.name}:{node.lineno} {p}" for p in parts if _is_private(p)]
    assert not imports


FAKE = {
    "low/__init__.py": "",
    "low/_hidden.py": "X = 1\n",
    "low/shown.py": "from low._hidden import X\n_secret = 2\n",
    "high/__init__.py": "",
    "high/ok.py": "import low.shown\nfrom low import shown\n",
    "high/cli.py": "import importlib\nimportlib.import_module('low.shown')\n",
    "high/commands.py": "COMMANDS = {'x': ('high.ok:main', 'help')}\n",
    "low/bad_up.py": "def f():\n    from high import ok\n",
    "low/bad_lazy.py": "import importlib\nM = importlib.import_module('high.ok')\n",
    "low/commands.py": "COMMANDS: dict = {'y': ('high.ok:run', 'help')}\n",
    "high/bad_private.py": "from low.shown import _secret\nfrom low import _hidden\nfrom ..low._hidden import X\n",
    "high/bad_root.py": "from . import cli\n",
}


@pytest.mark.parametrize("case", ["clean", "violations"])
def test_the_checker_catches_each_kind_of_violation(tmp_path, case):
    for name, text in FAKE.items():
        if case == "clean" and "bad_" in name or case == "clean" and name == "low/commands.py":
            continue
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    layers = {"low": frozenset(), "high": frozenset({"low"})}
    found = violations(collect_imports(tmp_path, ["low", "high"]), layers, "high.cli")
    if case == "clean":
        assert found == []
        return
    text = "\n".join(found)
    assert "low/bad_up.py:2: low.bad_up imports high (ok): low may import no other package" in text
    assert "low/bad_lazy.py:2: low.bad_lazy imports high.ok: low may" in text
    assert "low/commands.py:1: low.commands imports high.ok: low may" in text
    assert "high.bad_private imports low.shown (_secret): private to low (_secret)" in text
    assert "high.bad_private imports low (_hidden): private to low (_hidden)" in text
    assert "high/bad_private.py:3: high.bad_private imports low._hidden (X): private to low (_hidden)" in text
    assert "high/bad_root.py:1: high.bad_root imports high (cli): the CLI root high.cli" in text
    assert len(found) == 7, text


def test_no_test_module_imports_another():
    """Shared builders live in tests/support/, shared fixtures in tests/conftest.py."""
    tests = ROOT / "tests"
    names = {p.stem for p in tests.glob("test_*.py")} | {"conftest"}
    offenders = []
    for path in sorted(tests.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                targets = [node.module or ""]
            offenders += [
                f"{path.relative_to(ROOT)}:{node.lineno}: imports {t}" for t in targets if t in names
            ]
            # a script the tests run in a subprocess is a string: look for imports in it too
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for match in re.finditer(r"^\s*(?:from|import) (test_\w+|conftest)\b", node.value, re.M):
                    offenders.append(
                        f"{path.relative_to(ROOT)}:{node.lineno}: a script imports {match.group(1)}"
                    )
    assert not offenders, "\n".join(offenders)
