"""Sales weather: the forecast a sales team keeps per city, readable by MCP clients.

An example third-party pack: everything it uses of Poggio comes from ``poggio`` itself."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from peewee import CharField, DateTimeField
from pydantic import BaseModel, Field

from poggio import (
    CsvKind,
    PackInfo,
    ResourceNotFound,
    ToolContext,
    ToolError,
    ToolResult,
    WorkspaceModel,
    hookimpl,
    prefix_values,
    prompt,
    resource,
    tool,
    utcnow,
    writing,
)

__version__ = "1.0.0"


class CityForecast(WorkspaceModel):
    city = CharField(max_length=80)
    forecast = CharField(max_length=200)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "weather_forecast"
        indexes = ((("workspace", "city"), True),)


class Forecast(BaseModel):
    city: str
    forecast: str
    workspace_id: int


@tool(title="Sales weather")
def sales_weather(
    ctx: ToolContext,
    city: Annotated[str, Field(min_length=1, max_length=80, description="A city, e.g. Lisbon.")],
) -> ToolResult[Forecast]:
    """How the sales weather looks in a city, as the team last recorded it."""
    # a plain peewee query, scoped to the caller's workspace
    row = CityForecast.get_or_none(
        (CityForecast.workspace == ctx.workspace_id) & (CityForecast.city == city.strip().title())
    )
    if row is None:
        raise ToolError("city", f"no forecast for {city.strip()!r} in this workspace")
    data = Forecast(city=row.city, forecast=row.forecast, workspace_id=ctx.workspace_id)
    return ToolResult(data, f"{data.city}: {data.forecast}")


@resource(
    "weather://forecasts/{city}",
    name="city_forecast",
    title="A city's sales weather",
    description="The sales weather of one city, as text.",
    mime_type="text/plain",
)
def city_forecast(ctx: ToolContext, city: str) -> str:
    # the same query as the tool; a city without a forecast in this workspace is not found
    row = CityForecast.get_or_none(
        (CityForecast.workspace == ctx.workspace_id) & (CityForecast.city == city.strip().title())
    )
    if row is None:
        raise ResourceNotFound(f"no forecast for {city.strip()!r} in this workspace")
    return f"{row.city}: {row.forecast}"


def complete_city(ctx: ToolContext, value: str, arguments: dict[str, str]) -> list[str]:
    """The workspace's cities starting with what the user typed (the (workspace, city) index)."""
    query = CityForecast.select(CityForecast.city).where(CityForecast.workspace == ctx.workspace_id)
    return prefix_values(query, CityForecast.city, value.strip().title())


@prompt(title="Plan a sales trip", complete={"city": complete_city})
def plan_trip(
    ctx: ToolContext,
    city: Annotated[str, Field(min_length=1, max_length=80, description="The city to visit, e.g. Lisbon.")],
):
    """Plan a sales trip to a city, from the sales weather recorded there."""
    weather = sales_weather(ctx, city=city).text  # a tool is a function: the prompt reuses it
    return f"The sales weather in {weather}. Plan a two-day sales trip there: whom to visit and what to bring."


def _write(workspace_id: int, rows: list[dict]) -> int:
    now = utcnow()
    CityForecast.insert_many([{**r, "workspace": workspace_id, "updated_at": now} for r in rows]).execute()
    return len(rows)


def _validate(workspace_id: int, rows):
    cleaned, errors, seen = [], [], {}
    known = {f.city for f in CityForecast.select(CityForecast.city).where(CityForecast.workspace == workspace_id)}
    for line, row in rows:
        city, forecast = row["city"].strip().title(), row["forecast"].strip()
        if not city or len(city) > 80:
            errors.append((line, "city", "required, at most 80 characters"))
        elif city in known or city in seen:
            errors.append((line, "city", f"{city} already has a forecast"))
        elif not forecast or len(forecast) > 200:
            errors.append((line, "forecast", "required, at most 200 characters"))
        else:
            seen[city] = line
            cleaned.append({"city": city, "forecast": forecast})
    return cleaned, errors


@hookimpl
def poggio_pack():
    return PackInfo(
        name="weather",
        title="Sales weather",
        version=__version__,
        description="The sales weather per city.",
        instructions="sales_weather(city) tells how sales look there.",
    )


@hookimpl
def poggio_tools():
    return [sales_weather]


@hookimpl
def poggio_resources():
    return [city_forecast]


@hookimpl
def poggio_prompts():
    return [plan_trip]


@hookimpl
def poggio_migrations():
    return Path(__file__).parent / "migrations"


@hookimpl
def poggio_csv_importers():
    return [CsvKind(kind="forecasts", columns=("city", "forecast"), validate=_validate, write=_write)]


@hookimpl
def poggio_seed_demo(workspace_id, rng, accounts, progress):
    if CityForecast.select().where(CityForecast.workspace == workspace_id).exists():
        return False
    skies = ["sunny with a chance of renewals", "cloudy, pipeline building", "stormy: budgets frozen"]
    with writing():
        _write(workspace_id, [{"city": c, "forecast": rng.choice(skies)} for c in ("Lisbon", "Oslo", "Osaka")])
    progress(1, 1)
    return True
