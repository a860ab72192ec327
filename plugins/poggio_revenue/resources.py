"""Resources of the revenue pack: ``poggio://revenue/summary`` (won, lost and open pipeline per
currency and stage, as JSON and as text) and the pipeline view, an MCP App view of
``get_revenue_summary``."""

from __future__ import annotations

from pathlib import Path

from poggio import ToolContext, app_view, hookimpl, resource
from poggio_revenue.tools import get_revenue_summary

PIPELINE = "ui://revenue/pipeline.html"


@resource(
    "poggio://revenue/summary",
    name="revenue_summary",
    title="Revenue summary",
    description="The workspace's won revenue, open pipeline, lost amounts and win rate, per currency and "
    "per stage: JSON, then the same as text.",
)
def revenue_summary(ctx: ToolContext):
    return get_revenue_summary(ctx)


pipeline = app_view(
    PIPELINE,
    (Path(__file__).parent / "pipeline.html").read_text(encoding="utf-8"),
    name="pipeline",
    title="Pipeline",
    description="Opportunities by stage and totals per currency, shown with get_revenue_summary's result.",
)


@hookimpl
def poggio_resources():
    return [revenue_summary, pipeline]
