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
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import purposeguard as pg
from purposeguard.audit import AuditLog
from purposeguard.consent import ConsentStore
from purposeguard.disclosure import DisclosureNotice

from . import bodies, features
from ._integrations import PurposeGuardMiddleware, route_purpose
from .outside import AD_NETWORK, NEWSLETTER, LoopbackTransport
from .store import Store

Endpoint = Callable[[Request], Awaitable[Response]]
B = TypeVar("B", bound=BaseModel)


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
        self._own_store = store is None
        self.store = store if store is not None else Store()
        self.consents = consents
        self.audit = audit
        self.outside = dict(outside or {})

    def close(self) -> None:
        """Close the store if the service opened it (a store passed in is the caller's)."""
        if self._own_store:
            self.store.close()

    # -- set-up -------------------------------------------------------------------

    @route_purpose("service.operations")
    async def add_user(self, request: Request) -> Response:
        tenant, user = await _tenant_and_body(request, bodies.NewUser)
        self.store.add_user(tenant, user.address, user.name, user.quota)
        return JSONResponse({"tenant": tenant, "user": user.address}, status_code=201)

    @route_purpose("service.operations")
    async def add_administrator(self, request: Request) -> Response:
        tenant, administrator = await _tenant_and_body(request, bodies.NewAdministrator)
        self.store.add_administrator(tenant, administrator.address)
        return JSONResponse({"tenant": tenant}, status_code=201)

    # -- mail and documents --------------------------------------------------------

    @route_purpose("service.operations")
    async def deliver(self, request: Request) -> Response:
        """Deliver a mail: the spam filter reads it (security), then the mailbox's
        storage figure is updated through the ``end-user-usage`` transform."""
        tenant, mail = await _tenant_and_body(request, bodies.Mail)
        mailbox = self._mailbox(request, tenant)
        score = features.spam_score(mail.subject, mail.body)
        spam = score >= 0.5
        message_id = self.store.add_message(tenant, mailbox, mail.sender, mail.subject, mail.body, spam)
        used = features.storage_used([m.body for m in self.store.messages(tenant, mailbox)])
        self.store.set_storage_used(tenant, mailbox, int(used))
        return JSONResponse({"id": message_id, "spam": spam, "spam_score": score}, status_code=201)

    @route_purpose("service.operations")
    async def put_document(self, request: Request) -> Response:
        tenant, document = await _tenant_and_body(request, bodies.NewDocument)
        name = request.path_params["name"]
        if self.store.user(tenant, document.owner) is None:
            # The owner is customer data: the answer does not echo it.
            raise BadRequest(f"the owner is no user of tenant {tenant!r}", 404)
        self.store.put_document(tenant, name, document.owner, document.body)
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

    @route_purpose("advertising")
    async def promotion(self, request: Request) -> Response:
        """A house ad shown in a mailbox: the mailbox must exist (its owner's
        entry is looked up in a decision frame), the ad reads no customer data."""
        tenant = _tenant(request)
        mailbox = self._mailbox(request, tenant)
        return JSONResponse({"mailbox": mailbox, "ad": features.house_ad()})

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
        tenant, newsletter = await _tenant_and_body(request, bodies.Newsletter)
        recipients = features.newsletter_recipients([u.address for u in self.store.users(tenant)])
        await self._post(NEWSLETTER, "/v1/send", {"subject": newsletter.subject, "to": recipients})
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
        tenant, grant = await _tenant_and_body(request, bodies.Grant)
        store = self._consents()
        change = store.grant(tenant, grant.purpose, grant.categories, granted_by=grant.granted_by)
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
        tenant, revocation = await _tenant_and_body(request, bodies.Revocation)
        change = self._consents().revoke(tenant, revocation.purpose, revoked_by=revocation.revoked_by)
        return JSONResponse({"tenant": tenant, "purpose": change.purpose, "revoked": True})

    # -- law enforcement ----------------------------------------------------------------------

    @route_purpose("disclosure.voluntary")
    async def voluntary_disclosure(self, request: Request) -> Response:
        """A request without a legal obligation behind it: the promise says never."""
        tenant, asked = await _tenant_and_body(request, bodies.Disclosure)
        record = self._mailbox_record(tenant, asked.mailbox)
        fields = _fields(asked.fields, record)
        handed = features.hand_over({name: record[name] for name in fields})
        return JSONResponse({"tenant": tenant, "released": handed})

    @route_purpose("disclosure.compelled")
    async def compelled_disclosure(self, request: Request) -> Response:
        """A demand the law compels: redirect first, release only the named
        fields, notify the tenant's administrators before anything goes out."""
        tenant, demand = await _tenant_and_body(request, bodies.CompelledDisclosure)
        record = self._mailbox_record(tenant, demand.mailbox)
        fields = _fields(demand.fields, record)
        with pg.compelled_disclosure(
            case=demand.case,
            tenant=tenant,
            authority=demand.authority,
            redirect_attempted=demand.redirect_attempted,
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
        if not _exists(self.store.user, tenant, mailbox):
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


@pg.purpose("service.operations", output="decision")
def _exists(find: Callable[[str, str], object], tenant: str, key: str) -> bool:
    """Whether ``find`` finds ``key``: a decision, so the row it loads (an
    owner's directory entry, customer data) stays in this frame instead of
    tainting the request's zone, whatever the request's purpose."""
    return find(tenant, key) is not None


def _tenant(request: Request) -> str:
    return str(request.path_params["tenant"])


async def _tenant_and_body(request: Request, model: type[B]) -> tuple[str, B]:
    """The request's tenant and its body validated as ``model``: the model's
    ``Category`` fields arrive labelled."""
    raw = await request.body()
    try:
        body = model.model_validate_json(raw or b"{}")
    except ValidationError as error:
        # Field names only: the values may be personal data.
        names = sorted({str(e["loc"][0]) for e in error.errors() if e.get("loc")})
        if not names:
            raise BadRequest("the body must be a JSON object") from None
        raise BadRequest(f"invalid fields: {', '.join(names)}") from None
    return _tenant(request), body


def _fields(fields: list[str], record: Mapping[str, Any]) -> list[str]:
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
        Route(f"{t}/mailboxes/{{mailbox}}/promotion", _handled(service.promotion), methods=["GET"]),
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
