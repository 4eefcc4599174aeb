"""docs/ stays true to the code: every manifest column is documented as its schema defines it, and
every "docs/NAME.md §N" the code cites exists."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pyarrow as pa
import pytest

from manifests import ManifestSchema

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PACKAGES = sorted(p.parent.name for p in ROOT.glob("*/__init__.py"))
TABLE_HEADER = "| column | type | nullable | meaning |"
KIND = re.compile(r"\(kind `(\w+)`\)")
CITATION = re.compile(r"docs/([\w-]+\.md)((?:[,\s-]*§\d+(?:\.\d+)*(?:-\d+(?:\.\d+)*)?)*)")
SECTION_NUMBER = re.compile(r"\d+(?:\.\d+)*")


def _schemas() -> dict[str, ManifestSchema]:
    """Every ManifestSchema assigned at module level anywhere in the packages, found by parsing."""
    found: dict[str, ManifestSchema] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in tree.body:
                if (
                    isinstance(node, ast.Assign)
                    and isinstance(node.value, ast.Call)
                    and getattr(node.value.func, "id", None) == "ManifestSchema"
                ):
                    module = importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
                    for target in node.targets:
                        schema = getattr(module, target.id)
                        assert schema.kind not in found, f"two schemas of kind {schema.kind}"
                        found[schema.kind] = schema
    return found


def _type_name(t: pa.DataType) -> str:
    if pa.types.is_list(t):
        return f"list<{_type_name(t.value_type)}>"
    if pa.types.is_struct(t):
        return "struct<" + ", ".join(f"{f.name}: {_type_name(f.type)}" for f in t) + ">"
    return {"float": "float32", "double": "float64"}.get(str(t), str(t))


def _documented_tables(text: str) -> dict[str, list[tuple[str, str, bool]]]:
    """kind -> [(column, type, nullable)] from each column table, named by the last `(kind `X`)` above it."""
    tables: dict[str, list[tuple[str, str, bool]]] = {}
    kind = None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if m := KIND.findall(line):
            kind = m[-1]
        if line.strip() != TABLE_HEADER:
            continue
        assert kind is not None and kind not in tables, f"line {i + 1}: a column table without its own kind"
        rows = []
        for row in lines[i + 2 :]:
            if not row.startswith("|"):
                break
            name, typ, nullable = (cell.strip() for cell in row.strip("|").split("|")[:3])
            assert nullable in ("yes", "no"), row
            rows.append((name.strip("`"), typ, nullable == "yes"))
        tables[kind] = rows
    return tables


def test_every_manifest_column_is_documented_as_defined():
    schemas = _schemas()
    assert {"train", "query", "gallery", "ground_truth", "images", "release_map"} <= set(schemas)
    documented = _documented_tables((DOCS / "data-contract.md").read_text(encoding="utf-8"))
    assert sorted(documented) == sorted(schemas), "one column table per schema kind in docs/data-contract.md"
    for kind, schema in schemas.items():
        expected = [(f.name, _type_name(f.type), f.nullable) for f in schema.schema]
        assert documented[kind] == expected, f"docs/data-contract.md, kind {kind}"


def test_table_parser_sees_a_wrong_column():
    text = f"x (kind `k`)\n\n{TABLE_HEADER}\n|---|---|---|---|\n| `a` | int64 | no | m |\n\nafter\n"
    assert _documented_tables(text) == {"k": [("a", "int64", False)]}
    with pytest.raises(AssertionError):
        _documented_tables(text + f"\n{TABLE_HEADER}\n|---|---|---|---|\n| `b` | string | no | m |\n")


def _sections(doc: Path) -> set[str]:
    out = set()
    for line in doc.read_text(encoding="utf-8").splitlines():
        if m := re.match(r"#{2,4} (\d+(?:\.\d+)*)\.? ", line):
            out.add(m.group(1))
    return out


def _cited_files() -> list[Path]:
    files = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
    files += [
        *(ROOT / "configs").glob("*.yaml"),
        *(ROOT / "tests").glob("*.py"),
        *(ROOT / "perf").glob("*.py"),
    ]
    files += [ROOT / "README.md", *DOCS.glob("*.md")]
    return [f for f in files if f != Path(__file__)]  # this file names the patterns it looks for


def test_cited_docs_and_sections_exist():
    citations = []
    for path in _cited_files():
        text = path.read_text(encoding="utf-8")
        # design notes outside the repository are not citable
        assert "ARCHITECTURE.md" not in text and "model-spec.md" not in text, f"{path}: cite docs/"
        for m in CITATION.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            citations.append((f"{path.relative_to(ROOT)}:{line}", m.group(1), m.group(2)))
    assert len(citations) > 20
    for where, name, section in citations:
        doc = DOCS / name
        assert doc.is_file(), f"{where} cites docs/{name}, which does not exist"
        for number in SECTION_NUMBER.findall(section):
            assert number in _sections(doc), f"{where} cites docs/{name} §{number}: no such section"


def test_preset_comments_cite_model_sections():
    """The presets' `[N]` comments point at sections of docs/model.md."""
    sections = _sections(DOCS / "model.md")
    for preset in (ROOT / "configs").glob("*.yaml"):
        for line in preset.read_text(encoding="utf-8").splitlines():
            comment = line.partition("#")[2]
            for ref in re.findall(r"\[(\d+(?:\.\d+)*)\]", comment):
                assert ref in sections, f"{preset.name}: [{ref}] is no section of docs/model.md"


# ---- README: every `opreid ...` line of its shell blocks names a real command, options and presets
FENCE = re.compile(r"```bash\n(.*?)```", re.S)


def _readme_commands(text: str) -> list[list[str]]:
    """`opreid ...` command lines of the README's bash blocks, continuations joined, comments and
    `[optional]` / `<placeholder>` parts dropped, each split into tokens after 'opreid'."""
    found = []
    for block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s#.*$", "", line).strip()
            line = re.sub(r"\[[^\]]*\]|<[^>]*>", " ", line)
            for part in re.split(r"\s*(?:&&|\|\||;|\|)\s*", line):
                tokens = part.split()
                if tokens and tokens[0] == "do":
                    tokens = tokens[1:]
                if tokens and tokens[0] == "opreid":
                    found.append(tokens[1:])
    return found


def _resolve(tokens: list[str]):
    """The click command the tokens name, and the options they give it."""
    import click

    from opreid.cli import cli

    command, i = cli, 0
    ctx = click.Context(cli)
    while isinstance(command, click.Group) and i < len(tokens) and not tokens[i].startswith("-"):
        sub = command.get_command(ctx, tokens[i])
        assert sub is not None, f"opreid {' '.join(tokens[: i + 1])}: no such command"
        command, i = sub, i + 1
    options = [t.split("=", 1)[0] for t in tokens[i:] if t.startswith("-") and t != "-"]
    values = {t: tokens[i + k + 1] for k, t in enumerate(tokens[i:-1]) if t == "--config"}
    return command, options, values


def test_readme_commands_name_real_commands_options_and_presets():
    from reid_model.config import preset_names

    commands = _readme_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(commands) > 40
    presets = set(preset_names())
    for tokens in commands:
        command, options, values = _resolve(tokens)
        known = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)} | {"-h", "--help"}
        line = "opreid " + " ".join(tokens)
        assert not set(options) - known, f"{line}: unknown option(s) {sorted(set(options) - known)}"
        if "--config" in values and not values["--config"].endswith((".yaml", ".yml")):
            assert values["--config"] in presets, f"{line}: no preset {values['--config']!r}"


def test_readme_command_check_sees_a_wrong_preset_and_option():
    (tokens,) = _readme_commands("```bash\nopreid train --config nope --data x \\\n  --bogus 1  # c\n```")
    command, options, values = _resolve(tokens)
    assert command.name == "train" and values == {"--config": "nope"} and "--bogus" in options
    with pytest.raises(AssertionError, match="no such command"):
        _resolve(["trian"])


#: Dotted names in the docs that are not Python paths: Parquet key-value metadata keys.
NOT_PYTHON = {"opreid.kind", "opreid.schema_version"}
_DOTTED = re.compile(r"`((?:opreid|opreid_builder|benchmarks|reid_model|manifests)(?:\.\w+)+)`")


def _python_path_exists(dotted: str) -> bool:
    """Import the longest module prefix of `dotted`, then follow the rest as attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        try:
            for name in parts[cut:]:
                obj = getattr(obj, name)
        except AttributeError:
            return False
        return True
    return False


def test_python_entry_points_in_the_docs_exist_at_their_documented_paths():
    """`opreid_builder.build.build_release` and every other dotted name the README and docs give."""
    named = {
        (path.name, m.group(1))
        for path in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
        for m in _DOTTED.finditer(path.read_text(encoding="utf-8"))
        if m.group(1) not in NOT_PYTHON
    }
    assert len(named) >= 8
    assert [f"{doc}: {name}" for doc, name in sorted(named) if not _python_path_exists(name)] == []
    assert not _python_path_exists("opreid_builder.curate.curate")  # the check sees a stale path
