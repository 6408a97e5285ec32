"""The demo scenario: every use of the data-use promise, driven through real HTTP.

Each step names the purpose and the data the policy decides for; the
expected outcome is the policy's own decision at the time of the step
(``guard.decide``), so the scenario checks that the running service does what
the policy says: an allowed use answers 2xx and records nothing, a denied one
answers 403 in enforce mode or proceeds with a violation recorded in trace
mode, and an unmet obligation is refused in every mode.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

import purposeguard as pg

from .outside import AD_NETWORK, NEWSLETTER, OutsideServer
from .store import CUSTOMER, DOCUMENT, EMAIL, END_USER_USAGE

__all__ = ["Outcome", "Step", "STEPS", "run"]

Check = Callable[["Run", dict[str, Any]], "str | None"]


@dataclass(frozen=True)
class Step:
    """One request of the scenario; ``purpose`` None marks a set-up step (not in the table)."""

    use: str
    method: str
    path: str
    body: dict[str, Any] | None = None
    purpose: str | None = None
    categories: tuple[str, ...] = ()
    tenant: str = "contoso"
    obligation: str | None = None
    data: str | None = None
    check: Check | None = None

    @property
    def data_text(self) -> str:
        return self.data or ", ".join(self.categories)


@dataclass
class Outcome:
    """What happened at one step, and whether it is what the policy says."""

    step: Step
    status: int
    decision: str
    rule: str
    mode: str
    ok: bool
    problem: str = ""
    violations: list[pg.Violation] = field(default_factory=list)


@dataclass
class Run:
    """What a check may look at: the client, the outside world, the guard."""

    client: httpx.Client
    outside: OutsideServer | None
    guard: pg.Guard


# -- checks ---------------------------------------------------------------------------


def _spam_flagged(run: Run, body: dict[str, Any]) -> str | None:
    return None if body.get("spam") is True else "the spam filter did not flag an obvious spam mail"


def _usage_data(run: Run, body: dict[str, Any]) -> str | None:
    return None if body.get("categories") == ["usage_data"] else f"statistics carry {body.get('categories')}"


def _notice_sent(run: Run, body: dict[str, Any]) -> str | None:
    return None if body.get("sent", 0) >= 1 else "no storage notice was sent"


def _reached(host: str) -> Check:
    def check(run: Run, body: dict[str, Any]) -> str | None:
        if run.outside is None:
            return None
        hits = sum(1 for d in run.outside.received if d.host == host)
        if run.guard.mode == "enforce" and hits:
            return f"{host} received {hits} request(s) in enforce mode"
        if run.guard.mode == "trace" and not hits:
            return f"{host} received nothing in trace mode"
        return None

    return check


def _house_ad_shown(run: Run, body: dict[str, Any]) -> str | None:
    return None if body.get("ad") else "no house ad was shown"


def _released_minimum(run: Run, body: dict[str, Any]) -> str | None:
    released = sorted(body.get("released", {}))
    if released != ["message_count", "owner"]:
        return f"released {released}, not exactly the fields named"
    if body.get("notified") is not True:
        return "the tenant's administrators were not notified"
    outbox = run.client.get("/t/contoso/admin/outbox").json().get("outbox", [])
    if not any(item["kind"] == "disclosure-notice" for item in outbox):
        return "no disclosure notice in the administrators' outbox"
    return None


# -- the scenario ------------------------------------------------------------------------

MEGAN = "megan@contoso.example"
ALEX = "alex@contoso.example"
PAT = "pat@fabrikam.example"


def _mail(sender: str, subject: str, body: str) -> dict[str, Any]:
    return {"sender": sender, "subject": subject, "body": body}


STEPS: tuple[Step, ...] = (
    Step(
        "set up contoso: user megan",
        "POST",
        "/t/contoso/users",
        {"address": MEGAN, "name": "Megan Bowen", "quota": 240},
    ),
    Step("set up contoso: user alex", "POST", "/t/contoso/users", {"address": ALEX, "name": "Alex Wilber"}),
    Step(
        "set up contoso: administrator",
        "POST",
        "/t/contoso/administrators",
        {"address": "it-admin@contoso.example"},
    ),
    Step("set up fabrikam: user pat", "POST", "/t/fabrikam/users", {"address": PAT, "name": "Pat Kim"}),
    Step(
        "set up fabrikam: administrator",
        "POST",
        "/t/fabrikam/administrators",
        {"address": "admin@fabrikam.example"},
    ),
    Step(
        "deliver mail to megan",
        "POST",
        f"/t/contoso/mailboxes/{MEGAN}/messages",
        _mail(
            ALEX,
            "Q3 numbers",
            "Hi Megan, the Q3 numbers are attached. Revenue is up 12% on Q2; please keep this internal until the board meeting on Thursday.",
        ),
    ),
    Step(
        "deliver mail to alex",
        "POST",
        f"/t/contoso/mailboxes/{ALEX}/messages",
        _mail(MEGAN, "Lunch?", "Are you free for lunch on Friday? I would like to go over the launch plan."),
    ),
    Step(
        "deliver mail to pat",
        "POST",
        f"/t/fabrikam/mailboxes/{PAT}/messages",
        _mail(
            "ops@fabrikam.example",
            "Rota",
            "Pat, you are on call next week; the handover notes are in the shared folder.",
        ),
        tenant="fabrikam",
    ),
    Step(
        "spam filter on incoming mail",
        "POST",
        f"/t/contoso/mailboxes/{MEGAN}/messages",
        _mail(
            "winner@lottery.example",
            "You are a WINNER!!!",
            "Claim your lottery prize: free money, click here and send a wire transfer fee!!!",
        ),
        purpose="service.security",
        categories=(EMAIL,),
        check=_spam_flagged,
    ),
    Step(
        "store a document",
        "PUT",
        "/t/contoso/documents/q3-plan.docx",
        {
            "owner": MEGAN,
            "body": "Q3 plan: hire two engineers, ship the mobile client, close the Berlin office.",
        },
        purpose="service.operations",
        categories=(DOCUMENT,),
    ),
    Step(
        "troubleshoot a mailbox",
        "GET",
        f"/t/contoso/mailboxes/{MEGAN}/diagnostics",
        purpose="service.operations",
        categories=(EMAIL,),
    ),
    Step(
        "usage statistics (usage-aggregate)",
        "GET",
        "/t/contoso/usage-statistics",
        purpose="service.operations",
        categories=("usage_data",),
        check=_usage_data,
    ),
    Step(
        "storage-limit notice (end-user-usage)",
        "POST",
        "/t/contoso/admin/storage-notices",
        {},
        purpose="service.communications",
        categories=(END_USER_USAGE,),
        check=_notice_sent,
    ),
    Step(
        "storage-limit notice quoting mail",
        "POST",
        "/t/contoso/admin/storage-notices?quote=latest",
        {},
        purpose="service.communications",
        categories=(EMAIL,),
    ),
    Step(
        "house ad, no customer data",
        "GET",
        f"/t/contoso/mailboxes/{MEGAN}/promotion",
        purpose="advertising",
        data="none",
        check=_house_ad_shown,
    ),
    Step(
        f"ad recommendations ({AD_NETWORK})",
        "GET",
        f"/t/contoso/mailboxes/{MEGAN}/recommendations",
        purpose="advertising",
        categories=(EMAIL,),
        check=_reached(AD_NETWORK),
    ),
    Step(
        "newsletter to end users",
        "POST",
        "/t/contoso/newsletter",
        {"subject": "Spring offers"},
        purpose="marketing.direct",
        categories=(CUSTOMER,),
        check=_reached(NEWSLETTER),
    ),
    Step(
        "product analytics, no consent",
        "POST",
        "/t/fabrikam/jobs/product-analytics",
        {},
        purpose="improvement",
        categories=(EMAIL,),
        tenant="fabrikam",
    ),
    Step(
        "contoso consents to improvement",
        "POST",
        "/t/contoso/admin/consents",
        {"purpose": "improvement", "categories": [CUSTOMER], "granted_by": "it-admin@contoso.example"},
    ),
    Step(
        "product analytics, tenant consented",
        "POST",
        "/t/contoso/jobs/product-analytics",
        {},
        purpose="improvement",
        categories=(EMAIL,),
    ),
    Step(
        "voluntary disclosure to law enforcement",
        "POST",
        "/t/contoso/law-enforcement/voluntary",
        {"requester": "Springfield PD", "mailbox": MEGAN, "fields": ["owner", "messages"]},
        purpose="disclosure.voluntary",
        categories=(CUSTOMER, EMAIL),
    ),
    Step(
        "compelled disclosure, no redirect",
        "POST",
        "/t/contoso/law-enforcement/compelled",
        {
            "case": "LE-2026-0042",
            "authority": "District Court, Springfield",
            "mailbox": MEGAN,
            "fields": ["owner", "message_count"],
            "redirect_attempted": False,
        },
        purpose="disclosure.compelled",
        categories=(CUSTOMER,),
        obligation="redirect_first",
    ),
    Step(
        "compelled disclosure after redirect",
        "POST",
        "/t/contoso/law-enforcement/compelled",
        {
            "case": "LE-2026-0042",
            "authority": "District Court, Springfield",
            "mailbox": MEGAN,
            "fields": ["owner", "message_count"],
            "redirect_attempted": True,
        },
        purpose="disclosure.compelled",
        categories=(CUSTOMER,),
        data="customer_data (2 fields)",
        check=_released_minimum,
    ),
)


# -- running -------------------------------------------------------------------------------


class _Collector:
    def __init__(self) -> None:
        self.items: list[pg.Violation] = []
        self.lock = threading.Lock()

    def __call__(self, violation: pg.Violation) -> None:
        with self.lock:
            self.items.append(violation)

    def since(self, mark: int) -> list[pg.Violation]:
        with self.lock:
            return list(self.items[mark:])


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def judge(
    step: Step,
    status: int,
    body: dict[str, Any],
    violations: list[pg.Violation],
    expected: pg.Decision | None,
    run: Run,
) -> Outcome:
    """Compare what happened at ``step`` with what the policy says."""
    mode = run.guard.mode
    if step.purpose is None or expected is None:
        ok = 200 <= status < 300
        problem = "" if ok else f"HTTP {status}: {body.get('error') or body.get('message') or ''}".strip()
        return Outcome(step, status, "done" if ok else "failed", "", mode, ok, problem, violations)
    extra = step.check(run, body) if step.check is not None and 200 <= status < 300 else None
    if step.obligation is not None:
        refused = status == 409 and body.get("obligation") == step.obligation
        problem = "" if refused else f"expected a refusal for obligation {step.obligation}, got HTTP {status}"
        if refused and violations:
            problem = f"{len(violations)} violation(s) recorded for a refused disclosure"
        return Outcome(
            step,
            status,
            f"refused: {step.obligation}",
            str(body.get("rule") or expected.rule or ""),
            "any",
            not problem,
            problem,
            violations,
        )
    if expected.allowed:
        decision = "allowed" + (" (consent)" if expected.consent else "")
        if expected.obligations:
            decision += ", obligations met"
        problem = ""
        if not 200 <= status < 300:
            problem = f"the policy allows it, the service answered HTTP {status}"
        elif violations:
            problem = f"the policy allows it, yet {len(violations)} violation(s) were recorded ({violations[0].rule})"
        elif extra:
            problem = extra
        # No category at all is not the policy's default: unlabelled data is always allowed.
        rule = expected.rule or ("(no labelled data)" if not step.categories else "(default)")
        return Outcome(step, status, decision, rule, mode, not problem, problem, violations)
    # Denied by the policy: blocked in enforce mode, recorded and let through in trace mode.
    rule = expected.rule or "(default)"
    if not violations:
        return Outcome(
            step, status, "not stopped", rule, mode, False, "the policy denies it, nothing was recorded"
        )
    primary = next((v for v in violations if v.via != "context"), violations[0])
    problem = ""
    if (primary.rule or "(default)") != rule or primary.purpose != step.purpose:
        problem = (
            f"recorded rule {primary.rule} for {primary.purpose}, the policy says {rule} for {step.purpose}"
        )
    if primary.mode == "enforce":
        decision = f"denied, blocked ({status})"
        if not problem and (status != 403 or body.get("rule") != expected.rule):
            problem = f"enforce mode should answer 403 naming {rule}, got HTTP {status}"
    else:
        decision = f"denied, proceeded, {len(violations)} recorded"
        if not problem and not 200 <= status < 300:
            problem = f"trace mode should let the flow proceed, got HTTP {status}"
    if not problem and extra:
        problem = extra
    return Outcome(step, status, decision, rule, primary.mode, not problem, problem, violations)


def run(
    base_url: str,
    *,
    outside: OutsideServer | None = None,
    progress: Callable[[int, int, Outcome], None] | None = None,
    steps: tuple[Step, ...] = STEPS,
) -> list[Outcome]:
    """Drive ``steps`` against the service at ``base_url``; one :class:`Outcome` per step.

    The service must run in this process under the guard ``pg.configure()``
    set (violations are collected through :func:`purposeguard.on_violation`).
    """
    guard = pg.get_guard()
    collector = _Collector()
    unsubscribe = pg.on_violation(collector)
    outcomes: list[Outcome] = []
    try:
        with httpx.Client(base_url=base_url, timeout=15.0) as client:
            state = Run(client, outside, guard)
            for index, step in enumerate(steps, 1):
                expected = (
                    guard.decide(step.categories, step.purpose, tenant=step.tenant) if step.purpose else None
                )
                mark = len(collector.items)
                response = client.request(step.method, step.path, json=step.body)
                outcome = judge(
                    step, response.status_code, _json(response), collector.since(mark), expected, state
                )
                outcomes.append(outcome)
                if progress is not None:
                    progress(index, len(steps), outcome)
    finally:
        unsubscribe()
    return outcomes
