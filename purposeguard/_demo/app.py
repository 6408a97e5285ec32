"""The mail service's HTTP API: a Starlette app behind purposeguard's ASGI middleware.

Every route declares its purpose (``@route_purpose``); the middleware opens
a zone per request for the tenant named in the path (``/t/{tenant}/...``),
keeps the route's purpose current, and answers a
:class:`~purposeguard.PurposeViolation` with a 403 naming rule, purpose and
category. Calls to outside parties go through httpx, which purposeguard
checks against the policy's destinations.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import purposeguard as pg
from purposeguard.audit import AuditLog
from purposeguard.consent import ConsentStore
from purposeguard.disclosure import DisclosureNotice

from . import features
from ._integrations import PurposeGuardMiddleware, route_purpose
from .outside import AD_NETWORK, NEWSLETTER, LoopbackTransport
from .store import CUSTOMER, DOCUMENT, EMAIL, Store

Endpoint = Callable[[Request], Awaitable[Response]]


class BadRequest(Exception):
    """A request the service cannot act on (400), or a missing resource (404)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def tenant_from_path(scope: Mapping[str, Any]) -> str | None:
    """``/t/contoso/...`` belongs to tenant ``contoso``."""
    parts = str(scope.get("path", "")).split("/")
    if len(parts) > 2 and parts[1] == "t" and parts[2]:
        return parts[2]
    return None


class MailService:
    """The service's state: its store, consents, audit log and the outside parties it may call.

    ``outside`` maps outside host names to local ``(host, port)`` addresses
    (see :class:`~.outside.LoopbackTransport`); an unmapped outside host is
    unreachable. ``audit`` is where compelled disclosures are recorded when no
    audit sink is attached (``pg.configure(audit=...)``).
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        consents: ConsentStore | None = None,
        audit: AuditLog | str | Path | None = None,
        outside: Mapping[str, tuple[str, int]] | None = None,
    ) -> None:
        self.store = store if store is not None else Store()
        self.consents = consents
        self.audit = audit
        self.outside = dict(outside or {})

    # -- set-up -------------------------------------------------------------------

    @route_purpose("service.operations")
    async def add_user(self, request: Request) -> Response:
        tenant, data = await _tenant_and_json(request)
        address = _text(data, "address")
        self.store.add_user(tenant, address, _text(data, "name"), _int(data, "quota", 50 * features.GIB))
        return JSONResponse({"tenant": tenant, "user": address}, status_code=201)

    @route_purpose("service.operations")
    async def add_administrator(self, request: Request) -> Response:
        tenant, data = await _tenant_and_json(request)
        self.store.add_administrator(tenant, _text(data, "address"))
        return JSONResponse({"tenant": tenant}, status_code=201)

    # -- mail and documents --------------------------------------------------------

    @route_purpose("service.operations")
    async def deliver(self, request: Request) -> Response:
        """Deliver a mail: the spam filter reads it (security), then the mailbox's
        storage figure is updated through the ``end-user-usage`` transform."""
        tenant, data = await _tenant_and_json(request)
        mailbox = self._mailbox(request, tenant)
        sender = pg.label(_text(data, "sender"), CUSTOMER, tenant=tenant)
        subject = pg.label(_text(data, "subject"), EMAIL, tenant=tenant)
        body = pg.label(_text(data, "body"), EMAIL, tenant=tenant)
        score = features.spam_score(subject, body)
        spam = score >= 0.5
        message_id = self.store.add_message(tenant, mailbox, sender, subject, body, spam)
        used = features.storage_used([m.body for m in self.store.messages(tenant, mailbox)])
        self.store.set_storage_used(tenant, mailbox, int(used))
        return JSONResponse({"id": message_id, "spam": spam, "spam_score": score}, status_code=201)

    @route_purpose("service.operations")
    async def put_document(self, request: Request) -> Response:
        tenant, data = await _tenant_and_json(request)
        name = request.path_params["name"]
        owner = _text(data, "owner")
        if self.store.user(tenant, owner) is None:
            raise BadRequest(f"no user {owner!r} in tenant {tenant!r}", 404)
        body = pg.label(_text(data, "body"), DOCUMENT, tenant=tenant)
        self.store.put_document(tenant, name, owner, body)
        return JSONResponse({"document": name}, status_code=201)

    # -- operations -------------------------------------------------------------------

    @route_purpose("service.operations")
    async def diagnostics(self, request: Request) -> Response:
        """Troubleshooting a mailbox."""
        tenant = _tenant(request)
        mailbox = self._mailbox(request, tenant)
        return JSONResponse(features.diagnose(mailbox, self.store.messages(tenant, mailbox)))

    @route_purpose("service.operations")
    async def usage_statistics(self, request: Request) -> Response:
        """Tenant-wide usage data points, through the ``usage-aggregate`` transform."""
        tenant = _tenant(request)
        stats = features.usage_statistics(
            [m.body for m in self.store.messages(tenant)],
            [d.body for d in self.store.documents(tenant)],
            len(self.store.users(tenant)),
        )
        return JSONResponse({"tenant": tenant, "categories": sorted(pg.labels_of(stats)), **dict(stats)})

    # -- communications ---------------------------------------------------------------

    @route_purpose("service.communications")
    async def storage_notices(self, request: Request) -> Response:
        """Tell the tenant's administrators which users are close to their storage limit.

        ``?quote=latest`` quotes each user's latest mail in the notice: content in
        a service communication, which the promise forbids.
        """
        tenant = _tenant(request)
        try:
            threshold = float(request.query_params.get("threshold", "80"))
        except ValueError:
            raise BadRequest("threshold must be a percentage") from None
        quote = request.query_params.get("quote") == "latest"
        administrators = self.store.administrators(tenant)
        used_by = self.store.storage_used(tenant)
        sent = 0
        for user in self.store.users(tenant):
            used = used_by.get(user.address)
            if used is None or 100 * int(used) / user.quota < threshold:
                continue
            messages = self.store.messages(tenant, user.address) if quote else []
            if messages:
                notice = features.storage_notice_quoting(user, used, messages[-1])
            else:
                notice = features.storage_notice(user, used)
            text = features.to_administrators(notice)
            for administrator in administrators:
                self.store.send(tenant, administrator, "storage-notice", text)
                sent += 1
        return JSONResponse({"tenant": tenant, "sent": sent})

    @route_purpose("service.operations")
    async def outbox(self, request: Request) -> Response:
        return JSONResponse({"outbox": self.store.outbox(_tenant(request))})

    # -- what the promise forbids ------------------------------------------------------------

    @route_purpose("service.personalization")
    async def recommendations(self, request: Request) -> Response:
        """ "Recommendations" that are ads: the latest mail goes to the ad network.

        The route claims personalization, which may read content; the call to
        the ad network's host is advertising, whatever the route claims.
        """
        tenant = _tenant(request)
        mailbox = self._mailbox(request, tenant)
        texts = [m.body for m in self.store.messages(tenant, mailbox)[-3:]]
        answer = await self._post(AD_NETWORK, "/v1/recommend", {"texts": texts})
        return JSONResponse({"mailbox": mailbox, "ads": answer.get("ads", [])})

    @route_purpose("marketing.direct")
    async def newsletter(self, request: Request) -> Response:
        """Send the tenant's end users a newsletter through the newsletter service."""
        tenant, data = await _tenant_and_json(request)
        recipients = features.newsletter_recipients([u.address for u in self.store.users(tenant)])
        await self._post(NEWSLETTER, "/v1/send", {"subject": _text(data, "subject"), "to": recipients})
        return JSONResponse({"tenant": tenant, "recipients": len(recipients)})

    @route_purpose("improvement")
    async def product_analytics(self, request: Request) -> Response:
        """The product-analytics job over the tenant's mail: only with the tenant's consent."""
        tenant = _tenant(request)
        result = features.product_analytics([m.body for m in self.store.messages(tenant)])
        return JSONResponse({"tenant": tenant, **result})

    # -- consent ---------------------------------------------------------------------------

    @route_purpose("service.operations")
    async def grant_consent(self, request: Request) -> Response:
        tenant, data = await _tenant_and_json(request)
        store = self._consents()
        categories = data.get("categories", [CUSTOMER])
        change = store.grant(tenant, _text(data, "purpose"), categories, granted_by=_text(data, "granted_by"))
        return JSONResponse(
            {
                "tenant": tenant,
                "purpose": change.purpose,
                "categories": list(change.categories),
                "rules": list(change.rules),
            },
            status_code=201,
        )

    @route_purpose("service.operations")
    async def revoke_consent(self, request: Request) -> Response:
        tenant, data = await _tenant_and_json(request)
        change = self._consents().revoke(tenant, _text(data, "purpose"), revoked_by=_text(data, "revoked_by"))
        return JSONResponse({"tenant": tenant, "purpose": change.purpose, "revoked": True})

    # -- law enforcement ----------------------------------------------------------------------

    @route_purpose("disclosure.voluntary")
    async def voluntary_disclosure(self, request: Request) -> Response:
        """A request without a legal obligation behind it: the promise says never."""
        tenant, data = await _tenant_and_json(request)
        record = self._mailbox_record(tenant, _text(data, "mailbox"))
        fields = _fields(data, record)
        handed = features.hand_over({name: record[name] for name in fields})
        return JSONResponse({"tenant": tenant, "released": handed})

    @route_purpose("disclosure.compelled")
    async def compelled_disclosure(self, request: Request) -> Response:
        """A demand the law compels: redirect first, release only the named
        fields, notify the tenant's administrators before anything goes out."""
        tenant, data = await _tenant_and_json(request)
        record = self._mailbox_record(tenant, _text(data, "mailbox"))
        fields = _fields(data, record)
        redirected = data.get("redirect_attempted", False)
        with pg.compelled_disclosure(
            case=_text(data, "case"),
            tenant=tenant,
            authority=_text(data, "authority"),
            redirect_attempted=redirected if isinstance(redirected, bool) else False,
            notifier=lambda notice: self._notify(tenant, notice),
            audit=self.audit,
        ) as disclosure:
            released = disclosure.release(record, fields=fields)
        done = disclosure.releases[-1]
        return JSONResponse(
            {
                "tenant": tenant,
                "case": done.case,
                "released": dict(released),
                "categories": list(done.categories),
                "notified": done.notified,
                "obligations": list(done.obligations),
            }
        )

    def _notify(self, tenant: str, notice: DisclosureNotice) -> None:
        administrators = self.store.administrators(tenant)
        if not administrators:
            raise LookupError("the tenant has no administrator to notify")
        text = (
            f"Case {notice.case}: {notice.authority} compels the disclosure of "
            f"{', '.join(notice.fields)} ({', '.join(notice.categories) or 'no labelled data'})."
        )
        for administrator in administrators:
            self.store.send(tenant, administrator, "disclosure-notice", text)

    # -- helpers ----------------------------------------------------------------------------

    def _mailbox(self, request: Request, tenant: str) -> str:
        mailbox = str(request.path_params["mailbox"])
        if self.store.user(tenant, mailbox) is None:
            raise BadRequest(f"no mailbox {mailbox!r} in tenant {tenant!r}", 404)
        return mailbox

    def _mailbox_record(self, tenant: str, mailbox: str) -> dict[str, Any]:
        owner = self.store.user(tenant, mailbox)
        if owner is None:
            raise BadRequest(f"no mailbox {mailbox!r} in tenant {tenant!r}", 404)
        return features.mailbox_record(
            owner, self.store.messages(tenant, mailbox), self.store.documents(tenant)
        )

    def _consents(self) -> ConsentStore:
        if self.consents is None:
            raise BadRequest("this service keeps no consents (start it with a ConsentStore)", 501)
        return self.consents

    async def _post(self, host: str, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        transport = LoopbackTransport(self.outside)
        async with httpx.AsyncClient(transport=transport, timeout=5.0) as client:
            try:
                response = await client.post(f"https://{host}{path}", json=payload)
            except httpx.TransportError as error:
                raise BadRequest(f"{host} is unreachable: {error}", 502) from None
        answer = response.json()
        return answer if isinstance(answer, dict) else {}


def _tenant(request: Request) -> str:
    return str(request.path_params["tenant"])


async def _tenant_and_json(request: Request) -> tuple[str, dict[str, Any]]:
    try:
        data = await request.json()
    except ValueError:
        raise BadRequest("the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return _tenant(request), data


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{name!r} must be a non-empty string")
    return value


def _int(data: Mapping[str, Any], name: str, default: int) -> int:
    value = data.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise BadRequest(f"{name!r} must be a positive integer")
    return value


def _fields(data: Mapping[str, Any], record: Mapping[str, Any]) -> list[str]:
    fields = data.get("fields")
    if not isinstance(fields, list) or not fields or not all(isinstance(f, str) for f in fields):
        raise BadRequest("'fields' must be a non-empty list of field names")
    unknown = [f for f in fields if f not in record]
    if unknown:
        raise BadRequest(f"unknown fields: {', '.join(unknown)} (known: {', '.join(record)})")
    return fields


def _handled(endpoint: Endpoint) -> Endpoint:
    """Answer the service's own errors; a PurposeViolation passes on to the middleware (403)."""

    async def handle(request: Request) -> Response:
        try:
            return await endpoint(request)
        except BadRequest as error:
            return JSONResponse({"error": str(error)}, status_code=error.status)
        except pg.ObligationError as error:
            body: dict[str, Any] = {
                "error": "obligation",
                "obligation": error.obligation,
                "rule": error.rule,
                "message": str(error),
            }
            if error.obligation == "redirect_first":
                body["redirect_to"] = f"the administrators of tenant {_tenant(request)}"
            return JSONResponse(body, status_code=409)
        except pg.PolicyError as error:
            return JSONResponse({"error": "policy", "message": str(error)}, status_code=400)

    # The middleware reads the route's purpose from the endpoint it finds.
    setattr(handle, "__purposeguard_purpose__", getattr(endpoint, "__purposeguard_purpose__", None))  # noqa: B010
    handle.__name__ = getattr(endpoint, "__name__", "handle")
    return handle


def create_app(service: MailService | None = None) -> Starlette:
    """The ASGI app of ``service`` (a fresh in-memory one by default)."""
    service = service if service is not None else MailService()
    t = "/t/{tenant}"
    routes = [
        Route("/healthz", _health, methods=["GET"]),
        Route(f"{t}/users", _handled(service.add_user), methods=["POST"]),
        Route(f"{t}/administrators", _handled(service.add_administrator), methods=["POST"]),
        Route(f"{t}/mailboxes/{{mailbox}}/messages", _handled(service.deliver), methods=["POST"]),
        Route(f"{t}/mailboxes/{{mailbox}}/diagnostics", _handled(service.diagnostics), methods=["GET"]),
        Route(
            f"{t}/mailboxes/{{mailbox}}/recommendations", _handled(service.recommendations), methods=["GET"]
        ),
        Route(f"{t}/documents/{{name}}", _handled(service.put_document), methods=["PUT"]),
        Route(f"{t}/usage-statistics", _handled(service.usage_statistics), methods=["GET"]),
        Route(f"{t}/admin/storage-notices", _handled(service.storage_notices), methods=["POST"]),
        Route(f"{t}/admin/outbox", _handled(service.outbox), methods=["GET"]),
        Route(f"{t}/admin/consents", _handled(service.grant_consent), methods=["POST"]),
        Route(f"{t}/admin/consents/revoke", _handled(service.revoke_consent), methods=["POST"]),
        Route(f"{t}/newsletter", _handled(service.newsletter), methods=["POST"]),
        Route(f"{t}/jobs/product-analytics", _handled(service.product_analytics), methods=["POST"]),
        Route(f"{t}/law-enforcement/voluntary", _handled(service.voluntary_disclosure), methods=["POST"]),
        Route(f"{t}/law-enforcement/compelled", _handled(service.compelled_disclosure), methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(PurposeGuardMiddleware, tenant_from=tenant_from_path)
    app.state.service = service
    return app


@route_purpose("service.operations")
async def _health(request: Request) -> Response:
    return JSONResponse({"ok": True})
