"""The accounts tool pack: companies a sales team works with, searchable, with a profile that
gathers what every pack in the caller's scope knows about one account.

Packs that require it (``PackInfo(requires=("accounts",))``) may use the names in ``__all__``, and
implement the hook it owns, ``poggio_account_profile`` (:mod:`poggio_accounts.hookspecs`).
"""

from pathlib import Path

from poggio import PackInfo, __version__, hookimpl
from poggio_accounts import hookspecs
from poggio_accounts.demo import poggio_seed_demo as poggio_seed_demo
from poggio_accounts.hookspecs import ProfileSection
from poggio_accounts.importer import poggio_csv_importers as poggio_csv_importers
from poggio_accounts.models import (
    Account,
    account_chunks,
    account_id,
    account_of,
    find_account,
    normalise_domain,
)
from poggio_accounts.prompts import complete_domain
from poggio_accounts.resources import poggio_resources as poggio_resources
from poggio_accounts.tools import poggio_tools as poggio_tools

__all__ = [
    "Account",
    "ProfileSection",
    "account_chunks",
    "account_id",
    "account_of",
    "complete_domain",
    "find_account",
    "normalise_domain",
]


@hookimpl
def poggio_pack():
    return PackInfo(
        name="accounts",
        title="Accounts",
        version=__version__,
        hookspecs=hookspecs,
        description="Search companies and read an account's full profile.",
        instructions="Start with search_accounts, or get_account(domain) for everything known "
        "about one account. With write access: create_account, update_account (pass "
        "the updated_at you read as if_unmodified_since) and add_note for what "
        "happened; give each change an idempotency_key so a retry is safe.",
    )


@hookimpl
def poggio_migrations():
    return Path(__file__).parent / "migrations"


@hookimpl
def poggio_prompts():
    from poggio_accounts.prompts import PROMPTS

    return PROMPTS
