"""Settings > Webhooks: a workspace's endpoints, for its admins. Add one (its signing secret shown
once), pause or resume, remove, send a test event, and read each endpoint's delivery log.

Plain forms that post and render the page again: the page works without JavaScript."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from poggio.notices import webhooks
from poggio.records import webhook_outbox
from poggio.records.audit import Actor
from portal.access import admin_required, client_ip, core
from portal.forms import ActionForm, MultiCheckbox

bp = Blueprint("webhooks", __name__, url_prefix="/settings/webhooks")


def _actor() -> Actor:
    return Actor(current_user._get_current_object(), ip=client_ip())


class EndpointForm(FlaskForm):
    url = StringField("Endpoint URL (https)", validators=[DataRequired(), Length(max=2000)])
    events = MultiCheckbox(
        "Events (none ticked: all but every write tool call)",
        choices=[(k, v) for k, v in webhook_outbox.EVENTS.items() if k != "webhook.test"],
    )


def _page(workspace, form=None, secret=None, status=200):
    rows = [{"e": e, "pending": webhooks.pending_count(e)} for e in webhooks.endpoints(workspace)]
    return render_template(
        "settings/webhooks.html", rows=rows, form=form or EndpointForm(), secret=secret, events=webhook_outbox.EVENTS
    ), status


def _endpoint(workspace, endpoint_id):
    endpoint = webhooks.get_endpoint(workspace, endpoint_id)
    if endpoint is None:
        abort(404)
    return endpoint


@bp.get("/")
@admin_required
def index(workspace):
    return _page(workspace)


@bp.post("/")
@admin_required
def add(workspace):
    form = EndpointForm()
    if not form.validate_on_submit():
        return _page(workspace, form, status=422)
    try:
        added = webhooks.add_endpoint(
            workspace,
            form.url.data or "",
            form.events.data,
            _actor(),
            allow_private=core().settings.webhook_allow_private,
            secret_key=core().settings.secret_key,
        )
    except webhooks.WebhookError as exc:
        form.url.errors = [str(exc)]
        return _page(workspace, form, status=422)
    return _page(workspace, secret={"id": added.endpoint.id, "value": added.secret})


@bp.get("/<int:endpoint_id>")
@admin_required
def detail(workspace, endpoint_id):
    endpoint = _endpoint(workspace, endpoint_id)
    return render_template(
        "settings/webhook.html",
        e=endpoint,
        attempts=webhooks.deliveries(endpoint),
        pending=webhooks.pending_count(endpoint),
    )


def _action(workspace, endpoint_id, do, message):
    if not ActionForm().validate_on_submit():
        abort(400)
    endpoint = _endpoint(workspace, endpoint_id)
    do(endpoint)
    flash(message)
    return redirect(url_for("webhooks.detail", endpoint_id=endpoint.id))


@bp.post("/<int:endpoint_id>/test")
@admin_required
def test(workspace, endpoint_id):
    return _action(
        workspace,
        endpoint_id,
        lambda e: webhooks.send_test(e, current_user.email),
        "A test event is on its way; it appears below once tried.",
    )


@bp.post("/<int:endpoint_id>/pause")
@admin_required
def pause(workspace, endpoint_id):
    return _action(
        workspace, endpoint_id, lambda e: webhooks.set_paused(workspace, e.id, True, _actor()), "Endpoint paused."
    )


@bp.post("/<int:endpoint_id>/resume")
@admin_required
def resume(workspace, endpoint_id):
    return _action(
        workspace,
        endpoint_id,
        lambda e: webhooks.set_paused(workspace, e.id, False, _actor()),
        "Endpoint resumed: what failed in the last day is tried again.",
    )


@bp.post("/<int:endpoint_id>/remove")
@admin_required
def remove(workspace, endpoint_id):
    if not ActionForm().validate_on_submit():
        abort(400)
    if not webhooks.remove_endpoint(workspace, endpoint_id, _actor()):
        abort(404)
    flash("Endpoint removed.")
    return redirect(url_for("webhooks.index"))
