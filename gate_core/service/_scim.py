"""SCIM 2.0 service provider (RFC 7643 / RFC 7644) at ``/scim/v2``: the IdP (Okta, Entra ID)
provisions people and groups into the directory's change log (``identity/_provisioned.py``).

    /scim/v2/ServiceProviderConfig, /ResourceTypes, /Schemas   discovery (authenticated too)
    /scim/v2/Users, /Users/{id}       GET (filter, startIndex, count), POST, PUT, PATCH, DELETE
    /scim/v2/Groups, /Groups/{id}     the same

Schemas, parsing, PATCH, filters and errors are scim2-models' (the python-scim project's typed
RFC 7643/7644 models: it applies PATCH operations and evaluates filters itself, and reads
Entra ID's capitalised ``Replace``/``Add`` ops); this module adds what is Gatehouse's own:

- Authentication: only a token of scope ``scim`` (created by a member of ``gatehouse-admins`` for
  themselves), whose owner is still a member; such a token is refused everywhere else.
- One person is one principal: a user whose userName or any e-mail shares a canonical identity
  with another user or a directory-file principal is refused (409 ``uniqueness``), so a SCIM
  look-alike of ``bob`` never becomes a second bob.
- Limits: the request body (service-wide), users, groups, members per group, e-mails per user,
  PATCH operations per request, ``count`` per page.
- Every accepted change is one version of the log and one ``directory.changed`` audit event, in
  one transaction: what changed (before/after of the attributes that grant rights), the
  resource's principal-relevant content after it, and the hash of the whole directory after it.
- A user deactivated (``active: false``) or deleted is no principal from the next request on;
  their tokens are revoked in the same transaction.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from pydantic import ValidationError
from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
    EnterpriseUser,
    Error,
    ETag,
    Filter,
    Group,
    InvalidValueException,
    Meta,
    NotFoundException,
    Patch,
    PatchOp,
    PayloadTooLargeException,
    ResourceType,
    ResponseParameters,
    SCIMException,
    ScimFilter,
    ScimPolicy,
    SearchRequest,
    ServiceProviderConfig,
    Sort,
    UniquenessException,
    User,
)
from starlette.concurrency import run_in_threadpool

from gate_core._audit import AuditDraft, Event
from gate_core._errors import AuthenticationFailed, GatehouseError
from gate_core._models import Actor, AuthMethod
from gate_core._store._directory import DirectoryPlan, SqlDirectoryChanges
from gate_core._store._sql import SqlStore
from gate_core._token_service import ADMIN_GROUP
from gate_core._tokens import PREFIX, Scope
from gate_core.identity import canonical_identity
from gate_core.identity._provisioned import (
    PRINCIPAL_ID_CHARS,
    CombinedSource,
    DirectoryChange,
    ProvisionedDirectory,
    ResourceKind,
    identity_keys_of_user,
    is_active,
)
from gate_core.service._state import ServiceState

SCIM_MEDIA = "application/scim+json"
UserModel = User[EnterpriseUser]
MAX_PAGE = 200
DISCOVERY = frozenset({"ServiceProviderConfig", "ResourceTypes", "Schemas"})
MAX_EMAILS = 20
MAX_PATCH_OPERATIONS = 200
# Okta and Entra ID send attributes of their own (custom schemas): kept out rather than refused;
# and Entra's filtered PATCH paths on a value it has not set yet create it.
POLICY = ScimPolicy(
    unknown=ScimPolicy.Unknown.ignore,
    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create,
    # Entra removes members with {"op": "Remove", "path": "members", "value": [{"value": id}]}
    remove_value_as_filter=ScimPolicy.RemoveValue.apply,
)


def _scim_response(body: Mapping[str, Any] | None, status: int = 200, **headers: str) -> Response:
    if body is None:
        return Response(status_code=status, headers=headers)
    return Response(json.dumps(body), status_code=status, media_type=SCIM_MEDIA, headers=headers)


def _error(status: int, detail: str, scim_type: str | None = None) -> Response:
    error = Error(status=status, scim_type=scim_type, detail=detail)
    return _scim_response(error.model_dump(), status)


def _from_exception(exc: Exception) -> Response:
    if isinstance(exc, SCIMException):
        error = exc.to_error()
        return _scim_response(error.model_dump(), int(error.status or 400))
    if isinstance(exc, ValidationError):
        [first, *_] = Error.from_validation_errors(exc)
        return _scim_response(first.model_dump(), int(first.status or 400))
    raise exc


class ScimProvisioning:
    """The write side: every change computed from the newest version, under the log's lock."""

    def __init__(self, state: ServiceState, source: CombinedSource, store: SqlStore) -> None:
        self.state = state
        self.source = source
        self.log = SqlDirectoryChanges(store)
        self.store = store
        self.config = source.config

    # -- reading ------------------------------------------------------------------------------
    def snapshot(self) -> ProvisionedDirectory:
        return self.source.snapshot()

    def location(self, base: str, kind: str, resource_id: str) -> str:
        return f"{base}/{'Users' if kind == 'User' else 'Groups'}/{resource_id}"

    # -- writing ------------------------------------------------------------------------------
    def write(
        self,
        actor: Actor,
        kind: ResourceKind,
        resource_id: str,
        build: Callable[[ProvisionedDirectory], dict[str, Any] | None],
        operation: str,
    ) -> Mapping[str, Any] | None:
        """Compute the resource's new state with ``build`` (None: delete) from the newest version,
        check it, and commit it with its audit events. A user who leaves (deactivated or deleted)
        also leaves every group, and their tokens are revoked, in the same transaction. Returns
        the stored resource."""
        result: dict[str, Any] = {}

        def plan(current: ProvisionedDirectory) -> DirectoryPlan:
            table = current.users if kind == "User" else current.groups
            before = table.get(resource_id)
            after = build(current)
            result["after"] = after
            if after is not None:
                self._check(current, kind, resource_id, after)
            now = self.state.gatekeeper.clock.now()
            planned = DirectoryPlan(actor=actor)
            following = current.copy()

            def add(what: ResourceKind, rid: str, resource: Mapping[str, Any] | None, operation: str) -> None:
                old = (following.users if what == "User" else following.groups).get(rid)
                change = DirectoryChange(following.version + 1, now, what, rid, resource, actor.principal_id)
                previous = following.copy()
                following.apply([change])
                planned.changes.append(change)
                planned.events.append(
                    AuditDraft(
                        Event.DIRECTORY_CHANGED,
                        now,
                        actor,
                        None,
                        {
                            "version": change.version,
                            "operation": operation,
                            "resource": what,
                            "id": rid,
                            "changed": _changed(what, old, resource, previous),
                            "after": _projection(what, resource, following),
                            "directory_hash": following.content_hash(self.config),
                        },
                    )
                )

            if kind == "User" and after is None:  # a deleted user is no member of anything
                for gid, group in sorted(current.groups.items()):
                    members = [m for m in group.get("members") or () if m.get("value") != resource_id]
                    if len(members) != len(group.get("members") or ()):
                        add("Group", gid, {**group, "members": members}, "member-deleted")
            add(kind, resource_id, after, operation)
            if (
                kind == "User"
                and before is not None
                and is_active(before)
                and (after is None or not is_active(after))
            ):
                planned.revoke_tokens_of.append(str(before.get("userName")))
            return planned

        self.log.commit(self.snapshot(), plan)
        self.state.gatekeeper.audit.maybe_checkpoint()
        return result["after"]  # type: ignore[no-any-return]

    def _check(
        self, current: ProvisionedDirectory, kind: str, resource_id: str, after: Mapping[str, Any]
    ) -> None:
        if kind == "User":
            self._check_user(current, resource_id, after)
        else:
            self._check_group(current, resource_id, after)

    def _check_user(self, current: ProvisionedDirectory, resource_id: str, user: Mapping[str, Any]) -> None:
        name = str(user.get("userName") or "")
        if len(user.get("emails") or ()) > MAX_EMAILS:
            raise InvalidValueException(detail=f"at most {MAX_EMAILS} e-mails per user")
        if resource_id not in current.users and len(current.users) >= self.config.max_users:
            raise PayloadTooLargeException(
                detail=f"the directory holds at most {self.config.max_users} users"
            )
        keys = identity_keys_of_user(user)
        for other_id, other in current.users.items():
            if other_id != resource_id and keys & identity_keys_of_user(other):
                raise UniquenessException(
                    detail=f"{name} is the same person as user {other.get('userName')} (userName or e-mail, "
                    "compared in canonical form): one person is one principal"
                )
        owner = self.source.file_claims(keys)
        if owner is not None:
            raise UniquenessException(
                detail=f"{name} is the same person as {owner} of the directory file: one person is one "
                "principal (remove them from the file to provision them from the IdP)"
            )
        # after the identity checks, so a look-alike is answered as the person it imitates
        if not name or len(name) > 200 or not set(name) <= PRINCIPAL_ID_CHARS:
            raise InvalidValueException(
                detail="userName becomes a Gatehouse principal id: 1 to 200 of A-Z a-z 0-9 . _ @ + -"
            )

    def _check_group(self, current: ProvisionedDirectory, resource_id: str, group: Mapping[str, Any]) -> None:
        name = str(group.get("displayName") or "")
        if not name or len(name) > 200:
            raise InvalidValueException(detail="displayName is 1 to 200 characters")
        if resource_id not in current.groups and len(current.groups) >= self.config.max_groups:
            raise PayloadTooLargeException(
                detail=f"the directory holds at most {self.config.max_groups} groups"
            )
        members = group.get("members") or []
        if len(members) > self.config.max_members:
            raise PayloadTooLargeException(detail=f"a group holds at most {self.config.max_members} members")
        for member in members:
            if member.get("value") not in current.users:
                raise InvalidValueException(
                    detail=f"member {str(member.get('value'))[:64]!r} is no user here"
                )
        folded = canonical_identity(name)
        for other_id, other in current.groups.items():
            if other_id != resource_id and canonical_identity(str(other.get("displayName", ""))) == folded:
                raise UniquenessException(detail=f"a group named {other.get('displayName')!r} exists")


def _projection(
    kind: str, resource: Mapping[str, Any] | None, state: ProvisionedDirectory
) -> dict[str, Any] | None:
    """What of a resource grants rights, as the audit records it."""
    if resource is None:
        return None
    if kind == "User":
        return {
            "userName": resource.get("userName"),
            "externalId": resource.get("externalId"),
            "active": is_active(resource),
            "emails": [e.get("value") for e in resource.get("emails") or () if e.get("value")],
            "displayName": resource.get("displayName"),
        }
    names = {uid: u.get("userName") for uid, u in state.users.items()}
    return {
        "displayName": resource.get("displayName"),
        "externalId": resource.get("externalId"),
        "members": sorted(
            str(names.get(m.get("value"), m.get("value"))) for m in resource.get("members") or ()
        ),
    }


def _changed(
    kind: str, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, state: ProvisionedDirectory
) -> dict[str, Any]:
    old = _projection(kind, before, state) or {}
    new = _projection(kind, after, state) or {}
    out: dict[str, Any] = {}
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            if key == "members":
                was, now = set(old.get(key) or ()), set(new.get(key) or ())
                out["members"] = {"added": sorted(now - was), "removed": sorted(was - now)}
            else:
                out[key] = {"from": old.get(key), "to": new.get(key)}
    return out


def _list_response(total: int, start: int, resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }


def service_provider_config(base: str) -> ServiceProviderConfig:
    """What this provider does — and, honestly, what it does not (bulk, sort, ETags, passwords)."""
    return ServiceProviderConfig(
        documentation_uri="https://github.com/gatehouse/gatehouse#scim-provisioning",
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_PAGE),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=False),
        etag=ETag(supported=False),
        authentication_schemes=[
            AuthenticationScheme(
                type="oauthbearertoken",
                name="Gatehouse SCIM token",
                description="A token of scope 'scim', created by a member of gatehouse-admins",
                primary=True,
            )
        ],
        meta=Meta(resource_type="ServiceProviderConfig", location=f"{base}/ServiceProviderConfig"),
    )


def install(app: FastAPI, state: ServiceState) -> None:
    """Mount ``/scim/v2`` when service.yaml has a ``scim:`` section and the directory is combined."""
    source = state.gatekeeper.directory
    store = state.gatekeeper.store
    if state.config.scim is None or not isinstance(source, CombinedSource) or not isinstance(store, SqlStore):
        return
    provisioning = ScimProvisioning(state, source, store)
    app.include_router(_router(provisioning))


def _router(provisioning: ScimProvisioning) -> APIRouter:
    router = APIRouter(prefix="/scim/v2", include_in_schema=False)
    gatekeeper = provisioning.state.gatekeeper
    models: dict[str, Any] = {"User": UserModel, "Group": Group}

    def base_of(request: Request) -> str:
        return str(request.base_url).rstrip("/") + "/scim/v2"

    def caller(request: Request) -> Actor:
        header = request.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential.startswith(PREFIX):
            raise AuthenticationFailed("a SCIM token is required: 'Authorization: Bearer gh_…'")
        principal, token = gatekeeper.tokens.authenticate(credential)
        if token.scope is not Scope.SCIM:
            raise PermissionError(
                f"token {token.id} has scope {token.scope.value!r}; /scim/v2 takes only 'scim'"
            )
        if ADMIN_GROUP not in principal.groups:
            raise PermissionError(f"token {token.id}'s owner {principal.id} is no longer in {ADMIN_GROUP}")
        return Actor(principal_id=principal.id, via=AuthMethod.API_TOKEN, email=principal.email)

    async def handle(
        request: Request, work: Callable[[Actor, Any], Response], *, body: bool = False
    ) -> Response:
        try:
            actor = await run_in_threadpool(caller, request)
        except AuthenticationFailed as exc:
            response = _error(401, str(exc))
            response.headers["WWW-Authenticate"] = 'Bearer realm="gatehouse-scim"'
            return response
        except PermissionError as exc:
            return _error(403, str(exc))
        payload: Any = None
        if body:
            try:
                payload = json.loads(await request.body())
            except ValueError:
                return _error(400, "the body is not JSON", "invalidSyntax")
            if not isinstance(payload, dict):
                return _error(400, "the body must be a JSON object", "invalidSyntax")
        try:
            with POLICY:
                return await run_in_threadpool(work, actor, payload)
        except (SCIMException, ValidationError) as exc:
            return _from_exception(exc)
        except GatehouseError as exc:
            return _error(503 if exc.code == "store_unavailable" else 400, str(exc))

    def dump(
        kind: str,
        stored: Mapping[str, Any],
        request: Request,
        ctx: Context,
        parameters: ResponseParameters[Any] | None = None,
    ) -> dict[str, Any]:
        """A stored resource as the response shows it: its location, the attributes asked for."""
        model = models[kind]
        if parameters is None:
            parameters = ResponseParameters[model].model_validate(  # type: ignore[valid-type]
                {
                    "attributes": request.query_params.get("attributes"),
                    "excludedAttributes": request.query_params.get("excludedAttributes"),
                }
            )
        resource = model.model_validate(dict(stored))
        resource.meta.location = provisioning.location(base_of(request), kind, str(stored["id"]))
        return dict(resource.model_dump(scim_ctx=ctx, response_parameters=parameters))

    # -- discovery ------------------------------------------------------------------------------
    @router.get("/ServiceProviderConfig")
    async def spc(request: Request) -> Response:
        return await handle(
            request, lambda _a, _p: _scim_response(service_provider_config(base_of(request)).model_dump())
        )

    def resource_types(request: Request) -> list[dict[str, Any]]:
        out = []
        for kind, model in models.items():
            rtype = ResourceType.from_resource(model)
            rtype.meta = Meta(
                resource_type="ResourceType", location=f"{base_of(request)}/ResourceTypes/{kind}"
            )
            out.append(rtype.model_dump())
        return out

    def schemas(request: Request) -> list[dict[str, Any]]:
        out = []
        for model in (User, EnterpriseUser, Group):
            schema = model.to_schema()
            schema.meta = Meta(resource_type="Schema", location=f"{base_of(request)}/Schemas/{schema.id}")
            out.append(schema.model_dump())
        return out

    def listing(items: list[dict[str, Any]]) -> dict[str, Any]:
        return _list_response(len(items), 1, items)

    @router.get("/ResourceTypes")
    async def list_resource_types(request: Request) -> Response:
        return await handle(request, lambda _a, _p: _scim_response(listing(resource_types(request))))

    @router.get("/ResourceTypes/{name}")
    async def get_resource_type(request: Request, name: str) -> Response:
        def work(_a: Actor, _p: Any) -> Response:
            found = [r for r in resource_types(request) if r["id"] == name]
            if not found:
                raise NotFoundException(detail=f"no resource type {name[:64]!r}")
            return _scim_response(found[0])

        return await handle(request, work)

    @router.get("/Schemas")
    async def list_schemas(request: Request) -> Response:
        return await handle(request, lambda _a, _p: _scim_response(listing(schemas(request))))

    @router.get("/Schemas/{schema_id}")
    async def get_schema(request: Request, schema_id: str) -> Response:
        def work(_a: Actor, _p: Any) -> Response:
            found = [s for s in schemas(request) if s["id"] == schema_id]
            if not found:
                raise NotFoundException(detail=f"no schema {schema_id[:100]!r}")
            return _scim_response(found[0])

        return await handle(request, work)

    # -- resources ------------------------------------------------------------------------------
    kinds: tuple[tuple[ResourceKind, str], ...] = (("User", "Users"), ("Group", "Groups"))
    searches = [
        _resource_routes(router, provisioning, kind, collection, models[kind], handle, dump, base_of)
        for kind, collection in kinds
    ]

    @router.post("/.search")
    async def search_all(request: Request) -> Response:
        """Every resource type's matches, Users first (RFC 7644 §3.4.3 at the root)."""

        def work(_a: Actor, payload: dict[str, Any]) -> Response:
            start = int(payload.get("startIndex") or 1)
            count = payload.get("count")
            everything: list[dict[str, Any]] = []
            for run in searches:
                everything += run(request, {**payload, "startIndex": 1, "count": MAX_PAGE})
            limit = MAX_PAGE if count is None else min(MAX_PAGE, max(0, int(count)))
            page = everything[max(1, start) - 1 : max(1, start) - 1 + limit]
            return _scim_response(_list_response(len(everything), max(1, start), page))

        return await handle(request, work, body=True)

    @router.api_route("/{unknown:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def not_here(request: Request, unknown: str) -> Response:
        def work(_a: Actor, _p: Any) -> Response:
            if unknown.split("/")[0] in DISCOVERY:
                return _error(405, f"{request.method} is not allowed on /{unknown[:100]}: it is read-only")
            raise NotFoundException(detail=f"no SCIM endpoint /{unknown[:100]}")

        return await handle(request, work)

    return router


def _resource_routes(
    router: APIRouter,
    provisioning: ScimProvisioning,
    kind: ResourceKind,
    collection: str,
    model: Any,
    handle: Callable[..., Awaitable[Response]],
    dump: Callable[..., dict[str, Any]],
    base_of: Callable[[Request], str],
) -> Callable[[Request, Mapping[str, Any]], list[dict[str, Any]]]:
    def table(state: ProvisionedDirectory) -> dict[str, Mapping[str, Any]]:
        return state.users if kind == "User" else state.groups

    def existing(state: ProvisionedDirectory, resource_id: str) -> Mapping[str, Any]:
        found = table(state).get(resource_id)
        if found is None:
            raise NotFoundException(detail=f"{kind} {resource_id[:64]!r} not found")
        return found

    def stored_form(resource: Any, resource_id: str, created: str, now: datetime) -> dict[str, Any]:
        resource.id = resource_id
        resource.meta = Meta(
            resource_type=kind, created=datetime.fromisoformat(created), last_modified=now, location=None
        )
        data = resource.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
        data.pop("password", None)  # never stored: passwords are not Gatehouse's (changePassword: false)
        return dict(data)

    def run_search(request: Request, query: Mapping[str, Any]) -> Response:
        total, start, shown = matching(request, query)
        return _scim_response(_list_response(total, start, shown))

    def all_matching(request: Request, query: Mapping[str, Any]) -> list[dict[str, Any]]:
        return matching(request, query)[2]

    def matching(request: Request, query: Mapping[str, Any]) -> tuple[int, int, list[dict[str, Any]]]:
        search = SearchRequest[model].model_validate(
            {k: v for k, v in query.items() if k != "schemas"}, scim_ctx=Context.SEARCH_REQUEST
        )
        start = max(1, search.start_index or 1)
        count = MAX_PAGE if search.count is None else min(MAX_PAGE, max(0, search.count))
        flt = ScimFilter[model](str(search.filter)) if search.filter else None
        state = provisioning.snapshot()
        ordered = sorted(table(state).values(), key=lambda r: (str(r["meta"]["created"]), str(r["id"])))
        matches = [s for s in ordered if flt is None or flt.match(model.model_validate(dict(s)))]
        page = matches[start - 1 : start - 1 + count]
        shown = [dump(kind, s, request, Context.RESOURCE_QUERY_RESPONSE, search) for s in page]
        return len(matches), start, shown

    @router.get(f"/{collection}")
    async def search(request: Request) -> Response:
        query: dict[str, Any] = dict(request.query_params)
        for number in ("startIndex", "count"):
            if number in query:
                try:
                    query[number] = int(query[number])
                except ValueError:
                    return _error(400, f"{number} is an integer", "invalidValue")
        return await handle(request, lambda _a, _p: run_search(request, query))

    @router.post(f"/{collection}/.search")
    async def post_search(request: Request) -> Response:
        return await handle(request, lambda _a, payload: run_search(request, payload), body=True)

    @router.get(f"/{collection}/{{resource_id}}")
    async def read(request: Request, resource_id: str) -> Response:
        def work(_a: Actor, _p: Any) -> Response:
            stored = existing(provisioning.snapshot(), resource_id)
            return _scim_response(dump(kind, stored, request, Context.RESOURCE_QUERY_RESPONSE))

        return await handle(request, work)

    @router.post(f"/{collection}")
    async def create(request: Request) -> Response:
        def work(actor: Actor, payload: dict[str, Any]) -> Response:
            resource = model.model_validate(payload, scim_ctx=Context.RESOURCE_CREATION_REQUEST)
            resource_id = secrets.token_hex(16)
            now = provisioning.state.gatekeeper.clock.now()
            stored = provisioning.write(
                actor,
                kind,
                resource_id,
                lambda _s: stored_form(resource, resource_id, now.isoformat(), now),
                "create",
            )
            assert stored is not None
            location = provisioning.location(base_of(request), kind, resource_id)
            return _scim_response(
                dump(kind, stored, request, Context.RESOURCE_CREATION_RESPONSE), 201, Location=location
            )

        return await handle(request, work, body=True)

    def rewrite(
        actor: Actor,
        request: Request,
        resource_id: str,
        change: Callable[[Any], Any],
        how: str,
        answer: Context,
    ) -> Response:
        """PUT and PATCH: the stored resource as the model, changed by ``change``, written back."""

        def build(state: ProvisionedDirectory) -> dict[str, Any]:
            current = existing(state, resource_id)
            resource = change(model.model_validate(dict(current)))
            now = provisioning.state.gatekeeper.clock.now()
            return stored_form(resource, resource_id, str(current["meta"]["created"]), now)

        stored = provisioning.write(actor, kind, resource_id, build, how)
        assert stored is not None
        return _scim_response(dump(kind, stored, request, answer))

    @router.put(f"/{collection}/{{resource_id}}")
    async def replace(request: Request, resource_id: str) -> Response:
        def work(actor: Actor, payload: dict[str, Any]) -> Response:
            replacement = model.model_validate(payload, scim_ctx=Context.RESOURCE_REPLACEMENT_REQUEST)

            def replaced(original: Any) -> Any:
                replacement.replace(original)
                return replacement

            return rewrite(
                actor, request, resource_id, replaced, "replace", Context.RESOURCE_REPLACEMENT_RESPONSE
            )

        return await handle(request, work, body=True)

    @router.patch(f"/{collection}/{{resource_id}}")
    async def patch(request: Request, resource_id: str) -> Response:
        def work(actor: Actor, payload: dict[str, Any]) -> Response:
            operations = payload.get("Operations") or payload.get("operations") or []
            if isinstance(operations, list) and len(operations) > MAX_PATCH_OPERATIONS:
                raise PayloadTooLargeException(detail=f"at most {MAX_PATCH_OPERATIONS} operations per PATCH")
            patch_op = PatchOp[model].model_validate(payload, scim_ctx=Context.RESOURCE_PATCH_REQUEST)

            def patched(resource: Any) -> Any:
                patch_op.patch(resource)
                return resource

            return rewrite(actor, request, resource_id, patched, "patch", Context.RESOURCE_PATCH_RESPONSE)

        return await handle(request, work, body=True)

    @router.delete(f"/{collection}/{{resource_id}}")
    async def delete(request: Request, resource_id: str) -> Response:
        def work(actor: Actor, _p: Any) -> Response:
            def build(state: ProvisionedDirectory) -> None:
                existing(state, resource_id)

            provisioning.write(actor, kind, resource_id, build, "delete")
            return _scim_response(None, 204)

        return await handle(request, work)

    return all_matching
