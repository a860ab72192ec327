"""The built-in packs use the pack API and nothing else of the core: read off their imports.

A pack imports from the core only ``from poggio import <names in poggio.__all__>`` (and
``from poggio.advanced import <names in its __all__>``, the fast primitives), and from another
pack only ``from poggio_other import <names in its __all__>`` when it requires that pack; it never
imports the portal or the MCP server."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
from pathlib import Path

import pytest

import poggio
import poggio.advanced
from poggio.runtime.plugins import ENTRY_POINT_GROUP, PackRegistry

REGISTRY = PackRegistry.load()
BUILT_IN = {
    ep.name: ep.value
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    if ep.dist is not None and ep.dist.name == "poggio"
}
PACK_OF_MODULE = {module: name for name, module in BUILT_IN.items()}


def imports(path: Path):
    """``(line, module, names)`` of every import in a file (``names`` is None for ``import module``)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: within the pack itself
                continue
            yield node.lineno, module, [a.name for a in node.names]


def violations(pack: str) -> list[str]:
    module_name = BUILT_IN[pack]
    root = Path(importlib.import_module(module_name).__file__).parent
    requires = set(REGISTRY.packs[pack].info.requires)
    found = []
    for path in sorted(root.rglob("*.py")):
        for line, module, names in imports(path):
            top = module.split(".")[0]
            where = f"{path.relative_to(root.parent)}:{line}"
            if top == module_name:
                continue
            if top == "poggio":
                api = {"poggio": poggio, "poggio.advanced": poggio.advanced}.get(module)
                if api is None or names is None:
                    found.append(
                        f"{where}: imports {module} (only `from poggio import ...` and "
                        "`from poggio.advanced import ...` are the pack API)"
                    )
                else:
                    found += [
                        f"{where}: {module}.{n} is not in {module}.__all__" for n in names if n not in api.__all__
                    ]
            elif top in PACK_OF_MODULE:
                other = PACK_OF_MODULE[top]
                public = getattr(importlib.import_module(top), "__all__", [])
                if other not in requires:
                    found.append(f"{where}: imports the {other} pack, which {pack} does not require")
                elif module != top or names is None:
                    found.append(f"{where}: imports {module} (only `from {top} import <its __all__>`)")
                else:
                    found += [f"{where}: {top}.{n} is not in {top}.__all__" for n in names if n not in public]
            elif top in ("portal", "mcp_server", "plugins"):
                found.append(f"{where}: imports {module}")
    return found


@pytest.mark.parametrize("pack", sorted(BUILT_IN))
def test_built_in_pack_imports_only_the_pack_api(pack):
    assert violations(pack) == []


def test_the_check_sees_a_pack_reaching_into_the_core(tmp_path, monkeypatch):
    """The checker itself: an import of poggio.storage.db, of a pack not required, of a private name."""
    import poggio_contacts

    source = Path(poggio_contacts.__file__).parent
    copy = tmp_path / "poggio_contacts"
    copy.mkdir()
    for path in source.glob("*.py"):
        (copy / path.name).write_text(path.read_text())
    (copy / "extra.py").write_text(
        "from poggio.storage.db import database\nfrom poggio import CursorCodec\nfrom poggio.advanced import database\n"
        "from poggio_revenue import Opportunity\n"
        "from poggio_accounts.models import insert_accounts\n"
    )
    monkeypatch.setattr(poggio_contacts, "__file__", str(copy / "__init__.py"))
    found = violations("contacts")
    assert len(found) == 5, found
    assert "imports poggio.storage.db" in found[0] and "CursorCodec is not in poggio.__all__" in found[1]
    assert "poggio.advanced.database is not in poggio.advanced.__all__" in found[2]
    assert "does not require" in found[3] and "poggio_accounts.models" in found[4]


def test_poggio_exports_every_name_in_its_all():
    missing = [name for name in poggio.__all__ if not hasattr(poggio, name)]
    missing += [f"advanced.{name}" for name in poggio.advanced.__all__ if not hasattr(poggio.advanced, name)]
    assert missing == []


def test_the_fast_primitives_are_not_the_simple_api():
    """``from poggio import ...`` is the simple API; the fast primitives are in poggio.advanced only. A pack
    written before they moved still imports them from ``poggio``, with a warning that says where they went."""
    assert not set(poggio.__all__) & set(poggio.advanced.__all__)
    with pytest.warns(DeprecationWarning, match="import Prepared from poggio.advanced"):
        from poggio import Prepared
    assert Prepared is poggio.advanced.Prepared
    with pytest.raises(ImportError):
        from poggio import database  # noqa: F401
