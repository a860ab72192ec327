"""The contacts tool pack: the people at accounts, searchable, and listed in an account's profile."""

from pathlib import Path

from poggio import PackInfo, __version__, hookimpl
from poggio_contacts.demo import poggio_seed_demo as poggio_seed_demo
from poggio_contacts.importer import poggio_csv_importers as poggio_csv_importers
from poggio_contacts.models import Contact
from poggio_contacts.resources import poggio_resources as poggio_resources
from poggio_contacts.tools import poggio_account_profile as poggio_account_profile
from poggio_contacts.tools import poggio_note_link as poggio_note_link
from poggio_contacts.tools import poggio_tools as poggio_tools

__all__ = ["Contact"]


@hookimpl
def poggio_pack():
    return PackInfo(
        name="contacts",
        title="Contacts",
        version=__version__,
        requires=("accounts",),
        description="Search the people at your accounts.",
        instructions="search_contacts finds people by name, e-mail or title, or at one account; "
        "with write access, create_contact and update_contact change them.",
    )


@hookimpl
def poggio_migrations():
    return Path(__file__).parent / "migrations"


@hookimpl
def poggio_prompts():
    from poggio_contacts.prompts import PROMPTS

    return PROMPTS
