"""Prompts and argument completion for tool packs: :func:`prompt`, :class:`Message` and
:data:`Completer`. Imports no web framework and no MCP SDK: the MCP server serves these as
``prompts/list``, ``prompts/get`` and ``completion/complete``.

A prompt is a function decorated with :func:`prompt`; its first parameter is the
:class:`poggio.ToolContext` of the request (workspace, pack scope), the others are its arguments
(type hints, ``Annotated`` with a pydantic ``Field(description=...)``, as for tools; MCP prompt
arguments are strings). It returns the messages: a string (one user message), a :class:`Message`,
or a list of them. A message's content is text, or a :class:`poggio.Image`, :class:`poggio.Audio`
or :class:`poggio.Resource` (an embedded resource).

A completer suggests values for one argument (of a prompt, or a resource template's variable):
``complete(ctx, value, arguments) -> list[str]``, ``value`` what the user typed so far,
``arguments`` the values of the other arguments already given. It answers from the workspace's own
data (``ctx.workspace_id``), prefix-matched with an index, at most :data:`MAX_COMPLETIONS` values
(it may return one more, to say there are more).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ConfigDict, ValidationError, create_model

from poggio.runtime.results import Audio, Image, Resource

if TYPE_CHECKING:
    from poggio.runtime.packs import ToolContext

MAX_COMPLETIONS = 100  # what completion/complete may answer in one list (the protocol's bound)

Completer = Callable[["ToolContext", str, dict[str, str]], Sequence[str]]
"""``complete(ctx, value, arguments) -> values``: suggestions for one argument, starting with ``value``."""


@dataclass(frozen=True)
class Message:
    """One message of a prompt: ``content`` (text, an :class:`~poggio.Image`, :class:`~poggio.Audio`
    or an embedded :class:`~poggio.Resource`) from ``role`` (``"user"`` or ``"assistant"``)."""

    content: str | Image | Audio | Resource
    role: Literal["user", "assistant"] = "user"

    def __post_init__(self) -> None:
        if self.role not in ("user", "assistant"):
            raise ValueError(f"a prompt message's role is 'user' or 'assistant', not {self.role!r}")
        if not isinstance(self.content, (str, Image, Audio, Resource)):
            raise TypeError(f"a prompt message holds text, Image, Audio or Resource, not {type(self.content).__name__}")


class PromptArgumentError(ValueError):
    """A ``prompts/get`` with arguments the prompt does not take, or without one it needs: the
    message names the argument."""


@dataclass(frozen=True)
class PromptSpec:
    name: str
    fn: Callable[..., Any]
    title: str
    description: str
    complete: dict[str, Completer] = field(default_factory=dict)
    pack: str = ""

    def with_pack(self, pack: str) -> PromptSpec:
        return PromptSpec(**{**self.__dict__, "pack": pack})

    def parameters(self) -> list[inspect.Parameter]:
        """The prompt's arguments (without the context)."""
        return list(inspect.signature(self.fn, eval_str=True).parameters.values())[1:]

    def arguments(self) -> list[dict[str, Any]]:
        """``[{name, description, required}]`` as ``prompts/list`` lists them."""
        schema = self._model().model_json_schema()
        required = set(schema.get("required", []))
        return [
            {"name": name, "description": prop.get("description"), "required": name in required}
            for name, prop in schema.get("properties", {}).items()
        ]

    def _model(self):
        params = self.parameters()
        fields: dict[str, Any] = {
            p.name: (p.annotation, ... if p.default is inspect.Parameter.empty else p.default) for p in params
        }
        return create_model(f"{self.name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)

    def checked(self, arguments: dict[str, Any] | None) -> dict[str, Any]:
        """The arguments validated; :class:`PromptArgumentError` naming the argument otherwise."""
        try:
            model = self._model().model_validate(arguments or {})
        except ValidationError as exc:
            parts = []
            for error in exc.errors(include_url=False):
                name = ".".join(str(p) for p in error.get("loc", ())) or "arguments"
                if error["type"] == "missing":
                    parts.append(f"argument '{name}' is required")
                elif error["type"] == "extra_forbidden":
                    parts.append(f"unknown argument '{name}'")
                else:
                    parts.append(f"argument '{name}': {error['msg'].replace('Value error, ', '')}")
            takes = ", ".join(p.name for p in self.parameters()) or "no arguments"
            problems = "; ".join(parts)
            raise PromptArgumentError(
                f"Invalid arguments for prompt {self.name}: {problems}. It takes: {takes}."
            ) from None
        return {p.name: getattr(model, p.name) for p in self.parameters()}

    def render(self, ctx: ToolContext, arguments: dict[str, Any] | None) -> list[Message]:
        """The prompt's messages for checked ``arguments``."""
        result = self.fn(ctx, **self.checked(arguments))
        items = result if isinstance(result, (list, tuple)) else [result]
        messages = [item if isinstance(item, Message) else Message(item) for item in items]
        if not messages:
            raise ValueError(f"prompt {self.name} returned no messages")
        return messages


def prompt(
    *, title: str, name: str | None = None, complete: dict[str, Completer] | None = None
) -> Callable[[Callable[..., Any]], PromptSpec]:
    """Mark a function as a prompt (``poggio_prompts()`` returns it). Its docstring is the description
    the client shows; ``complete`` maps argument names to their :data:`Completer`."""

    def decorate(fn: Callable[..., Any]) -> PromptSpec:
        description = inspect.getdoc(fn)
        if not description:
            raise TypeError(f"prompt {fn.__name__} needs a docstring: it is the description clients show")
        spec = PromptSpec(
            name=name or fn.__name__, fn=fn, title=title, description=description, complete=dict(complete or {})
        )
        unknown = set(spec.complete) - {p.name for p in spec.parameters()}
        if unknown:
            raise TypeError(f"prompt {spec.name}: complete= names no argument of it: {', '.join(sorted(unknown))}")
        return spec

    return decorate


SCAN = 1000  # rows a completer's index range may read, at most, to find its values


def prefix_range(column, value: str):
    """A peewee condition that keeps the rows of ``column`` starting with ``value``, as a range on
    the column's index, and is right under any collation: the range is on the letters and digits
    ``value`` starts with (up to its first other character), where ``>= w AND < w + U+10FFFF`` is a
    prefix match whatever the database's collation; :func:`completions` then keeps only the values
    that start with the whole of ``value``. ``None`` when ``value`` starts with no letter or digit."""
    head = ""
    for char in value:
        if not char.isalnum():
            break
        head += char
    if not head:
        return None
    return (column >= head) & (column < head + "\U0010ffff")


def prefix_values(query, column, value: str) -> list[str]:
    """The values of ``column`` in ``query``'s rows that start with ``value``, in the column's order:
    for a completer. Reads a range of the column's index (:func:`prefix_range`), :data:`SCAN` rows
    at most; ``query`` selects from the model already scoped to the workspace, e.g.
    ``Account.select(Account.domain).where(Account.workspace == ctx.workspace_id)`` (an index on
    (workspace, column) serves it). Case matters: store the column folded (domains, e-mail
    addresses) and fold ``value`` the same way where it should not."""
    if (within := prefix_range(column, value)) is not None:
        query = query.where(within)
    found = (v for (v,) in query.order_by(column).limit(SCAN).tuples())
    return [v for v in found if v.startswith(value)]


def completions(completer: Completer, ctx: ToolContext, value: str, arguments: dict[str, str] | None) -> dict[str, Any]:
    """What ``completion/complete`` answers for ``completer``: ``{values, hasMore, total?}``, at
    most :data:`MAX_COMPLETIONS` values, each a string starting with ``value`` (case-insensitively)."""
    found = completer(ctx, value, dict(arguments or {}))
    prefix = value.casefold()
    values: list[str] = []
    for item in found:
        if isinstance(item, str) and item.casefold().startswith(prefix) and item not in values:
            values.append(item)
        if len(values) > MAX_COMPLETIONS:
            break
    more = len(values) > MAX_COMPLETIONS
    values = values[:MAX_COMPLETIONS]
    answer: dict[str, Any] = {"values": values, "hasMore": more}
    if not more:
        answer["total"] = len(values)
    return answer
