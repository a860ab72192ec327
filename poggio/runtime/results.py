"""What a tool answers: its result (:class:`ToolResult`, a model and its text, with attachments: images,
audio, embedded resources), the error it raises for the caller (:class:`ToolError`), and its icons. A
leaf of the pack runtime: tools (:mod:`poggio.runtime.packs`) and write tools (:mod:`poggio.runtime.writes`)
build on it."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel


class ToolError(Exception):
    """A tool's answer to bad input or a missing object; the message reaches the caller as a tool
    error. Name the argument: ``ToolError("domain", "no account with this domain")``."""

    def __init__(self, field: str | None, message: str):
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Image:
    """An image a tool returns beside its text (``data`` is the raw bytes, e.g. a PNG)."""

    data: bytes
    mime_type: str


@dataclass(frozen=True)
class Audio:
    """A sound a tool returns beside its text (``data`` is the raw bytes, e.g. ``audio/wav``)."""

    data: bytes
    mime_type: str


@dataclass(frozen=True)
class Resource:
    """A document a tool returns embedded in its answer, named by ``uri``: ``text`` or ``blob``."""

    uri: str
    mime_type: str
    text: str | None = None
    blob: bytes | None = None

    def __post_init__(self) -> None:
        if (self.text is None) == (self.blob is None):
            raise ValueError("a Resource carries exactly one of text or blob")


ICON_SCHEMES = ("https:", "http:", "data:")


@dataclass(frozen=True)
class Icon:
    """An icon a client may show beside a tool (MCP ``icons``): ``src`` an ``https:`` URL or a
    ``data:`` URI (a self-contained image is best: a client need not fetch it); ``sizes`` such as
    ``("48x48",)`` or ``("any",)``; ``theme`` ``"light"`` or ``"dark"`` when drawn for one."""

    src: str
    mime_type: str | None = None
    sizes: tuple[str, ...] = ()
    theme: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.src, str) or not self.src.lower().startswith(ICON_SCHEMES):
            raise ValueError(f"an icon's src is an https:, http: or data: URI, not {str(self.src)[:40]!r}")
        if self.theme not in (None, "light", "dark"):
            raise ValueError(f"an icon's theme is 'light' or 'dark', not {self.theme!r}")


D = TypeVar("D", bound=BaseModel | None)


@dataclass
class ToolResult(Generic[D]):
    """What a tool returns: ``data`` (its output model, for programs; ``None`` for a tool without
    one), ``text`` (the same for people and LLMs) and optional ``attachments`` that follow the text
    in the answer's content. A tool says its output model as ``-> ToolResult[AccountOut]`` (or, as
    before, ``-> AccountOut``), and ``-> ToolResult[None]`` when it has none."""

    data: D
    text: str
    attachments: tuple[Image | Audio | Resource, ...] = ()


def output_model(annotation: Any) -> type[BaseModel] | None:
    """The output model a tool's return annotation names: ``X`` of ``ToolResult[X]`` or ``X`` itself."""
    if typing.get_origin(annotation) is ToolResult:
        annotation = typing.get_args(annotation)[0]
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
