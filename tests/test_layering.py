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
    "opreid": frozenset({"opreid_builder", "benchmarks", "reid_model", "manifests"}),
}
#: Modules that import nothing of ours and that every package may read: the product's version.
LEAVES = frozenset({"opreid.version"})
#: The `opreid` click group: registers every package's commands, so it may import any package's
#: public modules; nothing may import it but the entry point `python -m opreid`.
COMPOSITION_ROOT = "opreid.cli"
ENTRY_POINT = "opreid.__main__"

_ALL = "*"
#: Inside each package, its rooms (a subpackage, or a module at the package's top) and the rooms
#: each may import, bottom up. A room imports itself freely; a new room must be placed here.
ROOMS: dict[str, dict[str, frozenset[str] | str]] = {
    "manifests": {},  # one flat room: the data contract
    "opreid": {"version": frozenset(), "cli": _ALL, "__main__": frozenset({"cli"})},
    "opreid_builder": {
        "errors": frozenset(),
        "curation": frozenset({"errors"}),
        "split": frozenset({"errors"}),
        "release": frozenset({"errors", "curation", "split"}),
        "public_datasets": frozenset({"errors", "curation", "split", "release"}),
        "synth": frozenset({"errors", "curation", "split"}),
        "export": frozenset({"errors", "release"}),
        "build": frozenset({"errors", "curation", "split", "release"}),
        "cli": _ALL,
    },
    "benchmarks": {
        "errors": frozenset(),
        "metrics": frozenset({"errors"}),
        "submission": frozenset({"errors", "metrics"}),
        "rerank": frozenset({"errors", "metrics"}),
        "ground_truth": frozenset({"errors"}),
        "scoring": frozenset({"errors", "metrics", "submission", "rerank", "ground_truth"}),
        "rank_pictures": frozenset({"errors", "scoring"}),
        "leaderboard": frozenset({"errors", "metrics", "submission", "scoring"}),
        "cli": _ALL,
    },
    "reid_model": {
        "errors": frozenset(),
        "choices": frozenset(),
        "config": frozenset({"errors", "choices"}),
        "distributed": frozenset({"errors"}),
        "losses": frozenset({"errors", "choices", "distributed"}),
        "modeling": frozenset({"errors", "choices", "config", "distributed", "losses"}),
        "data": frozenset({"errors", "config"}),
        "engine": frozenset({"errors", "config", "distributed", "modeling", "data"}),
        "runs": frozenset({"errors", "config", "engine"}),
        "cli": _ALL,
    },
}


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


def _room(parts: list[str]) -> str | None:
    return parts[1] if len(parts) > 1 else None


def violations(
    imports: list[Import],
    layers: dict[str, frozenset[str]],
    root_module: str,
    rooms: dict[str, dict[str, frozenset[str] | str]] | None = None,
    leaves: frozenset[str] = frozenset(),
) -> list[str]:
    """One line per broken rule: a forbidden package, a room importing upward or sideways, a
    private name of another package, the root."""
    rooms = rooms or {}
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
        if any(t in leaves for t in full):
            continue
        if other == own:
            out += _room_violations(imp, where, rooms.get(own) or {})
            continue
        if imp.module != root_module and other not in layers[own]:
            out.append(f"{where}: {own} may import {', '.join(sorted(layers[own])) or 'no other package'}")
        private = [part for part in imp.target.split(".")[1:] + list(imp.names) if _is_private(part)]
        if private:
            out.append(f"{where}: private to {other} ({', '.join(private)})")
    return out


def _room_violations(imp: Import, where: str, rooms: dict[str, frozenset[str] | str]) -> list[str]:
    """Inside one package: the importing room must list the imported room (bottom-up order)."""
    if not rooms:
        return []
    own = _room(imp.module.split("."))
    if own is None:  # the package's __init__
        return []
    if own not in rooms:
        return [f"{where}: the room {own} has no place in ROOMS"]
    parts = imp.target.split(".")
    targets = {_room(parts)} if len(parts) > 1 else {name for name in imp.names if name in rooms}
    allowed = rooms[own]
    bad = sorted(t for t in targets if t and t != own and allowed != _ALL and t not in allowed)
    return [
        f"{where}: the room {own} may import {', '.join(sorted(allowed)) or 'no other room'}" for _ in bad[:1]
    ]


def import_cycles(imports: list[Import], modules: set[str]) -> list[list[str]]:
    """Strongly connected groups of modules (imports inside functions included): import loops."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for imp in imports:
        for target in [imp.target, *(f"{imp.target}.{n}" for n in imp.names)]:
            parts = target.split(".")
            while parts and ".".join(parts) not in modules:
                parts.pop()
            name = ".".join(parts)
            if name and name != imp.module and imp.module in graph:
                graph[imp.module].add(name)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


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
    problems = violations(imports, LAYERS, COMPOSITION_ROOT, ROOMS, LEAVES)
    assert not problems, "layering broken:\n" + "\n".join(problems)


def test_every_room_is_placed():
    """Each subpackage (or module at a package's top) has its place in ROOMS."""
    for package, rooms in ROOMS.items():
        if not rooms:
            continue
        found = {p.stem for p in (ROOT / package).glob("*.py") if p.stem != "__init__"}
        found |= {p.parent.name for p in (ROOT / package).glob("*/__init__.py")}
        assert found == set(rooms), f"{package}: on disk {sorted(found)}, in ROOMS {sorted(rooms)}"


def test_no_import_loops():
    """No two modules import each other, directly or around a loop, even inside a function."""
    packages = _packages_on_disk(ROOT)
    modules = {_module_name(p, ROOT) for pkg in packages for p in (ROOT / pkg).rglob("*.py")}
    assert import_cycles(collect_imports(ROOT, packages), modules) == []


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


#: A package with three rooms, bottom up: base < mid < top; and one deliberate upward import.
ROOM_FAKE = {
    "pkg/__init__.py": "",
    "pkg/base/__init__.py": "",
    "pkg/base/a.py": "X = 1\n",
    "pkg/mid/__init__.py": "",
    "pkg/mid/b.py": "from pkg.base.a import X\n",
    "pkg/top.py": "from pkg.mid import b\nfrom pkg import base\n",
    "pkg/base/bad_up.py": "def f():\n    from pkg.mid.b import X\n",
    "pkg/mid/bad_sideways.py": "import pkg.top\n",
    "pkg/stray/__init__.py": "",
    "pkg/stray/c.py": "from pkg.base.a import X\n",
}
FAKE_ROOMS = {"pkg": {"base": frozenset(), "mid": frozenset({"base"}), "top": frozenset({"base", "mid"})}}


@pytest.mark.parametrize("case", ["clean", "violations"])
def test_a_lower_room_importing_a_higher_one_fails(tmp_path, case):
    for name, text in ROOM_FAKE.items():
        if case == "clean" and ("bad_" in name or "stray" in name):
            continue
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = violations(collect_imports(tmp_path, ["pkg"]), {"pkg": frozenset()}, "pkg.cli", FAKE_ROOMS)
    if case == "clean":
        assert found == []
        return
    assert found == [
        "pkg/base/bad_up.py:2: pkg.base.bad_up imports pkg.mid.b (X): the room base may import no other room",
        "pkg/mid/bad_sideways.py:1: pkg.mid.bad_sideways imports pkg.top: the room mid may import base",
        "pkg/stray/c.py:1: pkg.stray.c imports pkg.base.a (X): the room stray has no place in ROOMS",
    ]


def test_the_loop_finder_sees_loops_through_function_level_imports(tmp_path):
    files = {
        "p/__init__.py": "",
        "p/a.py": "from p.b import Y\nX = 1\n",
        "p/b.py": "def g():\n    from p.a import X\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    modules = {"p", "p.a", "p.b"}
    assert import_cycles(collect_imports(tmp_path, ["p"]), modules) == [["p.a", "p.b"]]


def test_no_test_module_imports_another():
    """Shared builders live in tests/support/, shared fixtures in tests/conftest.py."""
    tests = ROOT / "tests"
    names = {p.stem for p in tests.rglob("test_*.py")} | {"conftest"}
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
