"""The revenue tool pack: opportunities (deals), the pipeline and won revenue, per account or for the
whole workspace, with a section in every account's profile."""

from pathlib import Path

from poggio import PackInfo, __version__, hookimpl
from poggio_revenue.demo import poggio_seed_demo as poggio_seed_demo
from poggio_revenue.importer import poggio_csv_importers as poggio_csv_importers
from poggio_revenue.models import OPEN_STAGES, STAGES, Opportunity
from poggio_revenue.resources import poggio_resources as poggio_resources
from poggio_revenue.tools import poggio_account_profile as poggio_account_profile
from poggio_revenue.tools import poggio_note_link as poggio_note_link
from poggio_revenue.tools import poggio_tools as poggio_tools

__all__ = ["OPEN_STAGES", "STAGES", "Opportunity"]


@hookimpl
def poggio_pack():
    return PackInfo(
        name="revenue",
        title="Revenue",
        version=__version__,
        requires=("accounts",),
        description="Pipeline, won revenue and opportunities.",
        instructions="get_revenue_summary totals won, open and lost deals per currency; "
        "list_opportunities lists the deals themselves (with their ids); with write "
        "access, create_opportunity and update_opportunity (stage, amount, close "
        "date) change them.",
    )


@hookimpl
def poggio_migrations():
    return Path(__file__).parent / "migrations"


@hookimpl
def poggio_prompts():
    from poggio_revenue.prompts import PROMPTS

    return PROMPTS
