"""Entry point of the accounts pack (``poggio`` group, name ``accounts``)."""

from pathlib import Path

from plugins.accounts import demo, importer, tools
from poggio import PackInfo, __version__, hookimpl


@hookimpl
def poggio_pack():
    return PackInfo(name="accounts", title="Accounts", version=__version__,
                    description="Search companies and read an account's full profile.")


@hookimpl
def poggio_tools():
    return [tools.search_accounts, tools.get_account]


@hookimpl
def poggio_migrations():
    return Path(__file__).parent / "migrations"


@hookimpl
def poggio_seed_demo(workspace_id, rng, accounts, progress):
    demo.seed(workspace_id, rng, accounts, progress)


@hookimpl
def poggio_csv_importers():
    return [importer.CSV_KIND]
