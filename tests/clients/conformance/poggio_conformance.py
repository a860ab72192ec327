"""A test-only tool pack with the fixture tools the MCP conformance suite calls.

It is installed into the test environment the way a third party ships a pack (a distribution with
an entry point in the ``poggio`` group, see ``helpers.install_pack``), so the conformance run also
proves the plugin route: discovery, binding, and the image, audio and embedded-resource content a
pack can return. The texts, URIs and MIME types are the ones the suite's scenarios check.
"""

from __future__ import annotations

import io
import json
import struct
import time
import wave
import zlib
from typing import Annotated

from pydantic import Field

from poggio import Audio, Image, Message, PackInfo, Resource, ToolError, ToolResult, hookimpl, prompt, resource, tool


def _png() -> bytes:
    """A valid 1x1 red PNG."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    pixels = zlib.compress(b"\x00\xff\x00\x00")  # filter byte + one red pixel
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _wav() -> bytes:
    """A valid tenth of a second of silence, 8 kHz mono 16-bit."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 800)
    return out.getvalue()


PNG, WAV = _png(), _wav()


@tool(title="Simple text")
def test_simple_text(ctx) -> ToolResult:
    """Returns a simple text response (conformance fixture)."""
    return ToolResult(None, "This is a simple text response for testing.")


@tool(title="Image content")
def test_image_content(ctx) -> ToolResult:
    """Returns a PNG image (conformance fixture)."""
    return ToolResult(None, "A 1x1 red PNG.", (Image(PNG, "image/png"),))


@tool(title="Audio content")
def test_audio_content(ctx) -> ToolResult:
    """Returns a WAV sound (conformance fixture)."""
    return ToolResult(None, "A tenth of a second of silence.", (Audio(WAV, "audio/wav"),))


@tool(title="Embedded resource")
def test_embedded_resource(ctx) -> ToolResult:
    """Returns an embedded text resource (conformance fixture)."""
    return ToolResult(
        None,
        "An embedded resource follows.",
        (Resource("test://embedded-resource", "text/plain", text="This is an embedded resource content."),),
    )


@tool(title="Mixed content")
def test_multiple_content_types(ctx) -> ToolResult:
    """Returns text, an image and an embedded JSON resource (conformance fixture)."""
    return ToolResult(
        None,
        "Multiple content types test:",
        (
            Image(PNG, "image/png"),
            Resource(
                "test://mixed-content-resource", "application/json", text=json.dumps({"test": "data", "value": 123})
            ),
        ),
    )


@tool(title="Error handling")
def test_error_handling(ctx) -> ToolResult:
    """Always answers with a tool error (conformance fixture)."""
    raise ToolError(None, "This tool intentionally returns an error for testing")


@resource("test://static-text", name="static_text", title="Static text", mime_type="text/plain")
def static_text(ctx) -> str:
    """A static text resource (conformance fixture)."""
    return "This is the content of the static text resource."


@resource("test://static-binary", name="static_binary", title="Static binary", mime_type="image/png")
def static_binary(ctx) -> bytes:
    """A static binary resource, a PNG (conformance fixture)."""
    return PNG


@resource("test://template/{id}/data", name="template_data", title="Template data")
def template_data(ctx, id: str) -> dict:
    """A resource template: the data of one id (conformance fixture)."""
    return {"id": id, "templateTest": True, "data": f"Data for ID: {id}"}


@resource("test://watched-resource", name="watched_resource", title="Watched", mime_type="text/plain")
def watched_resource(ctx) -> str:
    """The resource the subscribe scenarios subscribe to (conformance fixture)."""
    return "Watched resource content."


@tool(title="Logging", logs=True)
def test_tool_with_logging(ctx) -> ToolResult:
    """Sends three log notices while it runs, 50 ms apart (conformance fixture)."""
    ctx.log("info", "Tool execution started")
    time.sleep(0.05)
    ctx.log("info", "Tool processing data")
    time.sleep(0.05)
    ctx.log("info", "Tool execution completed")
    return ToolResult(None, "Logged three notices.")


@tool(title="Progress", progress=True)
def test_tool_with_progress(ctx) -> ToolResult:
    """Reports progress 0, 50 and 100 of 100, 50 ms apart (conformance fixture)."""
    for done in (0, 50, 100):
        ctx.progress(done, 100, f"{done} of 100")
        if done < 100:
            time.sleep(0.05)
    return ToolResult(None, "Progress reported.")


@prompt(title="Simple prompt")
def test_simple_prompt(ctx):
    """A prompt without arguments (conformance fixture)."""
    return "This is a simple prompt for testing."


def _complete_arg1(ctx, value, arguments):
    return [v for v in ("test", "testing", "tested", "other") if v.startswith(value)]


@prompt(title="Prompt with arguments", complete={"arg1": _complete_arg1})
def test_prompt_with_arguments(
    ctx,
    arg1: Annotated[str, Field(description="First test argument")],
    arg2: Annotated[str, Field(description="Second test argument")],
):
    """A prompt with two required arguments (conformance fixture)."""
    return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"


@prompt(title="Prompt with an embedded resource")
def test_prompt_with_embedded_resource(
    ctx, resourceUri: Annotated[str, Field(description="URI of the resource to embed")]
):
    """A prompt whose first message embeds a resource (conformance fixture)."""
    return [
        Message(Resource(resourceUri, "text/plain", text="Embedded resource content for testing.")),
        Message("Please process the embedded resource above."),
    ]


@prompt(title="Prompt with an image")
def test_prompt_with_image(ctx):
    """A prompt whose first message is an image (conformance fixture)."""
    return [Message(Image(PNG, "image/png")), Message("Please analyze the image above.")]


@hookimpl
def poggio_prompts():
    return [test_simple_prompt, test_prompt_with_arguments, test_prompt_with_embedded_resource, test_prompt_with_image]


@hookimpl
def poggio_pack():
    return PackInfo(
        name="conformance",
        title="MCP conformance fixtures",
        version="1.0.0",
        description="Test-only tools the MCP conformance suite calls.",
    )


@hookimpl
def poggio_tools():
    return [
        test_simple_text,
        test_image_content,
        test_audio_content,
        test_embedded_resource,
        test_multiple_content_types,
        test_error_handling,
        test_tool_with_logging,
        test_tool_with_progress,
    ]


@hookimpl
def poggio_resources():
    return [static_text, static_binary, template_data, watched_resource]
