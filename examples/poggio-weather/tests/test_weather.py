"""The weather pack as Poggio loads it: its entry point, its table, its CSV kind, demo data and tool."""

import random

import poggio_weather
import pytest

from poggio import ResourceNotFound, ToolError
from poggio.testing import load_pack, tool_context, workspace


def test_pack_loads_through_its_entry_point():
    pack = load_pack("weather")
    assert [t.name for t in pack.tools] == ["sales_weather"]
    assert [i.kind for i in pack.importers] == ["forecasts"]
    assert [r.uri for r in pack.resources] == ["weather://forecasts/{city}"]
    assert [p.name for p in pack.prompts] == ["plan_trip"]


def test_prompt_and_its_completion(tmp_path):
    with workspace(tmp_path) as (registry, workspace_id):
        kind = registry.importer("forecasts")
        kind.write(workspace_id, [{"city": "Lisbon", "forecast": "sunny"}, {"city": "Linz", "forecast": "mild"}])
        ctx = tool_context(workspace_id)
        assert poggio_weather.complete_city(ctx, "li", {}) == ["Linz", "Lisbon"]
        assert poggio_weather.complete_city(tool_context(workspace_id + 1), "li", {}) == []  # another workspace
        (message,) = registry.prompt("plan_trip").render(ctx, {"city": "lisbon"})
        assert message.content.startswith("The sales weather in Lisbon: sunny.")


def test_forecasts_import_seed_and_answer(tmp_path):
    with workspace(tmp_path) as (registry, workspace_id):
        kind = registry.importer("forecasts")
        assert kind is not None
        cleaned, errors = kind.validate(
            workspace_id, [(2, {"city": "lisbon", "forecast": "sunny"}), (3, {"city": "Lisbon", "forecast": "rainy"})]
        )
        assert errors == [(3, "city", "Lisbon already has a forecast")]
        assert kind.write(workspace_id, cleaned) == 1
        result = poggio_weather.sales_weather(tool_context(workspace_id), city="LISBON")
        assert result.text == "Lisbon: sunny" and result.data.workspace_id == workspace_id
        with pytest.raises(ToolError):
            poggio_weather.sales_weather(tool_context(workspace_id + 1), city="Lisbon")  # another workspace
        spec, values = registry.resolve("weather://forecasts/lisbon")
        (content,) = spec.read(tool_context(workspace_id), "weather://forecasts/lisbon", values)
        assert content.text == "Lisbon: sunny" and content.mime_type == "text/plain"
        with pytest.raises(ResourceNotFound):  # another workspace's city is not found
            spec.read(tool_context(workspace_id + 1), "weather://forecasts/lisbon", values)
        assert poggio_weather.poggio_seed_demo(workspace_id, random.Random(1), 10, lambda *_: None) is False
