"""SCIM 2.0 on the portal (RFC 7643, 7644): ``/scim/v2/Users`` and ``/scim/v2/Groups`` of the
workspace whose SCIM token is presented, with the discovery endpoints (``ServiceProviderConfig``,
``ResourceTypes``, ``Schemas``). Resources, messages and errors are ``scim2-models``'; what
provisioning does to Poggio's users is :mod:`poggio.identity.scim`'s.

Every request needs ``Authorization: Bearer pgsc_…``; every answer is ``application/scim+json``;
every refusal is a SCIM Error (status, ``scimType``, detail) and leaves nothing half-done."""

from __future__ import annotations

import datetime as dt
import json

from flask import Blueprint, Response, g, request
from pydantic import ValidationError
from scim2_models import (
    URI,
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
    Error,
    ETag,
    Filter,
    Group,
    ListResponse,
    Meta,
    Patch,
    PatchOp,
    Reference,
    ResourceType,
    ResponseParameters,
    SCIMException,
    ScimFilter,
    SearchRequest,
    ServiceProviderConfig,
    Sort,
    User,
)

from poggio.errors import InvalidInput
from poggio.identity import scim
from poggio.identity.scim import Conflict, ScimGroup, ScimUser
from poggio.records import audit
from portal.access import client_ip, core

bp = Blueprint("scim", __name__, url_prefix="/scim/v2")
MEDIA = "application/scim+json"
MAX_RESULTS = 200


class Refused(Exception):
    def __init__(self, status: int, detail: str, scim_type: str | None = None):
        super().__init__(detail)
        self.status, self.detail, self.scim_type = status, detail, scim_type


@bp.app_template_global()
def token_review(token_id: int):
    """The review flag of an API token whose creator was deprovisioned (Settings > MCP Server), or None."""
    return scim.TokenReview.get_or_none(scim.TokenReview.token == token_id)


def _answer(body: dict, status: int = 200, headers: dict | None = None) -> Response:
    response = Response(json.dumps(body), status=status, mimetype=MEDIA)
    response.headers["Cache-Control"] = "no-store"
    for k, v in (headers or {}).items():
        response.headers[k] = v
    return response


def _error(status: int, detail: str, scim_type: str | None = None) -> Response:
    body = Error(status=status, scim_type=scim_type, detail=detail).model_dump()
    headers = {"WWW-Authenticate": 'Bearer realm="scim"'} if status == 401 else None
    return _answer(body, status, headers)


def _base() -> str:
    return core().settings.portal_public_url + "/scim/v2"


@bp.before_request
def _authenticate():
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    pepper = core().settings.token_pepper
    token = scim.verify_token(presented.strip(), pepper) if scheme.lower() == "bearer" else None
    if token is None:
        return _error(401, "A valid SCIM bearer token is required (Settings > Sign-in, or `poggio scim token create`).")
    g.scim_token = token
    g.scim_actor = scim.client_actor(token, client_ip())
    return None


@bp.errorhandler(Refused)
def _refused(exc: Refused):
    if exc.status >= 400 and exc.status != 404:
        token = g.get("scim_token")
        audit.record(
            "scim.request_refused",
            g.get("scim_actor") or scim.Actor(label="scim"),
            token.workspace_id if token is not None else None,
            target=request.path[:200],
            method=request.method,
            status=exc.status,
            reason=exc.detail[:300],
        )
    return _error(exc.status, exc.detail, exc.scim_type)


def _body() -> dict:
    data = request.get_json(force=True, silent=True)
    if not isinstance(data, dict):
        raise Refused(400, "The request body is not a SCIM JSON object.", "invalidSyntax")
    return data


def _validate(model, data: dict, ctx: Context):
    try:
        return model.model_validate(data, scim_ctx=ctx)
    except ValidationError as exc:
        first = Error.from_validation_errors(exc)[0]
        raise Refused(
            first.status or 400, first.detail or "Invalid SCIM payload", first.scim_type or "invalidValue"
        ) from None
    except SCIMException as exc:
        raise Refused(exc.status, exc.detail, exc.scim_type) from None


def _stamp(at: dt.datetime) -> str:
    return at.replace(microsecond=0).isoformat() + "Z"


# -- users ------------------------------------------------------------------------------------
def _user_resource(row: ScimUser) -> User:
    document = json.loads(row.document or "{}")
    document.pop("meta", None)
    document.update(
        {
            "id": str(row.id),
            "schemas": [User.__schema__] if not document.get("schemas") else document["schemas"],
            "meta": {
                "resourceType": "User",
                "created": _stamp(row.created_at),
                "lastModified": _stamp(row.updated_at),
                "location": f"{_base()}/Users/{row.id}",
                "version": f'W/"{int(row.updated_at.timestamp() * 1000)}"',
            },
        }
    )
    return User.model_validate(document)


def _dump(resource, ctx: Context) -> dict:
    return resource.model_dump(scim_ctx=ctx)


def _user_row(scim_id: str) -> ScimUser:
    row = (
        ScimUser.get_or_none((ScimUser.id == int(scim_id)) & (ScimUser.workspace == g.scim_token.workspace_id))
        if scim_id.isdigit() and len(scim_id) < 10
        else None
    )
    if row is None:
        raise Refused(404, f"No user {scim_id} in this workspace.")
    return row


def _stored(resource) -> dict:
    """What is kept of a validated resource: everything but ``id`` and ``meta``."""
    data = resource.model_dump(scim_ctx=Context.DEFAULT)
    data.pop("id", None)
    data.pop("meta", None)
    return data


def _core_errors(fn, *args):
    try:
        return fn(*args)
    except Conflict as exc:
        raise Refused(409, str(exc), "uniqueness") from None
    except InvalidInput as exc:
        raise Refused(400, exc.message, "invalidValue") from None


def _parameters(model):
    """The ``attributes`` and ``excludedAttributes`` of a GET, as scim2-models reads them."""
    wanted = {k: request.args[k] for k in ("attributes", "excludedAttributes") if request.args.get(k)}
    if not wanted:
        return None
    return _validate(ResponseParameters[model], wanted, Context.RESOURCE_QUERY_REQUEST)  # type: ignore[valid-type]  # generic, parametrised at run time


def _list(model, rows, to_resource, search=None):
    """A ListResponse of ``rows`` under a GET's query parameters, or a POSTed SearchRequest's."""
    if search is not None:
        expression, start, count, parameters = search.filter, search.start_index or 1, search.count, search
    else:
        raw_filter = request.args.get("filter", "")
        try:
            start = int(request.args.get("startIndex", "1"))
            count = int(request.args["count"]) if request.args.get("count") else None
        except ValueError:
            raise Refused(400, "startIndex and count must be numbers.", "invalidValue") from None
        try:
            expression = ScimFilter[model](raw_filter) if raw_filter else None  # type: ignore[valid-type]  # as above
        except (SCIMException, ValueError, TypeError) as exc:
            raise Refused(400, f"This filter cannot be read: {raw_filter[:200]} ({exc})", "invalidFilter") from None
        parameters = _parameters(model)
    start = max(1, start)
    count = MAX_RESULTS if count is None else max(0, min(count, MAX_RESULTS))
    resources = [to_resource(r) for r in rows]
    if expression is not None:
        try:
            resources = [r for r in resources if expression.match(r)]
        except (SCIMException, ValueError, TypeError) as exc:
            raise Refused(400, f"This filter cannot be applied: {exc}", "invalidFilter") from None
    page = resources[start - 1 : start - 1 + count]
    body = ListResponse[model](  # type: ignore[valid-type]  # generic, parametrised at run time
        total_results=len(resources), start_index=start, items_per_page=len(page), resources=page
    )
    return _answer(body.model_dump(scim_ctx=Context.SEARCH_RESPONSE, response_parameters=parameters))


def _search(model):
    return _validate(SearchRequest[model], _body(), Context.SEARCH_REQUEST)  # type: ignore[valid-type]  # as above


def _of_workspace(model):
    """The rows of ``model`` (ScimUser or ScimGroup) of the SCIM token's workspace, in a stable order."""
    return model.select().where(model.workspace == g.scim_token.workspace_id).order_by(model.id)


@bp.get("/Users")
def list_users():
    rows = _of_workspace(ScimUser)
    raw = request.args.get("filter", "")
    # the filter every identity provider sends first, answered from the index
    if raw.startswith('userName eq "') and raw.endswith('"') and raw.count('"') == 2:
        rows = rows.where(ScimUser.user_name == raw[len('userName eq "') : -1].lower())
    return _list(User, rows, _user_resource)


@bp.post("/Users/.search")
def search_users():
    search = _search(User)
    rows = _of_workspace(ScimUser)
    return _list(User, rows, _user_resource, search)


@bp.post("/Users")
def create_user():
    resource = _validate(User, _body(), Context.RESOURCE_CREATION_REQUEST)
    row = _core_errors(scim.provision, g.scim_token.workspace, _stored(resource), g.scim_actor)
    created = _user_resource(row)
    assert created.meta is not None  # _user_resource sets it
    return _answer(_dump(created, Context.RESOURCE_CREATION_RESPONSE), 201, {"Location": created.meta.location})


@bp.get("/Users/<scim_id>")
def get_user(scim_id):
    return _answer(
        _user_resource(_user_row(scim_id)).model_dump(
            scim_ctx=Context.RESOURCE_QUERY_RESPONSE, response_parameters=_parameters(User)
        )
    )


@bp.put("/Users/<scim_id>")
def replace_user(scim_id):
    row = _user_row(scim_id)
    resource = _validate(User, _body(), Context.RESOURCE_REPLACEMENT_REQUEST)
    row = _core_errors(scim.replace, row, _stored(resource), g.scim_actor)
    return _answer(_dump(_user_resource(row), Context.RESOURCE_REPLACEMENT_RESPONSE))


@bp.patch("/Users/<scim_id>")
def patch_user(scim_id):
    row = _user_row(scim_id)
    patch = _validate(PatchOp[User], _body(), Context.RESOURCE_PATCH_REQUEST)
    resource = _user_resource(row)
    try:
        patch.patch(resource)
    except SCIMException as exc:
        raise Refused(exc.status, exc.detail, exc.scim_type) from None
    except (ValueError, TypeError) as exc:
        raise Refused(400, f"This patch cannot be applied: {exc}", "invalidValue") from None
    row = _core_errors(scim.replace, row, _stored(resource), g.scim_actor)
    return _answer(_dump(_user_resource(row), Context.RESOURCE_PATCH_RESPONSE))


@bp.delete("/Users/<scim_id>")
def delete_user(scim_id):
    scim.delete(_user_row(scim_id), g.scim_actor)
    return Response(status=204)


# -- groups -----------------------------------------------------------------------------------
def _group_resource(row: ScimGroup) -> Group:
    document = json.loads(row.document or "{}")
    document.pop("meta", None)
    members = []
    for m in document.get("members") or []:
        if isinstance(m, dict) and m.get("value"):
            members.append({**m, "$ref": f"{_base()}/Users/{m['value']}", "type": m.get("type") or "User"})
    document.update(
        {
            "id": str(row.id),
            "members": members or None,
            "schemas": [Group.__schema__],
            "meta": {
                "resourceType": "Group",
                "created": _stamp(row.created_at),
                "lastModified": _stamp(row.updated_at),
                "location": f"{_base()}/Groups/{row.id}",
                "version": f'W/"{int(row.updated_at.timestamp() * 1000)}"',
            },
        }
    )
    return Group.model_validate({k: v for k, v in document.items() if v is not None})


def _group_row(scim_id: str) -> ScimGroup:
    row = (
        ScimGroup.get_or_none((ScimGroup.id == int(scim_id)) & (ScimGroup.workspace == g.scim_token.workspace_id))
        if scim_id.isdigit() and len(scim_id) < 10
        else None
    )
    if row is None:
        raise Refused(404, f"No group {scim_id} in this workspace.")
    return row


def _group_document(resource) -> dict:
    data = _stored(resource)
    data["members"] = [
        {"value": str(m.get("value")), **({"display": m["display"]} if m.get("display") else {})}
        for m in data.get("members") or []
        if isinstance(m, dict) and m.get("value")
    ]
    return data


@bp.get("/Groups")
def list_groups():
    rows = _of_workspace(ScimGroup)
    return _list(Group, rows, _group_resource)


@bp.post("/Groups/.search")
def search_groups():
    search = _search(Group)
    rows = _of_workspace(ScimGroup)
    return _list(Group, rows, _group_resource, search)


@bp.post("/Groups")
def create_group():
    resource = _validate(Group, _body(), Context.RESOURCE_CREATION_REQUEST)
    row = _core_errors(scim.save_group, g.scim_token.workspace, _group_document(resource), g.scim_actor)
    created = _group_resource(row)
    assert created.meta is not None  # _group_resource sets it
    return _answer(_dump(created, Context.RESOURCE_CREATION_RESPONSE), 201, {"Location": created.meta.location})


@bp.get("/Groups/<scim_id>")
def get_group(scim_id):
    return _answer(
        _group_resource(_group_row(scim_id)).model_dump(
            scim_ctx=Context.RESOURCE_QUERY_RESPONSE, response_parameters=_parameters(Group)
        )
    )


@bp.put("/Groups/<scim_id>")
def replace_group(scim_id):
    row = _group_row(scim_id)
    resource = _validate(Group, _body(), Context.RESOURCE_REPLACEMENT_REQUEST)
    row = _core_errors(scim.save_group, g.scim_token.workspace, _group_document(resource), g.scim_actor, row)
    return _answer(_dump(_group_resource(row), Context.RESOURCE_REPLACEMENT_RESPONSE))


@bp.patch("/Groups/<scim_id>")
def patch_group(scim_id):
    row = _group_row(scim_id)
    patch = _validate(PatchOp[Group], _body(), Context.RESOURCE_PATCH_REQUEST)
    resource = _group_resource(row)
    try:
        patch.patch(resource)
    except SCIMException as exc:
        raise Refused(exc.status, exc.detail, exc.scim_type) from None
    except (ValueError, TypeError) as exc:
        raise Refused(400, f"This patch cannot be applied: {exc}", "invalidValue") from None
    row = _core_errors(scim.save_group, g.scim_token.workspace, _group_document(resource), g.scim_actor, row)
    return _answer(_dump(_group_resource(row), Context.RESOURCE_PATCH_RESPONSE))


@bp.delete("/Groups/<scim_id>")
def delete_group(scim_id):
    scim.delete_group(_group_row(scim_id), g.scim_actor)
    return Response(status=204)


@bp.post("/.search")
def search_all():
    """A search across every resource type at once is not offered: search /Users or /Groups."""
    raise Refused(
        501, "Searching several resource types at once is not supported: POST /Users/.search or /Groups/.search."
    )


# -- discovery --------------------------------------------------------------------------------
@bp.get("/ServiceProviderConfig")
def service_provider_config():
    config = ServiceProviderConfig(
        documentation_uri=None,
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=False),
        etag=ETag(supported=False),
        authentication_schemes=[
            AuthenticationScheme(
                type="oauthbearertoken",
                name="Bearer token",
                description="A SCIM token a workspace admin created",
                primary=True,
            )
        ],
        meta={"resourceType": "ServiceProviderConfig", "location": f"{_base()}/ServiceProviderConfig"},
    )
    return _answer(config.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))


def _resource_types() -> list[ResourceType]:
    found = []
    for model, endpoint in ((User, "/Users"), (Group, "/Groups")):
        rt = ResourceType.from_resource(model)
        rt.endpoint = Reference[URI](endpoint)
        rt.meta = Meta(resource_type="ResourceType", location=f"{_base()}/ResourceTypes/{rt.id}")
        found.append(rt)
    return found


def _schemas():
    found = []
    for model in (User, Group):
        schema = model.to_schema()
        schema.meta = Meta(resource_type="Schema", location=f"{_base()}/Schemas/{schema.id}")
        found.append(schema)
    return found


def _listed(items, model):
    body = ListResponse[model](  # type: ignore[valid-type]  # generic, parametrised at run time
        total_results=len(items), start_index=1, items_per_page=len(items), resources=items
    )
    return _answer(body.model_dump(scim_ctx=Context.SEARCH_RESPONSE))


@bp.get("/ResourceTypes")
def resource_types():
    return _listed(_resource_types(), ResourceType)


@bp.get("/ResourceTypes/<name>")
def resource_type(name):
    for rt in _resource_types():
        if rt.id == name:
            return _answer(rt.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))
    raise Refused(404, f"No resource type {name[:100]}.")


@bp.get("/Schemas")
def schemas():
    from scim2_models import Schema

    return _listed(_schemas(), Schema)


@bp.get("/Schemas/<path:name>")
def schema(name):
    for s in _schemas():
        if s.id == name:
            return _answer(s.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))
    raise Refused(404, f"No schema {name[:200]}.")


@bp.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def unknown(rest):
    if rest.split("/")[0] in KNOWN:
        raise Refused(405, f"{request.method} is not supported on /scim/v2/{rest[:100]}.")
    raise Refused(404, f"No SCIM endpoint /scim/v2/{rest[:100]}.")


KNOWN = {"Users", "Groups", "ServiceProviderConfig", "ResourceTypes", "Schemas"}
