"""Policies: taxonomy + rules, validated whole, compiled into a decision table.

Deciding is a dictionary lookup on a table built once at load time; no I/O
and no parsing happens at decide time. Consent is the one input that changes
while a process runs, so it is passed in as a small protocol and consulted
only for denials that a ``consentable`` rule decided.
"""

from __future__ import annotations

import fnmatch
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from ._context import MIXED_TENANT
from ._errors import PolicyError, UnknownKeyError
from ._files import NotRegularFile, TooLarge, read_regular
from ._state import remember
from ._taxonomy import Taxonomy, is_valid_key

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    # Checked as Python 3.10: whether tomli is importable depends on the checking interpreter.
    import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]

__all__ = [
    "Decision",
    "Destination",
    "Policy",
    "Rule",
    "Transform",
    "ConsentLookup",
    "EFFECTS",
    "MODES",
    "STRICTNESS",
    "effective_mode",
    "environment_mode",
    "OBLIGATIONS",
    "PACKS",
]

EFFECTS = ("allow", "deny")
MODES = ("enforce", "trace", "off")
# A mode given to configure() is a ceiling: a rule may be laxer, never stricter.
STRICTNESS: Mapping[str, int] = {"off": 0, "trace": 1, "enforce": 2}
OBLIGATIONS = ("redirect_first", "minimize", "notify_tenant")
# Consent can widen some uses, never advertising (the data-use promise).
NEVER_CONSENTABLE = ("advertising",)
# The same promise under a policy written in fideslang keys.
NEVER_CONSENTABLE_BY_TAXONOMY = {"fideslang": ("marketing.advertising",)}
PACKS = ("trust-center",)

# Memory bounds, checked before anything large is built: a policy past them is
# refused with a PolicyError instead of exhausting memory or appearing to hang.
# The decision table holds one entry per (category, purpose) pair, about
# 100 bytes each, so a million cells is about 100 MB.
MAX_TABLE_CELLS = 1_000_000
# Each rule is indexed under every (category, purpose) pair it names.
MAX_RULE_PAIRS = 1_000_000
# The TOML text itself, refused before parsing.
MAX_POLICY_BYTES = 16 * 1024 * 1024
# Memoised decisions kept per purpose (label sets).
DECISIONS_LIMIT = 4096

_POLICY_KEYS = {"name", "description", "default", "mode", "context_mode", "taxonomy", "extends", "remove"}
_RULE_KEYS = {
    "id",
    "description",
    "categories",
    "purposes",
    "effect",
    "consentable",
    "obligations",
    "mode",
    "context_mode",
}
_TRANSFORM_KEYS = {"id", "description", "from", "to"}
_DESTINATION_KEYS = {"id", "description", "hosts", "paths", "tables", "purpose"}
_TRANSPORT_KEYS = {"require_tls"}
_TOP_KEYS = {"policy", "rules", "transforms", "destinations", "transport", "taxonomy"}
# Ids travel in every record, span and log line: key-shaped and bounded.
_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\Z")
_LINE_IN_TOML_ERROR = re.compile(r"line (\d+)")


def _granted(answer: object) -> bool:
    """A consent lookup's answer: a bool, nothing else (a coroutine, a
    string, a number would read as a grant). Anything else raises, and the
    check it was for fails closed."""
    if answer is True or answer is False:
        return answer
    close = getattr(answer, "close", None)
    if close is not None and hasattr(answer, "__await__"):
        close()  # an async lookup's coroutine, never to be awaited here
    raise TypeError(f"a consent lookup answered {type(answer).__name__}, not a bool")


class ConsentLookup(Protocol):
    """What the decision table asks a consent store: has ``tenant`` consented?"""

    def has_consent(self, tenant: str, purpose: str, category: str) -> bool: ...


@dataclass(frozen=True)
class Rule:
    id: str
    categories: tuple[str, ...]
    purposes: tuple[str, ...]
    effect: str
    consentable: bool = False
    obligations: tuple[str, ...] = ()
    mode: str | None = None
    description: str = ""
    context_mode: str | None = None
    # Where the rule was written (a file or pack:NAME); with ``extends`` it may
    # differ from the policy's own source.
    origin: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Transform:
    """A declassification the policy permits: inputs of ``from`` become ``to``."""

    id: str
    from_categories: tuple[str, ...]
    to: str
    description: str = ""


@dataclass(frozen=True)
class Destination:
    """Where data leaves the process, and the purpose it serves there."""

    id: str
    hosts: tuple[str, ...]
    purpose: str
    description: str = ""
    # Where batch jobs write: file paths or URLs (patterns) and table names.
    paths: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()

    def matches(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return any(fnmatch.fnmatchcase(host, pattern.lower()) for pattern in self.hosts)

    def matches_path(self, path: str) -> bool:
        path = path.rstrip("/")
        return any(fnmatch.fnmatchcase(path, pattern.rstrip("/")) for pattern in self.paths)

    def matches_table(self, table: str) -> bool:
        table = table.lower()
        return any(fnmatch.fnmatchcase(table, pattern.lower()) for pattern in self.tables)


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of deciding a set of categories for one purpose.

    ``category`` and ``rule`` are those of the first denied category in sorted
    order, or of the first category when all are allowed; ``rule`` is None when
    the policy default decided. ``denied`` lists every denied category.
    """

    allowed: bool
    category: str | None
    purpose: str
    rule: str | None
    obligations: tuple[str, ...] = ()
    consent: bool = False
    denied: tuple[str, ...] = ()
    rule_mode: str | None = None

    def __bool__(self) -> bool:
        return self.allowed


@dataclass(frozen=True, slots=True)
class _Cell:
    allowed: bool
    rule: Rule | None
    consentable: bool


@dataclass(frozen=True, slots=True)
class Remediation:
    """How a denied flow can be fixed, without naming the value."""

    kind: str  # "transform" | "consent" | "label-sink" | "block"
    text: str


class Policy:
    """A validated, compiled data-use policy.

    >>> policy = Policy.load("trust-center")
    >>> policy.decide(["customer_data.content.email"], "advertising").allowed
    False
    """

    def __init__(
        self,
        *,
        name: str,
        taxonomy: Taxonomy,
        rules: Sequence[Rule],
        default: str = "deny",
        mode: str | None = None,
        context_mode: str | None = None,
        transforms: Sequence[Transform] = (),
        destinations: Sequence[Destination] = (),
        require_tls: Sequence[str] = (),
        description: str = "",
        source: str | None = None,
        extends: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.taxonomy = taxonomy
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.default = default
        self.mode = mode
        self.context_mode = context_mode
        self.transforms: Mapping[str, Transform] = {t.id: t for t in transforms}
        self.destinations: tuple[Destination, ...] = tuple(destinations)
        self.require_tls: tuple[str, ...] = tuple(require_tls)
        self.description = description
        self.source = source
        # The policies this one starts from, nearest first (``extends``).
        self.extends: tuple[str, ...] = tuple(extends)
        self.rules_by_id: Mapping[str, Rule] = {r.id: r for r in self.rules}
        _validate_semantics(self)
        _check_size(self)
        self._by_pair: dict[tuple[str, str], list[Rule]] = {}
        self._table = self._compile()
        # Memoised decisions, per purpose then per label set: the hot path's
        # one lookup once a label set has been seen.
        self._decisions: dict[str, dict[frozenset[str], Decision]] = {p: {} for p in taxonomy.purposes}
        self._remediations: dict[tuple[str, str], Remediation] = {}

    # -- loading ---------------------------------------------------------

    @classmethod
    def load(cls, path_or_pack: str | Path) -> Policy:
        """Load a built-in pack by name (``"trust-center"``) or a TOML file by path."""
        if isinstance(path_or_pack, str) and path_or_pack in PACKS:
            return cls.from_toml(_pack_text(path_or_pack), source=f"pack:{path_or_pack}")
        path = Path(path_or_pack)
        return cls.from_toml(_read_policy_file(path), source=str(path))

    @classmethod
    def from_toml(cls, text: str, *, source: str = "<string>") -> Policy:
        """Parse and validate a policy; a bad policy raises and yields nothing."""
        data = _parse(text, source)
        token = _CHAIN_BYTES.set([_size(text)])
        try:
            return cls.from_dict(data, source=source)
        finally:
            _CHAIN_BYTES.reset(token)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<dict>") -> Policy:
        token = _CHAIN_BYTES.set([0]) if _CHAIN_BYTES.get() is None else None
        try:
            parts = _parts(data, source, ())
        finally:
            if token is not None:
                _CHAIN_BYTES.reset(token)
        return cls(
            name=parts.name,
            taxonomy=parts.taxonomy,
            rules=parts.rules,
            default=parts.default,
            mode=parts.mode,
            context_mode=parts.context_mode,
            transforms=parts.transforms,
            destinations=parts.destinations,
            require_tls=parts.require_tls,
            description=parts.description,
            source=source,
            extends=parts.extends,
        )

    # -- deciding ----------------------------------------------------------

    def decide(
        self,
        categories: Iterable[str],
        purpose: str,
        *,
        tenant: str | None = None,
        consents: ConsentLookup | None = None,
    ) -> Decision:
        """Decide a set of categories for one purpose: per category the most specific
        rule (deepest category, then deepest purpose; deny among equals), else the
        policy's default; a consentable deny becomes allow with the tenant's consent."""
        if not isinstance(categories, frozenset):
            if isinstance(categories, str):
                categories = (categories,)
            categories = frozenset(categories)
        try:
            by_labels = self._decisions[purpose]
        except (KeyError, TypeError):
            raise UnknownKeyError(purpose, "purpose") from None
        decision = by_labels.get(categories)
        if decision is None:
            decision = self._decide_uncached(categories, purpose)
            # Label sets a program uses are few, but decide() takes any:
            # past the bound the oldest eighth is decided again when next asked.
            # An allow with obligations is not kept: the runtime's shortcuts
            # read this memo, and such an allow holds only inside the
            # procedure that meets them (decided again each time, rare).
            if not (decision.allowed and decision.obligations):
                remember(by_labels, categories, decision, DECISIONS_LIMIT)
        # Data of several tenants is no one tenant's to consent for, whatever
        # a store holds under the marker's name (a tenant may call itself so).
        if decision.allowed or tenant is None or consents is None or tenant == MIXED_TENANT:
            return decision
        return self._apply_consent(decision, categories, purpose, tenant, consents)

    def _decide_uncached(self, categories: frozenset[str], purpose: str) -> Decision:
        if not categories:
            return Decision(True, None, purpose, None)
        for category in categories:
            if category not in self.taxonomy.categories:
                raise UnknownKeyError(category, "category")
        ordered = sorted(categories)
        denied = [c for c in ordered if not self._table[c, purpose].allowed]
        if denied:
            first = self._table[denied[0], purpose]
            rule = first.rule
            return Decision(
                False,
                denied[0],
                purpose,
                rule.id if rule else None,
                (),
                False,
                tuple(denied),
                rule.mode if rule else None,
            )
        obligations: list[str] = []
        for category in ordered:
            rule = self._table[category, purpose].rule
            if rule is not None:
                obligations.extend(o for o in rule.obligations if o not in obligations)
        first_rule = self._table[ordered[0], purpose].rule
        return Decision(
            True,
            ordered[0],
            purpose,
            first_rule.id if first_rule else None,
            tuple(obligations),
            False,
            (),
            first_rule.mode if first_rule else None,
        )

    def _apply_consent(
        self,
        decision: Decision,
        categories: frozenset[str],
        purpose: str,
        tenant: str,
        consents: ConsentLookup,
    ) -> Decision:
        still_denied = []
        consented = False
        for category in decision.denied:
            cell = self._table[category, purpose]
            if cell.consentable and _granted(consents.has_consent(tenant, purpose, category)):
                consented = True
            else:
                still_denied.append(category)
        if not consented:
            return decision
        if still_denied:
            first = self._table[still_denied[0], purpose].rule
            return Decision(
                False,
                still_denied[0],
                purpose,
                first.id if first else None,
                (),
                False,
                tuple(still_denied),
                first.mode if first else None,
            )
        # Every category is allowed now: report the first category in sorted
        # order and its rule, so a decision reads the same whatever order the
        # labels came in, with every allowed rule's obligations.
        ordered = sorted(categories)
        obligations: list[str] = []
        for category in ordered:
            cell = self._table[category, purpose]
            if cell.allowed and cell.rule is not None:
                obligations.extend(o for o in cell.rule.obligations if o not in obligations)
        rule = self._table[ordered[0], purpose].rule
        return Decision(
            True,
            ordered[0],
            purpose,
            rule.id if rule else None,
            tuple(obligations),
            True,
            (),
            rule.mode if rule else None,
        )

    def cell(self, category: str, purpose: str) -> tuple[bool, Rule | None, bool]:
        """``(allowed, deciding rule, consentable)`` for one category and purpose."""
        self.taxonomy.require_category(category)
        self.taxonomy.require_purpose(purpose)
        cell = self._table[category, purpose]
        return cell.allowed, cell.rule, cell.consentable

    def is_consentable(self, category: str, purpose: str) -> bool:
        return self.cell(category, purpose)[2]

    def destination_for(self, host: str) -> Destination | None:
        for destination in self.destinations:
            if destination.matches(host):
                return destination
        return None

    def destination_for_path(self, path: str) -> Destination | None:
        for destination in self.destinations:
            if destination.paths and destination.matches_path(path):
                return destination
        return None

    def destination_for_table(self, table: str) -> Destination | None:
        for destination in self.destinations:
            if destination.tables and destination.matches_table(table):
                return destination
        return None

    def requires_tls(self, categories: Iterable[str]) -> tuple[str, ...]:
        """The categories among ``categories`` that may not travel unencrypted."""
        out = []
        for category in categories:
            chain = self.taxonomy.category_ancestors(category)
            if any(c in self.require_tls for c in chain):
                out.append(category)
        return tuple(sorted(out))

    # -- explaining --------------------------------------------------------

    def remediation(self, category: str, purpose: str) -> Remediation:
        """How a denial of ``category`` for ``purpose`` can be fixed."""
        key = (category, purpose)
        found = self._remediations.get(key)
        if found is None:
            found = self._remediation_uncached(category, purpose)
            self._remediations[key] = found
        return found

    def _remediation_uncached(self, category: str, purpose: str) -> Remediation:
        allowed, rule, consentable = self.cell(category, purpose)
        if allowed:
            return Remediation("none", "allowed; nothing to fix")
        decided_by = f"rule {rule.id!r}" if rule else "the policy default (no rule matches)"
        chain = self.taxonomy.category_ancestors(category)
        for transform in self.transforms.values():
            if (
                any(c in transform.from_categories for c in chain)
                and self._table[transform.to, purpose].allowed
            ):
                return Remediation(
                    "transform",
                    f"denied by {decided_by}; derive what {purpose} needs through the "
                    f"permitted transform {transform.id!r} ({category} -> {transform.to})",
                )
        if consentable:
            return Remediation(
                "consent",
                f"denied by {decided_by}; allowed only for tenants that have recorded "
                f"consent to {purpose} for {category}",
            )
        purposes_allowed = [
            p
            for p in self.taxonomy.purposes
            # A narrower purpose (service.operations for service) is the
            # natural suggestion; the purpose itself and its ancestors are not.
            if self._table[category, p].allowed and p not in self.taxonomy.purpose_ancestors(purpose)
        ]
        if purposes_allowed and not any(purpose == p for p in NEVER_CONSENTABLE):
            return Remediation(
                "label-sink",
                f"denied by {decided_by}; if this code serves another use, declare that "
                f"purpose on the sink ({category} is allowed for {', '.join(sorted(purposes_allowed))}); "
                "otherwise block the flow",
            )
        if rule is None:
            return Remediation(
                "block",
                f"denied by {decided_by}; no rule allows {category} for {purpose}: block the flow, "
                "or add a rule if the promise allows this use",
            )
        return Remediation(
            "block",
            f"denied by {decided_by}; {category} may never be used for {purpose}: block the flow",
        )

    def explain(
        self,
        category: str,
        purpose: str,
        *,
        tenant: str | None = None,
        consents: ConsentLookup | None = None,
    ) -> str:
        """Which rule decides ``category`` for ``purpose``, and why, in words."""
        self.taxonomy.require_category(category)
        self.taxonomy.require_purpose(purpose)
        cell = self._table[category, purpose]
        decision = self.decide([category], purpose, tenant=tenant, consents=consents)
        verdict = "allowed" if decision.allowed else "denied"
        lines = [f"{category} for {purpose}: {verdict}"]
        if cell.rule is None:
            lines.append(f"  decided by: the policy default ({self.default}); no rule matches")
        else:
            rule = cell.rule
            lines.append(
                f"  decided by: rule {rule.id!r} ({rule.effect}; categories "
                f"{', '.join(rule.categories)}; purposes {', '.join(rule.purposes)})"
            )
            lines.append(
                f"  rule modes: mode {rule.mode or 'unset'}, context_mode {rule.context_mode or 'unset'}"
                + (
                    " (unset: configure(), the policy or the environment decides)"
                    if rule.mode is None or rule.context_mode is None
                    else ""
                )
            )
            if rule.description:
                lines.append(f"  rule says: {rule.description}")
        others = [r for r in self.candidates(category, purpose) if r is not cell.rule]
        if others:
            lines.append(
                "  also matching, less specific or outranked: "
                + ", ".join(f"{r.id} ({r.effect})" for r in others)
            )
        lines.append(
            f"  why: the most specific rule wins (category {category} implies "
            f"{', '.join(self.taxonomy.category_ancestors(category)[1:]) or 'nothing more'}; "
            f"purpose {purpose} implies "
            f"{', '.join(self.taxonomy.purpose_ancestors(purpose)[1:]) or 'nothing more'}); "
            "among equally specific rules deny wins"
        )
        if cell.consentable:
            if decision.consent:
                lines.append(f"  consent: tenant {tenant!r} consented, so the denial becomes allow")
            else:
                lines.append("  consent: a tenant's recorded consent turns this denial into allow")
        if cell.rule is not None and cell.rule.obligations and cell.allowed:
            lines.append("  obligations: " + ", ".join(cell.rule.obligations))
        if not decision.allowed:
            lines.append("  fix: " + self.remediation(category, purpose).text)
        return "\n".join(lines)

    def matrix(self, categories: Sequence[str] | None = None) -> list[tuple[str, list[bool]]]:
        """Rows of ``(purpose, [allowed per category])`` for every purpose key."""
        columns = list(categories) if categories is not None else list(self.taxonomy.categories)
        return [
            (purpose, [self._table[c, purpose].allowed for c in columns])
            for purpose in self.taxonomy.purposes
        ]

    # -- compiling -----------------------------------------------------------

    def candidates(self, category: str, purpose: str) -> tuple[Rule, ...]:
        """Every rule that matches ``category`` for ``purpose``, most specific first
        (deepest category, then deepest purpose, then file order)."""
        self.taxonomy.require_category(category)
        self.taxonomy.require_purpose(purpose)
        found: dict[str, Rule] = {}
        for category_key in self.taxonomy.category_ancestors(category):
            for purpose_key in self.taxonomy.purpose_ancestors(purpose):
                for rule in self._by_pair.get((category_key, purpose_key), ()):
                    # The first pair a rule is met under is its deepest one,
                    # since ancestors come deepest first.
                    found.setdefault(rule.id, rule)
        return tuple(found.values())

    def _compile(self) -> dict[tuple[str, str], _Cell]:
        # Rules indexed by each (category, purpose) pair they name. A cell's
        # rules are those of the deepest category on its chain that has a
        # match, at the deepest purpose there: worked out once per category
        # that has rules (its row of the table, purposes parents first), and
        # once per list of rules for the winner, so loading grows with the
        # table and the rules, not with their product or the taxonomy's depth.
        by_pair = self._by_pair
        by_category: dict[str, dict[str, list[Rule]]] = {}
        for rule in self.rules:
            for category in rule.categories:
                row = by_category.setdefault(category, {})
                for purpose in rule.purposes:
                    row.setdefault(purpose, []).append(rule)
                    by_pair.setdefault((category, purpose), row[purpose])
        default = _Cell(self.default == "allow", None, False)
        taxonomy = self.taxonomy
        purposes = sorted(taxonomy.purposes, key=lambda key: len(taxonomy.purpose_ancestors(key)))
        parent_purpose = {key: taxonomy.purpose_ancestors(key)[1:2] for key in purposes}
        # Per category with rules: each purpose's most specific rules on its
        # chain of categories from there up (None where no rule matches).
        tops: dict[str, dict[str, list[Rule] | None]] = {}

        def top_row(key: str) -> dict[str, list[Rule] | None]:
            found = tops.get(key)
            if found is not None:
                return found
            up = next((k for k in taxonomy.category_ancestors(key)[1:] if k in by_category), None)
            above = top_row(up) if up is not None else None
            row = by_category[key]
            best: dict[str, list[Rule] | None] = {}
            for purpose in purposes:
                rules: list[Rule] | None = row.get(purpose) or None
                if rules is None:
                    parent = parent_purpose[purpose]
                    if parent:
                        rules = best[parent[0]]
                best[purpose] = rules
            if above is not None:
                for purpose, rules in best.items():
                    if rules is None:
                        best[purpose] = above[purpose]
            tops[key] = best
            return best

        # Cells are shared: most cells of a big table repeat a few outcomes.
        outcomes: dict[tuple[str, bool], _Cell] = {}
        winners: dict[int, _Cell] = {}
        table: dict[tuple[str, str], _Cell] = {}
        for category in taxonomy.categories:
            own = next((k for k in taxonomy.category_ancestors(category) if k in by_category), None)
            if own is None:
                table.update(dict.fromkeys([(category, p) for p in purposes], default))
                continue
            for purpose, top in top_row(own).items():
                if top is None:
                    table[category, purpose] = default
                    continue
                cell = winners.get(id(top))
                if cell is None:
                    winner, consentable = _winner(top)
                    key = (winner.id, consentable)
                    cell = outcomes.get(key)
                    if cell is None:
                        cell = outcomes[key] = _Cell(winner.effect == "allow", winner, consentable)
                    winners[id(top)] = cell
                table[category, purpose] = cell
        return table

    def __repr__(self) -> str:
        return f"<Policy {self.name!r} rules={len(self.rules)} source={self.source!r}>"


def _winner(top: list[Rule]) -> tuple[Rule, bool]:
    """Among equally specific rules deny wins, and a plain deny outranks a
    consentable one; ties go to the first in file order."""
    consentable: Rule | None = None
    allow: Rule | None = None
    for rule in top:
        if rule.effect == "deny":
            if not rule.consentable:
                return rule, False
            if consentable is None:
                consentable = rule
        elif allow is None:
            allow = rule
    if consentable is not None:
        return consentable, True
    assert allow is not None  # top is never empty
    return allow, False


def _check_size(policy: Policy) -> None:
    cells = len(policy.taxonomy.categories) * len(policy.taxonomy.purposes)
    if cells > MAX_TABLE_CELLS:
        raise PolicyError(
            f"{len(policy.taxonomy.categories):,} categories × {len(policy.taxonomy.purposes):,} purposes "
            f"make {cells:,} decision-table cells, over the limit of {MAX_TABLE_CELLS:,}",
            path=policy.source,
            field="taxonomy",
        )
    pairs = sum(len(rule.categories) * len(rule.purposes) for rule in policy.rules)
    if pairs > MAX_RULE_PAIRS:
        raise PolicyError(
            f"the rules name {pairs:,} category-purpose pairs, over the limit of "
            f"{MAX_RULE_PAIRS:,} category-purpose pairs",
            path=policy.source,
            field="rules",
        )


def _related(a: str, b: str) -> bool:
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


# -- validation ----------------------------------------------------------------


def _pack_text(name: str) -> str:
    return resources.files("purposeguard.packs").joinpath(f"{name}.toml").read_text(encoding="utf-8")


def _read_policy_file(path: Path, *, referrer: str | None = None) -> str:
    # ``referrer`` is the policy whose ``extends`` named this file: errors name it.
    where: dict[str, Any] = {"path": referrer, "field": "policy.extends"} if referrer else {"path": str(path)}
    named = f" {str(path)!r}" if referrer else ""
    try:
        # A FIFO would block, /dev/zero never ends: see _files.
        data = read_regular(path, MAX_POLICY_BYTES)
        return data.decode("utf-8")
    except NotRegularFile:
        raise PolicyError(f"the policy file{named} is not a regular file", **where) from None
    except TooLarge:
        raise PolicyError(
            f"the policy file{named} is over the limit of {MAX_POLICY_BYTES:,} bytes", **where
        ) from None
    except FileNotFoundError:
        hint = f" (built-in packs: {', '.join(PACKS)})" if not path.suffix or referrer else ""
        raise PolicyError(f"no such policy file{named}{hint}", **where) from None
    except (OSError, UnicodeDecodeError) as error:
        raise PolicyError(f"cannot read policy file{named}: {error}", **where) from None


@dataclass
class _Parts:
    """A policy's validated contents before compiling, with what it inherited."""

    name: str
    description: str
    default: str
    mode: str | None
    context_mode: str | None
    taxonomy: Taxonomy
    rules: list[Rule]
    transforms: list[Transform]
    destinations: list[Destination]
    require_tls: list[str]
    extends: tuple[str, ...] = ()


def _identity(source: str) -> str:
    """What a cycle of ``extends`` is detected on: a pack name or a resolved path."""
    if source.startswith("pack:") or source.startswith("<"):
        return source
    return str(Path(source).resolve())


# How many policies deep ``extends`` may go: a bound, not a cycle (cycles are
# named as such), so a long chain is a clear error rather than a RecursionError.
MAX_EXTENDS = 32


def _inherit(extends: Any, source: str, chain: tuple[str, ...]) -> _Parts:
    if not isinstance(extends, str) or not extends.strip():
        raise PolicyError(
            "must be a pack name or a path relative to this file", path=source, field="policy.extends"
        )
    base_source = _base_source(extends, source)
    here = chain + (_identity(source),)
    if len(here) > MAX_EXTENDS:
        raise PolicyError(
            f"extends goes deeper than {MAX_EXTENDS} policies", path=source, field="policy.extends"
        )
    if _identity(base_source) in here:
        cycle = " -> ".join([*here, _identity(base_source)])
        raise PolicyError(f"extends makes a cycle: {cycle}", path=source, field="policy.extends")
    if extends in PACKS:
        text = _pack_text(extends)
    else:
        text = _read_policy_file(Path(base_source), referrer=source)
    # Each file is bounded, and so is the chain: every level's parsed text
    # stays in memory while its base is read.
    spent = _CHAIN_BYTES.get() or [0]
    spent[0] += _size(text)
    if spent[0] > MAX_POLICY_BYTES:
        raise PolicyError(
            f"the policy and the files it extends are over the limit of {MAX_POLICY_BYTES:,} bytes in all",
            path=source,
            field="policy.extends",
        )
    return _parts(_parse(text, base_source), base_source, here)


# Bytes of policy text read for the policy being loaded, its extends chain
# included (a list, so each level adds to the one count).
_CHAIN_BYTES: ContextVar[list[int] | None] = ContextVar("purposeguard.policy_chain_bytes", default=None)


def _size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _parse(text: str, source: str) -> dict[str, Any]:
    if len(text) > MAX_POLICY_BYTES // 4 and len(text.encode("utf-8")) > MAX_POLICY_BYTES:
        raise PolicyError(f"the policy text is over the limit of {MAX_POLICY_BYTES:,} bytes", path=source)
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except RecursionError:
        raise PolicyError("the policy nests tables or arrays too deep to read", path=source) from None
    except tomllib.TOMLDecodeError as error:
        match = _LINE_IN_TOML_ERROR.search(str(error))
        raise PolicyError(
            f"TOML syntax error: {error}",
            path=source,
            line=int(match.group(1)) if match else None,
        ) from None
    return data


def _replace_by_id(inherited: Sequence[Any], own: Sequence[Any]) -> list[Any]:
    """Inherited entries in their order, each replaced by this file's entry of
    the same id, then this file's new entries."""
    own_by_id = {entry.id: entry for entry in own}
    merged = [own_by_id.pop(entry.id, entry) for entry in inherited]
    return merged + [entry for entry in own if entry.id in own_by_id]


def _parts(data: Mapping[str, Any], source: str, chain: tuple[str, ...]) -> _Parts:
    if not isinstance(data, Mapping):
        raise PolicyError("a policy must be a table", path=source)
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise PolicyError(
            f"unknown section {sorted(unknown)[0]!r} (expected one of {', '.join(sorted(_TOP_KEYS))})",
            path=source,
            field=sorted(unknown)[0],
        )
    header = _table(data.get("policy", {}), source, "policy")
    _no_unknown_keys(header, _POLICY_KEYS, source, None, "policy")
    # Before the base is read: a file refused for its own keys costs no more.
    transport = _table(data.get("transport", {}), source, "transport")
    _no_unknown_keys(transport, _TRANSPORT_KEYS, source, None, "transport")
    base = _inherit(header["extends"], source, chain) if "extends" in header else None
    remove = header.get("remove", [])
    if not isinstance(remove, list) or not all(isinstance(r, str) for r in remove):
        raise PolicyError("must be a list of rule ids", path=source, field="policy.remove")
    if remove and base is None:
        raise PolicyError("drops inherited rules: set extends too", path=source, field="policy.remove")
    name = _string(header.get("name", Path(source).stem), source, None, "policy.name")
    description = _string(
        header.get("description", base.description if base else ""), source, None, "policy.description"
    )
    default = header.get("default", base.default if base else "deny")
    if default not in EFFECTS:
        raise PolicyError(
            f"unknown default {default!r} (expected allow or deny)", path=source, field="policy.default"
        )
    mode = _mode(header.get("mode"), source, None, "policy.mode") or (base.mode if base else None)
    context_mode = _mode(header.get("context_mode"), source, None, "policy.context_mode") or (
        base.context_mode if base else None
    )

    taxonomy = _taxonomy(
        header.get("taxonomy"), data.get("taxonomy"), source, base.taxonomy if base else None
    )

    rules: list[Rule] = []
    seen: set[str] = set()
    raw_rules = data.get("rules", [])
    if not isinstance(raw_rules, list):
        raise PolicyError("'rules' must be an array of tables ([[rules]])", path=source, field="rules")
    for index, raw in enumerate(raw_rules):
        rule = _rule(raw, index, taxonomy, source)
        if rule.id in seen:
            raise PolicyError("duplicate rule id", path=source, rule=rule.id, field="id")
        seen.add(rule.id)
        rules.append(rule)

    transforms: list[Transform] = []
    transform_ids: set[str] = set()
    for index, raw in enumerate(_array(data.get("transforms", []), source, "transforms")):
        transform = _transform(raw, index, taxonomy, source)
        if transform.id in transform_ids:
            raise PolicyError("duplicate transform id", path=source, rule=transform.id, field="id")
        transform_ids.add(transform.id)
        transforms.append(transform)

    destinations: list[Destination] = []
    destination_ids: set[str] = set()
    for index, raw in enumerate(_array(data.get("destinations", []), source, "destinations")):
        destination = _destination(raw, index, taxonomy, source)
        if destination.id in destination_ids:
            raise PolicyError("duplicate destination id", path=source, rule=destination.id, field="id")
        destination_ids.add(destination.id)
        destinations.append(destination)

    require_tls = _keys(
        transport.get("require_tls", []),
        "category",
        taxonomy,
        source,
        None,
        "transport.require_tls",
        allow_empty=True,
    )
    extends: tuple[str, ...] = ()
    if base is not None:
        inherited_ids = {rule.id for rule in base.rules}
        for rule_id in remove:
            if rule_id not in inherited_ids:
                raise PolicyError(
                    f"no inherited rule has the id {rule_id!r}",
                    path=source,
                    rule=rule_id,
                    field="policy.remove",
                )
        dropped = set(remove)
        rules = _replace_by_id([r for r in base.rules if r.id not in dropped], rules)
        transforms = _replace_by_id(base.transforms, transforms)
        destinations = _replace_by_id(base.destinations, destinations)
        require_tls = tuple(dict.fromkeys([*base.require_tls, *require_tls]))
        extends = (_base_source(header["extends"], source), *base.extends)
    return _Parts(
        name=name,
        description=description,
        default=default,
        mode=mode,
        context_mode=context_mode,
        taxonomy=taxonomy,
        rules=rules,
        transforms=transforms,
        destinations=destinations,
        require_tls=list(require_tls),
        extends=extends,
    )


def _base_source(extends: str, source: str) -> str:
    if extends in PACKS:
        return f"pack:{extends}"
    if source.startswith("pack:") or source.startswith("<"):
        return str(Path(extends))
    return str(Path(source).parent / extends)


def _validate_semantics(policy: Policy) -> None:
    for rule in policy.rules:
        if rule.consentable:
            for purpose in rule.purposes:
                for never in NEVER_CONSENTABLE_BY_TAXONOMY.get(policy.taxonomy.name, NEVER_CONSENTABLE):
                    if _related(purpose, never):
                        raise PolicyError(
                            f"consent can never widen {never}",
                            path=policy.source,
                            rule=rule.id,
                            field="consentable",
                        )


def _taxonomy(base: Any, extra: Any, source: str, inherited: Taxonomy | None = None) -> Taxonomy:
    taxonomy = inherited or Taxonomy.builtin()
    if base is not None and base not in ("purposeguard", "fideslang"):
        raise PolicyError(
            f"unknown taxonomy {base!r} (expected purposeguard or fideslang)",
            path=source,
            field="policy.taxonomy",
        )
    if base is not None and inherited is not None and base != inherited.name:
        raise PolicyError(
            f"the policy it extends uses the {inherited.name} taxonomy, not {base}",
            path=source,
            field="policy.taxonomy",
        )
    if base == "fideslang" and inherited is None:
        from ._fideslang import fideslang_taxonomy

        taxonomy = fideslang_taxonomy()
    if extra is None:
        return taxonomy
    table = _table(extra, source, "taxonomy")
    _no_unknown_keys(table, {"categories", "purposes"}, source, None, "taxonomy")
    categories = _table(table.get("categories", {}), source, "taxonomy.categories")
    purposes = _table(table.get("purposes", {}), source, "taxonomy.purposes")
    return taxonomy.extended(categories, purposes, path=source)


def _rule(raw: Any, index: int, taxonomy: Taxonomy, source: str) -> Rule:
    if not isinstance(raw, Mapping):
        raise PolicyError(f"rule #{index + 1} must be a table", path=source, field="rules")
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not _ID_PATTERN.match(rule_id):
        raise PolicyError(
            f"rule #{index + 1} needs an id of letters, digits, '-', '_', '.' or ':' (at most 128)",
            path=source,
            rule=rule_id if isinstance(rule_id, str) else None,
            field="id",
        )
    _no_unknown_keys(raw, _RULE_KEYS, source, rule_id, None)
    for required in ("categories", "purposes", "effect"):
        if required not in raw:
            raise PolicyError("missing", path=source, rule=rule_id, field=required)
    categories = _keys(raw["categories"], "category", taxonomy, source, rule_id, "categories")
    purposes = _keys(raw["purposes"], "purpose", taxonomy, source, rule_id, "purposes")
    effect = raw["effect"]
    if effect not in EFFECTS:
        raise PolicyError(
            f"unknown effect {effect!r} (expected allow or deny)", path=source, rule=rule_id, field="effect"
        )
    consentable = raw.get("consentable", False)
    if not isinstance(consentable, bool):
        raise PolicyError("must be true or false", path=source, rule=rule_id, field="consentable")
    if consentable and effect != "deny":
        raise PolicyError(
            "only a deny rule can be consentable", path=source, rule=rule_id, field="consentable"
        )
    obligations = raw.get("obligations", [])
    if not isinstance(obligations, list) or not all(isinstance(o, str) for o in obligations):
        raise PolicyError("must be a list of strings", path=source, rule=rule_id, field="obligations")
    for obligation in obligations:
        if obligation not in OBLIGATIONS:
            raise PolicyError(
                f"unknown obligation {obligation!r} (expected {', '.join(OBLIGATIONS)})",
                path=source,
                rule=rule_id,
                field="obligations",
            )
    if obligations and effect != "allow":
        raise PolicyError("obligations belong to allow rules", path=source, rule=rule_id, field="obligations")
    mode = _mode(raw.get("mode"), source, rule_id, "mode")
    context_mode = _mode(raw.get("context_mode"), source, rule_id, "context_mode")
    description = _string(raw.get("description", ""), source, rule_id, "description")
    return Rule(
        id=rule_id,
        categories=categories,
        purposes=purposes,
        effect=effect,
        consentable=consentable,
        obligations=tuple(obligations),
        mode=mode,
        description=description,
        context_mode=context_mode,
        origin=source,
    )


def _no_modes(raw: Mapping[str, Any], kind: str, entry_id: str, source: str) -> None:
    # Checked before the unknown-key check: a mode on the wrong entry is a
    # common slip, and "unknown key" would not say where modes belong.
    for key in ("mode", "context_mode"):
        if key in raw:
            raise PolicyError(
                f"a {kind} has no {key}; modes belong to rules (or to [policy])",
                path=source,
                rule=entry_id,
                field=key,
            )


def _transform(raw: Any, index: int, taxonomy: Taxonomy, source: str) -> Transform:
    if not isinstance(raw, Mapping):
        raise PolicyError(f"transform #{index + 1} must be a table", path=source, field="transforms")
    transform_id = raw.get("id")
    if not isinstance(transform_id, str) or not _ID_PATTERN.match(transform_id):
        raise PolicyError(f"transform #{index + 1} needs an id", path=source, field="id")
    _no_modes(raw, "transform", transform_id, source)
    _no_unknown_keys(raw, _TRANSFORM_KEYS, source, transform_id, None)
    for required in ("from", "to"):
        if required not in raw:
            raise PolicyError("missing", path=source, rule=transform_id, field=required)
    from_categories = _keys(raw["from"], "category", taxonomy, source, transform_id, "from")
    to = raw["to"]
    if not isinstance(to, str):
        raise PolicyError("must be one category key", path=source, rule=transform_id, field="to")
    _known(to, "category", taxonomy, source, transform_id, "to")
    description = _string(raw.get("description", ""), source, transform_id, "description")
    return Transform(transform_id, from_categories, to, description)


def _destination(raw: Any, index: int, taxonomy: Taxonomy, source: str) -> Destination:
    if not isinstance(raw, Mapping):
        raise PolicyError(f"destination #{index + 1} must be a table", path=source, field="destinations")
    destination_id = raw.get("id")
    if not isinstance(destination_id, str) or not _ID_PATTERN.match(destination_id):
        raise PolicyError(f"destination #{index + 1} needs an id", path=source, field="id")
    _no_modes(raw, "destination", destination_id, source)
    _no_unknown_keys(raw, _DESTINATION_KEYS, source, destination_id, None)
    places: dict[str, tuple[str, ...]] = {}
    for field_name, what in (("hosts", "host names"), ("paths", "paths"), ("tables", "table names")):
        value = raw.get(field_name)
        if value is None:
            places[field_name] = ()
            continue
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, str) and v.strip() for v in value)
        ):
            raise PolicyError(
                f"must be a non-empty list of {what} or patterns",
                path=source,
                rule=destination_id,
                field=field_name,
            )
        places[field_name] = tuple(v.strip() for v in value)
    if not any(places.values()):
        raise PolicyError(
            "needs hosts, paths or tables: where the data goes",
            path=source,
            rule=destination_id,
            field="hosts",
        )
    purpose = raw.get("purpose")
    if not isinstance(purpose, str):
        raise PolicyError("must be one purpose key", path=source, rule=destination_id, field="purpose")
    _known(purpose, "purpose", taxonomy, source, destination_id, "purpose")
    description = _string(raw.get("description", ""), source, destination_id, "description")
    return Destination(
        destination_id, places["hosts"], purpose, description, places["paths"], places["tables"]
    )


def _keys(
    value: Any,
    kind: str,
    taxonomy: Taxonomy,
    source: str,
    rule: str | None,
    field_name: str,
    *,
    allow_empty: bool = False,
) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(f"must be a list of {kind} keys", path=source, rule=rule, field=field_name)
    if not value and not allow_empty:
        raise PolicyError(f"must name at least one {kind}", path=source, rule=rule, field=field_name)
    for key in value:
        _known(key, kind, taxonomy, source, rule, field_name)
    return tuple(dict.fromkeys(value))


def _known(key: str, kind: str, taxonomy: Taxonomy, source: str, rule: str | None, field_name: str) -> None:
    if not is_valid_key(key):
        raise PolicyError(
            f"malformed {kind} key {key!r} (dotted lowercase segments)",
            path=source,
            rule=rule,
            field=field_name,
        )
    known = taxonomy.categories if kind == "category" else taxonomy.purposes
    if key not in known:
        raise UnknownKeyError(key, kind, path=source, rule=rule, field=field_name)


def _mode(value: Any, source: str, rule: str | None, field_name: str) -> str | None:
    if value is None:
        return None
    if value not in MODES:
        raise PolicyError(
            f"unknown mode {value!r} (expected enforce, trace or off)",
            path=source,
            rule=rule,
            field=field_name,
        )
    return str(value)


def environment_mode(variable: str, environ: Mapping[str, str]) -> str | None:
    """The mode an environment variable sets, or None when it is unset or empty.

    A value that is not a mode is an error, never ignored: a typo in
    ``PURPOSEGUARD_MODE=trcae`` must not leave production enforcing.
    """
    value = environ.get(variable)
    if not value or not value.strip():
        return None
    mode = value.strip().lower()
    if mode not in MODES:
        raise PolicyError(
            f"environment variable {variable}={value!r} is not a mode "
            "(expected enforce, trace or off; unset it for the default)"
        )
    return mode


def effective_mode(
    rule_mode: str | None,
    configured: str | None,
    policy_mode: str | None,
    environment: str | None,
    *,
    fallback: str = "enforce",
    also_capped_by: str | None = None,
) -> str:
    """The mode a flow runs in: the first of the rule's own mode, the mode
    given to ``configure()``, the policy's, the environment's and ``fallback``
    that is set, capped by ``configured`` (and ``also_capped_by``).

    The cap is the operator's switch: ``configure(mode="trace")`` traces a
    rule that says enforce, while a rule that says trace stays in trace
    under ``configure(mode="enforce")``.

    >>> effective_mode("enforce", "trace", None, None)
    'trace'
    >>> effective_mode("trace", "enforce", None, None)
    'trace'
    >>> effective_mode(None, None, None, "off")
    'off'
    """
    mode = rule_mode or configured or policy_mode or environment or fallback
    for cap in (configured, also_capped_by):
        if cap is not None and STRICTNESS[cap] < STRICTNESS[mode]:
            mode = cap
    return mode


def _string(value: Any, source: str, rule: str | None, field_name: str) -> str:
    if not isinstance(value, str):
        raise PolicyError("must be a string", path=source, rule=rule, field=field_name)
    return value


def _table(value: Any, source: str, field_name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PolicyError("must be a table", path=source, field=field_name)
    # TOML's keys are text; a dict given to Policy.from_dict may hold others.
    for key in value:
        if type(key) is not str:
            raise PolicyError(
                f"has a key that is not text ({type(key).__name__})", path=source, field=field_name
            )
    return value


def _array(value: Any, source: str, field_name: str) -> list[Any]:
    if not isinstance(value, list):
        raise PolicyError(f"must be an array of tables ([[{field_name}]])", path=source, field=field_name)
    return value


def _no_unknown_keys(
    raw: Mapping[str, Any], allowed: set[str], source: str, rule: str | None, section: str | None
) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        name = f"{section}.{unknown[0]}" if section else unknown[0]
        raise PolicyError(
            f"unknown key (expected one of {', '.join(sorted(allowed))})",
            path=source,
            rule=rule,
            field=name,
        )
