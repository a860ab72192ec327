"""Forms of the portal (flask-wtf: every one carries a CSRF token)."""

from __future__ import annotations

from collections.abc import Callable

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    EmailField,
    PasswordField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from poggio.identity import scopes
from poggio.identity.tokens import EXPIRY_CHOICES

EXPIRY_OPTIONS = [(str(days), f"{days} days") for days in EXPIRY_CHOICES] + [
    ("date", "On a date"),
    ("never", "No expiry"),
]


class SignInForm(FlaskForm):
    email = EmailField("E-mail", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=200)])


class MultiCheckbox(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class PackScopes:
    """Per pack, read and write (write includes read): ``packs`` ticks read, ``write`` ticks write."""

    packs = MultiCheckbox("Tool packs (none ticked: every pack, read only)", choices=[])
    write = MultiCheckbox("May change (write)", choices=[])
    is_submitted: Callable[[], bool]  # FlaskForm's: the forms put this mixin before it

    def offer(self, choices: list[tuple[str, str]], current: str | None = None) -> None:
        """The packs to choose from; ``current`` (a stored scope) ticks the boxes on a fresh form."""
        self.packs.choices = self.write.choices = choices
        if current is not None and not self.is_submitted():
            levels = scopes.parse(current) or {}
            self.packs.data = sorted(levels)
            self.write.data = sorted(p for p, level in levels.items() if level == scopes.WRITE)

    def levels(self) -> dict[str, str] | None:
        """``{pack: level}`` ticked; ``None`` when nothing is (every pack, read only)."""
        writes = set(self.write.data or ())
        chosen = set(self.packs.data or ()) | writes
        return {p: scopes.WRITE if p in writes else scopes.READ for p in chosen} or None


class TokenForm(PackScopes, FlaskForm):
    name = StringField("Name", validators=[Length(max=100)], description='e.g. "ACME Slack agent"')
    expiry = RadioField("Expires", choices=EXPIRY_OPTIONS, default="30")
    expiry_date = DateField("Expiry date", validators=[Optional()])
    allowed_ips = TextAreaField(
        "Allowed networks (optional)",
        validators=[Length(max=2000)],
        description="IP addresses or CIDR ranges, IPv4 or IPv6, comma- or line-separated; empty: any",
    )
    rate_limit = StringField(
        "Own rate limit (optional)",
        validators=[Length(max=40)],
        description="e.g. 10/minute; below the installation's limit; empty: that limit",
    )
    tools = MultiCheckbox("Only these tools (none ticked: every tool of the packs chosen)", choices=[])

    def expiry_value(self) -> str:
        if self.expiry.data == "date":
            return self.expiry_date.data.isoformat() if self.expiry_date.data else "missing-date"
        return "never" if self.expiry.data == "never" else f"{self.expiry.data}d"


class EditTokenForm(PackScopes, FlaskForm):
    name = StringField("Name", validators=[Length(max=100)])
    expiry = RadioField("Expires", choices=[("keep", "Keep")] + EXPIRY_OPTIONS, default="keep")
    expiry_date = DateField("Expiry date", validators=[Optional()])

    allowed_ips: TextAreaField = TokenForm.allowed_ips  # type: ignore[assignment]  # unbound: bound per form
    rate_limit: StringField = TokenForm.rate_limit  # type: ignore[assignment]  # as above

    expiry_value = TokenForm.expiry_value


def limit_expiry_choices(form, rules) -> None:
    """Offer only the expiries the workspace's policy allows (a date is checked when submitted)."""

    def allowed(value: str) -> bool:
        if value == "never":
            return rules.allow_no_expiry
        return not value.isdigit() or rules.max_lifetime_days is None or int(value) <= rules.max_lifetime_days

    form.expiry.choices = [(v, label) for v, label in form.expiry.choices if allowed(v)]
    if rules.max_lifetime_days is not None and str(rules.max_lifetime_days) not in dict(form.expiry.choices):
        form.expiry.choices.insert(-1, (str(rules.max_lifetime_days), f"{rules.max_lifetime_days} days (maximum)"))


class RotateForm(FlaskForm):
    grace = RadioField(
        "The old secret keeps working for",
        default="none",
        choices=[("none", "No time: it stops now"), ("1h", "1 hour"), ("24h", "24 hours"), ("7d", "7 days")],
    )


class PolicyForm(FlaskForm):
    default_expiry = SelectField(
        "Default expiry of a new token",
        choices=[
            ("7", "7 days"),
            ("30", "30 days"),
            ("60", "60 days"),
            ("90", "90 days"),
            ("180", "180 days"),
            ("365", "365 days"),
            ("none", "No expiry"),
        ],
    )
    max_lifetime = SelectField(
        "Maximum lifetime of a token or connected app",
        choices=[
            ("none", "No maximum"),
            ("7", "7 days"),
            ("30", "30 days"),
            ("60", "60 days"),
            ("90", "90 days"),
            ("180", "180 days"),
            ("365", "365 days"),
        ],
    )
    allow_no_expiry = BooleanField("Allow tokens without expiry (only without a maximum lifetime)")


class ActionForm(FlaskForm):
    """A bare form for buttons (revoke, rotate, sign out): only the CSRF token."""


class OAuthClientForm(PackScopes, FlaskForm):
    """A confidential OAuth client for the client_credentials grant."""

    name = StringField("Name", validators=[Length(max=100)], description='e.g. "Nightly CRM sync"')


class AppPolicyForm(FlaskForm):
    """Which apps may connect to the workspace, and who may connect them."""

    apps = RadioField(
        "Which apps may connect", default="any", choices=[("any", "Any app"), ("listed", "Only the apps listed below")]
    )
    allowed = TextAreaField(
        "Listed apps, one a line",
        validators=[Length(max=50_000)],
        description="An app's client metadata URL (https://…; ending in / for every URL under "
        "it) or, for an app that registered itself, its client id (pgc_…).",
    )
    access = RadioField(
        "Who may connect apps",
        default="admins",
        choices=[
            ("admins", "Administrators only"),
            ("members", "Members too: each request needs an administrator's approval"),
        ],
    )
