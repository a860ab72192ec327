"""``poggio pack new NAME``: a tool pack project that installs, loads and passes its own tests as it is.

The project is what a third party ships: a distribution with a ``poggio`` entry point, one module
with a tool and the hooks, and a test that loads the pack the way Poggio does and calls the tool.
"""

from __future__ import annotations

import re
from pathlib import Path

from poggio import __version__
from poggio.errors import InvalidInput

_NAME = re.compile(r"[a-z][a-z0-9_]{0,29}")

PYPROJECT = """\
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "{title}: a tool pack for Poggio"
requires-python = ">=3.11"
dependencies = ["poggio>={poggio_version}"]

[project.optional-dependencies]
test = ["pytest>=8"]

# This line is what makes it a Poggio tool pack: `poggio packs list` finds it through this entry point.
[project.entry-points.poggio]
{name} = "{module}"

[tool.setuptools]
packages = ["{module}"]
"""

MODULE = '''\
"""{title}: a tool pack for Poggio. Poggio's documentation (docs/pack-authors/) documents every hook."""

from typing import Annotated

from pydantic import BaseModel, Field

from poggio import PackInfo, ToolContext, ToolResult, hookimpl, prompt, tool

__version__ = "0.1.0"


class Greeting(BaseModel):
    who: str
    message: str
    workspace_id: int


@tool(title="Say hello")
def {name}_hello(
    ctx: ToolContext,
    who: Annotated[str, Field(min_length=1, max_length=100, description="Whom to greet.")],
) -> ToolResult[Greeting]:
    """Greet someone from this workspace. Replace this tool with your own."""
    data = Greeting(who=who, message=f"Hello, {{who}}!", workspace_id=ctx.workspace_id)
    return ToolResult(data, data.message)


@prompt(title="Welcome someone")
def {name}_welcome(
    ctx: ToolContext,
    who: Annotated[str, Field(min_length=1, max_length=100, description="Whom to welcome.")],
):
    """Ask the assistant to welcome someone. Replace this prompt with your own, or delete it."""
    return f"Write a short, warm welcome note for {{who}}."


@hookimpl
def poggio_pack():
    return PackInfo(name="{name}", title="{title}", version=__version__,
                    description="What the {title} pack offers, in one sentence.",
                    instructions="Call {name}_hello to greet someone.")


@hookimpl
def poggio_tools():
    return [{name}_hello]


@hookimpl
def poggio_prompts():
    return [{name}_welcome]
'''

TEST = '''\
"""The {name} pack loads as Poggio loads it (through its entry point) and its tool answers."""

import {module}
from poggio.testing import load_pack, tool_context


def test_pack_loads_through_its_entry_point():
    pack = load_pack("{name}")
    assert [t.name for t in pack.tools] == ["{name}_hello"]
    assert [p.name for p in pack.prompts] == ["{name}_welcome"]


def test_hello():
    result = {module}.{name}_hello(tool_context(workspace_id=7), who="Ada")
    assert result.text == "Hello, Ada!"
    assert result.data.workspace_id == 7


def test_welcome_prompt():
    (message,) = {module}.{name}_welcome.render(tool_context(workspace_id=7), {{"who": "Ada"}})
    assert "Ada" in message.content
'''

README = """\
# {dist}

{title}: a tool pack for [Poggio](https://pypi.org/project/poggio/).

```sh
pip install -e '.[test]'   # into the environment Poggio runs in
pytest
poggio packs list          # shows the {name} pack and its tools; `poggio mcp` serves them
```
"""


def pack_name(given: str) -> str:
    """The pack name for what a person typed: the pack name itself (``crm_notes``) or its distribution
    name (``poggio-crm-notes``, ``crm-notes``): a ``poggio-`` prefix dropped, ``-`` and ``.`` as ``_``,
    lower case."""
    name = given.strip().lower()
    for prefix in ("poggio-", "poggio_"):
        if name.startswith(prefix) and len(name) > len(prefix):
            name = name[len(prefix) :]
    name = re.sub(r"[-.]+", "_", name)
    if not _NAME.fullmatch(name):
        raise InvalidInput(
            "name",
            f"{given!r} is not a pack name: 1-30 characters of a-z, 0-9, _ and -, "
            "starting with a letter (a poggio- prefix is dropped)",
        )
    return name


def distribution_name(name: str) -> str:
    return f"poggio-{name.replace('_', '-')}"


def create_pack(name: str, directory: Path) -> Path:
    """Write the project of pack ``name`` into ``directory`` (which must not exist yet, or be empty)."""
    if not _NAME.fullmatch(name):
        raise InvalidInput(
            "name", f"{name!r} is not a pack name: 1-30 characters of a-z, 0-9 and _, starting with a letter"
        )
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()):
        raise InvalidInput("directory", f"{directory} already exists and is not empty")
    module = f"poggio_{name}"
    values = {
        "name": name,
        "module": module,
        "dist": distribution_name(name),
        "title": name.replace("_", " ").title(),
        "poggio_version": __version__,
    }
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"{module}/__init__.py": MODULE,
        f"tests/test_{name}.py": TEST,
    }
    for path, template in files.items():
        target = directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(template.format(**values), encoding="utf-8")
    return directory
