"""Who sees what: the roles file, what each role may open and do, and personal-data rules.

Pure Python (no streamlit): the frame asks :func:`role_for` who a signed-in email is, then
:func:`page_allowed`, :func:`action_allowed` and :func:`can_see_personal_data` what that role may
see and do. :func:`suppress_small_groups` drops groups an executive must never see.

The roles file (``data/roles.toml``, or ``RELQ_ROLES``) maps emails and whole domains to roles::

    [users]
    "ana@example.com" = "analyst"

    [domains]
    "example.com" = "executive"

An exact email wins over its domain. A signed-in user who matches neither has no role and is
refused with a sentence telling them whom to ask.

An optional ``[scopes]`` section narrows an email or a domain to part of the customer base — a
regional lead sees, and is sent, only their region::

    [scopes]
    "lead.emea@example.com" = { region = "EMEA" }
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from relq.exceptions import SettingError

__all__ = [
    "ROLES",
    "ACTIONS",
    "ROLE_LABELS",
    "PERSONAL_COLUMNS",
    "MIN_GROUP_CUSTOMERS",
    "RoleMap",
    "Scope",
    "scope_for",
    "describe_scope",
    "load_roles",
    "parse_roles",
    "role_for",
    "page_allowed",
    "allowed_pages",
    "action_allowed",
    "can_see_personal_data",
    "mask_personal",
    "suppress_small_groups",
    "STAFF_DIMENSIONS",
    "TEXT_COLUMNS",
    "OWNER_SPLITS_SETTING",
    "dimensions_for",
    "refuse_small_view",
]

# Ordered from least to most access.
ROLES: tuple[str, ...] = ("executive", "cx_lead", "analyst", "admin")
ROLE_LABELS = {"executive": "Executive", "cx_lead": "CX lead", "analyst": "Analyst", "admin": "Admin"}

ACTIONS: tuple[str, ...] = (
    "import",
    "undo_import",
    "edit_instrument",
    "edit_templates",
    "view_audit",
    "export",
    "edit_themes",
    "work_cases",  # open, assign, contact and close cases for customers
    "edit_rules",  # the rules that open cases and the alert rules
    "send_digest",  # the Admin page's test digest
)
_ACTIONS_BY_ROLE: dict[str, frozenset[str]] = {
    "executive": frozenset({"export"}),
    "cx_lead": frozenset({"export", "work_cases"}),
    "analyst": frozenset(
        {
            "export",
            "import",
            "undo_import",
            "edit_instrument",
            "edit_templates",
            "edit_themes",
            "work_cases",
            "edit_rules",
        }
    ),
    "admin": frozenset(ACTIONS),
}

# Pages are named by their st.Page url_path. A page not named here is open to every role (the
# aggregate pages); the pages below are closed to the roles that may not use them. The Comment
# themes page ("themes") is open to all: executives see its aggregates (groups of 5 customers or
# more), never a comment; editing rules and running discovery is the "edit_themes" action.
DATA_WORK_PAGES: frozenset[str] = frozenset(
    {"upload", "import", "imports", "data-quality", "quality", "instrument", "mapping", "templates"}
)
ADMIN_PAGES: frozenset[str] = frozenset({"admin"})
CUSTOMER_LIST_PAGES: frozenset[str] = frozenset({"customers", "customer-lists", "accounts"})
# The Cases page is open to every role: executives see case counts there, never names.
ALERT_PAGES: frozenset[str] = frozenset({"alerts"})  # rules and their recipients' addresses
_CLOSED_PAGES: dict[str, frozenset[str]] = {
    "executive": DATA_WORK_PAGES | ADMIN_PAGES | CUSTOMER_LIST_PAGES | ALERT_PAGES,
    "cx_lead": DATA_WORK_PAGES | ADMIN_PAGES,
    "analyst": ADMIN_PAGES,
    "admin": frozenset(),
}

# Columns that name or reach a person; hidden from roles that may not see personal data.
PERSONAL_COLUMNS: frozenset[str] = frozenset(
    {"name", "email", "customer_name", "contact", "contact_name", "contact_email", "phone", "owner_email"}
)
# Free-text columns that may hold personal data (names, emails, phone numbers) inside them.
TEXT_COLUMNS: frozenset[str] = frozenset({"comment", "latest_comment"})
# Staff names are personal data too: account owners are a segment dimension only for roles that may
# see personal data, and for executives only when an admin allows it (the setting below).
STAFF_DIMENSIONS: frozenset[str] = frozenset({"owner"})
OWNER_SPLITS_SETTING = "executives_see_owner_splits"
# Methodology page: a group smaller than 5 customers is never shown to executives.
MIN_GROUP_CUSTOMERS = 5


# A scope: (dimension, allowed values) pairs, e.g. (("region", ("EMEA",)),); empty = everything.
Scope = tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True)
class RoleMap:
    """Emails and domains (lower case) → role, and → scope."""

    users: dict[str, str] = field(default_factory=dict)
    domains: dict[str, str] = field(default_factory=dict)
    scopes: dict[str, Scope] = field(default_factory=dict)

    def members(self) -> pd.DataFrame:
        """Who has which role, for the admin page: one row per email or domain."""
        rows = [{"who": k, "kind": "email", "role": v} for k, v in sorted(self.users.items())]
        rows += [{"who": f"*@{k}", "kind": "domain", "role": v} for k, v in sorted(self.domains.items())]
        return pd.DataFrame(rows, columns=["who", "kind", "role"])


def _check_role(role: object, where: str) -> str:
    if not isinstance(role, str) or role.strip().lower() not in ROLES:
        raise SettingError(f"{where}: role {role!r} is not one of {', '.join(ROLES)}.")
    return role.strip().lower()


def parse_roles(text: str, source: str = "roles file") -> RoleMap:
    """Parse the roles TOML; a wrong role or shape raises SettingError naming the entry.

    >>> m = parse_roles('[users]\\n"Ana@Example.com" = "analyst"\\n[domains]\\n"example.com" = "executive"')
    >>> role_for("ana@example.com", m), role_for("bo@example.com", m), role_for("x@other.org", m)
    ('analyst', 'executive', None)
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingError(f"{source} is not valid TOML ({exc}); see data/roles.example.toml.") from None
    unknown = set(raw) - {"users", "domains", "scopes"}
    if unknown:
        raise SettingError(
            f"{source}: unknown section(s) {', '.join(sorted(unknown))}; expected [users], [domains] "
            "and optionally [scopes]."
        )
    out: dict[str, dict[str, str]] = {"users": {}, "domains": {}}
    for section in ("users", "domains"):
        entries = raw.get(section, {})
        if not isinstance(entries, dict):
            raise SettingError(f'{source}: [{section}] must be a table of "who" = "role" lines.')
        for who, role in entries.items():
            key = who.strip().lower().removeprefix("*@").removeprefix("@")
            if section == "users" and "@" not in key:
                raise SettingError(f"{source}: [users] entry {who!r} is not an email address.")
            out[section][key] = _check_role(role, f"{source} [{section}] {who!r}")
    return RoleMap(out["users"], out["domains"], _parse_scopes(raw.get("scopes", {}), source))


def _parse_scopes(entries: object, source: str) -> dict[str, Scope]:
    if not isinstance(entries, dict):
        raise SettingError(f'{source}: [scopes] must be a table of "who" = {{ dimension = "value" }} lines.')
    scopes: dict[str, Scope] = {}
    for who, limits in entries.items():
        key = who.strip().lower().removeprefix("*@").removeprefix("@")
        if not isinstance(limits, dict) or not limits:
            raise SettingError(
                f'{source}: [scopes] {who!r} must be like {{ region = "EMEA" }} (a dimension and its value).'
            )
        pairs = []
        for dimension, values in sorted(limits.items()):
            values = [values] if isinstance(values, str) else values
            if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
                raise SettingError(
                    f"{source}: [scopes] {who!r} {dimension} must be a value or a list of values."
                )
            pairs.append((str(dimension).strip(), tuple(values)))
        scopes[key] = tuple(pairs)
    return scopes


def scope_for(email: str | None, roles: RoleMap) -> Scope:
    """The part of the customer base ``email`` is limited to: its own scope, else its domain's,
    else everything (an empty scope).

    >>> m = parse_roles('[users]\\n"lead@x.com" = "cx_lead"\\n[scopes]\\n"lead@x.com" = { region = "EMEA" }')
    >>> scope_for("Lead@x.com", m), scope_for("cfo@x.com", m)
    ((('region', ('EMEA',)),), ())
    """
    if not email or "@" not in email:
        return ()
    email = email.strip().lower()
    if email in roles.scopes:
        return roles.scopes[email]
    return roles.scopes.get(email.rsplit("@", 1)[1], ())


def describe_scope(scope: Scope) -> str:
    """``region: EMEA`` for a scope; "all customers" for none."""
    return "; ".join(f"{d.replace('_', ' ')}: {', '.join(v)}" for d, v in scope) or "all customers"


def load_roles(path: str | Path) -> RoleMap:
    """The roles file at ``path``; an empty map when it does not exist (nobody has a role)."""
    path = Path(path)
    if not path.is_file():
        return RoleMap()
    return parse_roles(path.read_text(encoding="utf-8"), str(path))


def role_for(email: str | None, roles: RoleMap) -> str | None:
    """The role of ``email``: its exact entry, else its domain's, else None."""
    if not email or "@" not in email:
        return None
    email = email.strip().lower()
    if email in roles.users:
        return roles.users[email]
    return roles.domains.get(email.rsplit("@", 1)[1])


def page_allowed(role: str | None, page_key: str) -> bool:
    """Whether ``role`` may open the page whose url_path is ``page_key``."""
    if role not in ROLES:
        return False
    return page_key.strip("/").lower() not in _CLOSED_PAGES[role]


def allowed_pages(role: str | None, page_keys: Iterable[str]) -> list[str]:
    """The subset of ``page_keys`` that ``role`` may open, in the given order.

    >>> allowed_pages("executive", ["overview", "upload", "admin", "quadrants"])
    ['overview', 'quadrants']
    """
    return [k for k in page_keys if page_allowed(role, k)]


def action_allowed(role: str | None, action: str) -> bool:
    """Whether ``role`` may perform ``action`` (one of :data:`ACTIONS`).

    >>> action_allowed("analyst", "import"), action_allowed("cx_lead", "import")
    (True, False)
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
    return role in _ACTIONS_BY_ROLE and action in _ACTIONS_BY_ROLE[role]


def can_see_personal_data(role: str | None) -> bool:
    """Names, emails and customer lists: CX leads and above; executives see aggregates only."""
    return role in ("cx_lead", "analyst", "admin")


def mask_personal(frame: pd.DataFrame, role: str | None, masker=None) -> pd.DataFrame:
    """``frame`` without its personal columns when ``role`` may not see personal data; free-text
    columns (comments) keep their text with emails, phone numbers and the names ``masker`` knows
    (relq.core.redact.NameMasker) masked.

    >>> f = pd.DataFrame({"email": ["a@b.example"], "comment": ["Mail a@b.example"], "nps": [9]})
    >>> mask_personal(f, "executive").to_dict("records")
    [{'comment': 'Mail [email]', 'nps': 9}]
    """
    if can_see_personal_data(role):
        return frame
    from relq.core.redact import NameMasker

    masker = masker or NameMasker()
    out = frame.drop(columns=[c for c in frame.columns if str(c).lower() in PERSONAL_COLUMNS])
    for column in out.columns:
        if str(column).lower() in TEXT_COLUMNS:
            out[column] = out[column].map(lambda t: t if t is None or t != t else masker.mask(t))
    return out


def dimensions_for(role: str | None, dimensions: Iterable[str], owner_splits: bool = False) -> list[str]:
    """The segment dimensions ``role`` may split or filter by: never a personal column (a contact's
    name or email imported as an extra field); account owners (staff names) only for roles that
    may see personal data, or for executives when an admin allowed owner splits.

    >>> dimensions_for("executive", ["region", "owner", "phone"]), dimensions_for("cx_lead", ["owner"])
    (['region'], ['owner'])
    """
    personal = can_see_personal_data(role)
    hidden = set() if personal else set(PERSONAL_COLUMNS)
    if not personal and not (role == "executive" and owner_splits):
        hidden |= STAFF_DIMENSIONS
    return [d for d in dimensions if str(d).lower() not in hidden]


def refuse_small_view(role: str | None, customers: int, minimum: int = MIN_GROUP_CUSTOMERS) -> bool:
    """Whether a whole view must be withheld from ``role``: executives never see a number that
    rests on fewer than ``minimum`` customers.

    >>> refuse_small_view("executive", 4), refuse_small_view("executive", 5), refuse_small_view("admin", 1)
    (True, False, False)
    """
    return role == "executive" and customers < minimum


def suppress_small_groups(
    frame: pd.DataFrame, role: str | None, n_col: str = "n", minimum: int = MIN_GROUP_CUSTOMERS
) -> tuple[pd.DataFrame, int]:
    """For executives, drop rows whose ``n_col`` (customers in the group) is below ``minimum``.

    Returns the frame and how many groups were dropped (always 0 for other roles).

    >>> f = pd.DataFrame({"region": ["EU", "US"], "n": [40, 3]})
    >>> suppress_small_groups(f, "executive")[0]["region"].tolist(), suppress_small_groups(f, "admin")[1]
    (['EU'], 0)
    """
    if role != "executive" or frame.empty:
        return frame, 0
    if n_col not in frame.columns:
        raise ValueError(f"suppress_small_groups: the frame has no {n_col!r} column of customer counts")
    counts = pd.to_numeric(frame[n_col], errors="coerce").fillna(0)
    keep = counts >= minimum
    return frame[keep], int((~keep).sum())
