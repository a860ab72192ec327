"""Entry point of the contacts pack (``poggio`` group, name ``contacts``)."""

from pathlib import Path

from plugins.contacts import demo, importer, tools
from poggio import PackInfo, __version__, hookimpl


@hookimpl
def poggio_pack():
    return PackInfo(name="contacts", title="Contacts", version=__version__, requires=("accounts",),
                    description="Search the people at your accounts.")


@hookimpl
def poggio_tools():
    return [tools.search_contacts, tools.get_contact]


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
