"""Entry point of the revenue pack (``poggio`` group, name ``revenue``)."""

from pathlib import Path

from plugins.revenue import demo, importer, tools
from poggio import PackInfo, __version__, hookimpl


@hookimpl
def poggio_pack():
    return PackInfo(name="revenue", title="Revenue", version=__version__, requires=("accounts",),
                    description="Pipeline, won revenue and opportunities.")


@hookimpl
def poggio_tools():
    return [tools.get_revenue_summary, tools.list_opportunities]


@hookimpl
def poggio_migrations():
    return Path(__file__).parent / "migrations"


@hookimpl
def poggio_account_profile(ctx, account):
    return tools.profile_section(ctx, account)


@hookimpl
def poggio_seed_demo(workspace_id, rng, accounts, progress):
    demo.seed(workspace_id, rng, accounts, progress)


@hookimpl
def poggio_csv_importers():
    return [importer.CSV_KIND]
