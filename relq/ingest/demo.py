"""A seeded, believable demo company: customers, purchases, tickets and quarterly surveys.

Everything follows from a few latent traits per customer, so the numbers tell a coherent story:

- each customer has a latent trust, commitment and satisfaction (correlated normals, r ≈ 0.6–0.7),
  moved a little by plan, industry, region and account manager;
- slow first responses to support tickets lower satisfaction and make effort (CES) worse;
- the monthly churn hazard falls as trust and commitment rise (≈ 30% churned by the end);
- purchases come at a rate set by commitment and plan, and stop at churn;
- each account has several contacts (more on bigger plans and bigger accounts: ≈2.4 on Starter,
  ≈4.2 on Growth, ≈8 on Enterprise), each with their own address at the customer's domain; the
  customer's own email is the primary contact's. Contacts share their account's traits, with
  their own personal view on top (r ≈ 0.9 with the account);
- quarterly relationship surveys go to every contact of active customers; answers to the instrument items follow
  the latent pillars (reverse-keyed items are answered low when the pillar is high); NPS, CSAT
  and CES follow the pillars too. Trust dips in one wave (a service incident) and satisfaction
  improves slowly over the period.

The 200k-customer benchmark tier holds ≈1M survey responses, ≈5M purchases and ≈500k tickets.

The data problems analysts meet are built in on purpose: ≈1% re-submitted duplicates, ≈1.5%
straight-liners, ≈2% speeders and ≈1% responses whose email matches no customer. Their flags are
set by :func:`relq.ingest.quality.flag_responses`, the importer's own rule.

Everything is vectorised with NumPy (no Python loop over rows), so the 200k-customer benchmark
tier is generated in the same way as the 12k default.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from relq import store
from relq.core.instrument import Instrument, load_instrument, pillar_indices
from relq.core.settings import load_settings
from relq.ingest.demo_cases import demo_cases
from relq.ingest.quality import QUALITY_FLAGS, flag_responses
from relq.store.database import LoadCounts
from relq.store.schema import CUSTOMER_FIELDS, PILLARS, RESPONSE_FIELDS, TICKET_FIELDS, TRANSACTION_FIELDS

__all__ = [
    "COMMENT_THEMES",
    "DEFAULT_END",
    "CommentTheme",
    "DemoCompany",
    "generate_demo",
    "ensure_demo",
    "load_demo",
    "build_demo_streamed",
]

# A fixed end date keeps the demo identical whenever and wherever it is generated.
DEFAULT_END = date(2026, 10, 31)
DAYS_PER_MONTH = 365.25 / 12

REGIONS = ("North America", "EMEA", "APAC", "LATAM")
REGION_SHARES = (0.42, 0.32, 0.16, 0.10)
# Support works from North America and Europe: APAC and LATAM wait longer for a first answer.
REGION_FIRST_RESPONSE_HOURS = (3.0, 3.5, 9.0, 6.0)
REGION_TLDS = (
    (".com", ".com", ".us", ".io"),
    (".co.uk", ".de", ".fr", ".eu"),
    (".com.au", ".sg", ".in", ".jp"),
    (".com.br", ".mx", ".cl", ".co"),
)
OWNERS = (  # account managers, by region
    ("Sarah Mitchell", "James Carter", "Emily Rogers", "Michael Brooks", "Jessica Hayes"),
    ("Sophie Laurent", "Lukas Becker", "Oliver Bennett", "Chiara Ricci", "Anna Kowalska"),
    ("Kenji Watanabe", "Priya Nair", "Liam O'Connor"),
    ("Camila Torres", "Mateo Alvarez"),
)
INDUSTRIES = ("Software", "Manufacturing", "Retail", "Healthcare", "Financial Services", "Logistics")
INDUSTRY_SHARES = (0.24, 0.18, 0.17, 0.13, 0.14, 0.14)
INDUSTRY_WORDS = (
    ("Software", "Systems", "Labs", "Digital", "Analytics"),
    ("Manufacturing", "Industries", "Components", "Engineering", "Works"),
    ("Retail", "Stores", "Outfitters", "Market", "Goods"),
    ("Health", "Medical", "Clinics", "Care", "Diagnostics"),
    ("Capital", "Financial", "Partners", "Advisors", "Insurance"),
    ("Logistics", "Freight", "Shipping", "Transport", "Supply"),
)
PLANS = ("Starter", "Growth", "Enterprise")
PLAN_SHARES = (0.55, 0.33, 0.12)
PLAN_ANNUAL_VALUE = (3_000.0, 18_000.0, 110_000.0)  # lognormal medians
PLAN_PURCHASES_PER_MONTH = (1.45, 2.2, 3.45)
PLAN_CONTACTS = (2.4, 4.2, 8.0)  # mean surveyed contacts per account, at the plan's median value
PLAN_TICKETS_PER_MONTH = (0.17, 0.25, 0.42)
PLAN_FIRST_RESPONSE_FACTOR = (1.25, 0.85, 0.5)  # Enterprise has priority support
PLAN_CHURN_LOG_HAZARD = (0.35, 0.0, -0.55)
CHANNELS = ("email", "chat", "phone")
CHANNEL_SHARES = (0.5, 0.32, 0.18)
CHANNEL_FIRST_RESPONSE_FACTOR = (1.8, 0.25, 0.35)

BRAND_STARTS = (
    "Blue",
    "North",
    "Iron",
    "Silver",
    "Bright",
    "Red",
    "Green",
    "Stone",
    "Oak",
    "Pine",
    "Clear",
    "Swift",
    "High",
    "Sun",
    "Star",
    "Cedar",
    "River",
    "Lake",
    "Gold",
    "West",
    "East",
    "South",
    "Maple",
    "Summit",
    "Crystal",
    "Falcon",
    "Harbor",
    "Eagle",
    "Copper",
    "Granite",
    "Willow",
    "Aspen",
    "Nova",
    "Orbit",
    "Atlas",
    "Vertex",
    "Polar",
    "Coral",
    "Amber",
    "Echo",
)
BRAND_ENDS = (
    "peak",
    "field",
    "stone",
    "bridge",
    "wave",
    "point",
    "line",
    "gate",
    "ridge",
    "wood",
    "path",
    "crest",
    "light",
    "haven",
    "works",
    "view",
    "port",
    "shore",
    "vale",
    "forge",
    "spring",
    "mark",
    "way",
    "brook",
)
FIRST_NAMES = (
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Daniel",
    "Karen",
    "Lucas",
    "Emma",
    "Noah",
    "Olivia",
    "Mateo",
    "Sofia",
    "Hiroshi",
    "Yuki",
    "Arjun",
    "Ananya",
    "Wei",
    "Mei",
    "Lars",
    "Ingrid",
    "Pierre",
    "Camille",
    "Marco",
    "Giulia",
    "Diego",
    "Valentina",
    "Tomasz",
    "Katarzyna",
    "Ahmed",
    "Fatima",
    "Kwame",
    "Amara",
    "Felix",
    "Hannah",
)
LAST_NAMES = (
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Martinez",
    "Lopez",
    "Wilson",
    "Anderson",
    "Taylor",
    "Thomas",
    "Moore",
    "Martin",
    "Lee",
    "Clark",
    "Lewis",
    "Walker",
    "Schmidt",
    "Muller",
    "Dubois",
    "Rossi",
    "Silva",
    "Santos",
    "Tanaka",
    "Sato",
    "Kim",
    "Chen",
    "Wang",
    "Patel",
    "Sharma",
    "Nowak",
    "Hansen",
    "Larsen",
    "Novak",
    "Costa",
    "Fischer",
    "Weber",
    "Okafor",
    "Mensah",
    "Haddad",
    "Nguyen",
    "Murphy",
    "Kelly",
    "Evans",
    "Hughes",
)
UNKNOWN_DOMAINS = ("gmail.com", "outlook.com", "yahoo.com", "proton.me", "icloud.com")

# General remarks open a comment, or make up one that names no theme. Real remarks vary a lot,
# so they are put together from parts: no remark, and hardly any word, is a theme of its own.
PROMOTER_REMARKS = (
    "great partner",
    "really pleased",
    "excellent experience",
    "would recommend you",
    "very happy",
    "brilliant people",
    "no complaints",
    "one of our best vendors",
    "consistently impressive",
    "top notch",
    "keep it up",
    "thanks for everything",
)
PASSIVE_REMARKS = (
    "solid",
    "mostly fine",
    "does the job",
    "room to improve",
    "decent",
    "okay for now",
    "nothing special",
    "average",
    "some ups and downs",
    "meets expectations",
    "neither great nor terrible",
    "could be better",
)
DETRACTOR_REMARKS = (
    "disappointed",
    "not happy",
    "reconsidering the contract",
    "frustrating",
    "expected a lot more",
    "getting worse",
    "a letdown",
    "not what we signed up for",
    "looking at alternatives",
    "very unhappy",
    "this needs to change",
    "a poor run",
)


@dataclass(frozen=True)
class CommentTheme:
    """A theme the demo's comments talk about, at known rates: the probability that a comment
    mentions it, by the writer's NPS group (detractor, passive, promoter). A sentence about it is
    one of its subjects and one of its complaints (detractors; passives three times in five) or
    praises (promoters), so its sentences share words the way real comments on one subject do."""

    name: str
    rates: tuple[float, float, float]
    subjects: tuple[str, ...]
    complaints: tuple[str, ...]
    praise: tuple[str, ...]
    french: str | None = None
    german: str | None = None
    spanish: str | None = None


# Seven are what the shipped theme rules look for; the last three only discovery finds.
COMMENT_THEMES: tuple[CommentTheme, ...] = (
    CommentTheme(
        "delivery",
        (0.18, 0.1, 0.07),
        ("Delivery", "Our delivery", "Shipping and delivery", "The last delivery"),
        ("arrived late again", "is late more often than not", "keeps slipping by days", "came a week late"),
        ("always arrives on time", "is fast with clear tracking", "arrives early"),
        "La livraison est toujours en retard.",
        "Die Lieferung kam wieder zu spät.",
        "La entrega llegó tarde otra vez.",
    ),
    CommentTheme(
        "price",
        (0.22, 0.2, 0.04),
        ("The price", "Your price", "Pricing", "The price per seat"),
        (
            "is too high for what we use",
            "went up again without more value",
            "is hard to justify",
            "keeps rising",
        ),
        ("is fair for the value", "is fair and clear"),
        "Le prix est trop élevé pour nous.",
        "Der Preis ist zu hoch für uns.",
        "El precio es demasiado alto.",
    ),
    CommentTheme(
        "support",
        (0.2, 0.1, 0.12),
        ("Support", "The support team", "Support on chat", "Support by email"),
        (
            "takes days to answer",
            "is far too slow to respond",
            "leaves us waiting for hours",
            "rarely solves the problem",
        ),
        ("answers quickly and fixes things", "is friendly and quick", "solves problems fast"),
        "Le support répond trop lentement.",
        "Der Kundendienst antwortet zu langsam.",
        "El soporte responde muy lento.",
    ),
    CommentTheme(
        "billing",
        (0.22, 0.08, 0.03),
        ("The invoice", "Our invoice", "Every invoice", "The invoice this month"),
        (
            "has errors again",
            "charged us twice",
            "is confusing and refunds take weeks",
            "never matches the contract",
        ),
        ("is clear and correct", "is always right"),
        "La facture contient encore des erreurs.",
        "Die Rechnung ist schon wieder falsch.",
        "La factura viene mal otra vez.",
    ),
    CommentTheme(
        "product quality",
        (0.2, 0.1, 0.08),
        ("The product", "The product lately", "The product on mobile", "The latest product release"),
        (
            "has too many bugs",
            "is down too often",
            "crashes several times a week",
            "feels buggy and unstable",
        ),
        ("just works", "is stable and fast", "has been rock solid"),
        "Trop de bugs depuis la dernière version.",
        "Zu viele Fehler seit dem letzten Update.",
        "Demasiados fallos desde la última versión.",
    ),
    CommentTheme(
        "onboarding",
        (0.04, 0.08, 0.14),
        ("Onboarding", "The onboarding", "Onboarding new colleagues", "The onboarding training"),
        ("takes longer than it should", "took weeks", "was thin and confusing"),
        ("was smooth and well organised", "got us up to speed quickly", "was well paced"),
        "La prise en main a été difficile.",
        "Die Einarbeitung hat viel zu lange gedauert.",
        "La puesta en marcha fue muy lenta.",
    ),
    CommentTheme(
        "communication",
        (0.18, 0.1, 0.05),
        ("Communication", "Communication about changes", "Your communication", "Communication from the team"),
        ("comes too late", "is poor and nobody follows up", "leaves us uninformed", "is rare and vague"),
        ("is clear and timely", "keeps us well informed"),
        "Aucun suivi de nos demandes.",
        "Wir werden nie informiert.",
        "No hay seguimiento de nuestros casos.",
    ),
    CommentTheme(
        "reporting",
        (0.05, 0.08, 0.12),
        ("Reporting", "The reporting dashboards", "Reporting exports", "The monthly reporting"),
        ("is hard to read", "keeps failing on export", "lacks the numbers we need"),
        ("saves us hours every week", "gives us exactly what we need"),
    ),
    CommentTheme(
        "account manager",
        (0.04, 0.05, 0.12),
        ("Our account manager", "The account manager", "Our account management"),
        ("changed three times this year", "is hard to reach", "never visits"),
        ("really knows our business", "is proactive and helpful", "is always available"),
    ),
    CommentTheme(
        "features",
        (0.1, 0.14, 0.06),
        ("Features", "Key features", "Some features", "Mobile features"),
        ("we need are still missing", "lag behind competitors", "are missing on mobile"),
        ("keep getting better", "cover everything we need"),
    ),
)
# Slow support shows: a detractor or passive whose support is slow (standardised log first-response
# time above 0.5) complains about support more often.
SLOW_SUPPORT_RATE_FACTOR = 1.8
# Who writes in which language, by region (the rest write English). French, German and Spanish
# comments carry the themes in translation; the others are counted as not themed.
COMMENT_LANGUAGES: dict[str, tuple[tuple[str, float], ...]] = {
    "EMEA": (("fr", 0.1), ("de", 0.08), ("it", 0.03), ("nl", 0.02)),
    "LATAM": (("es", 0.25), ("pt", 0.08)),
    "APAC": (("ja", 0.04),),
    "North America": (("es", 0.02),),
}
OTHER_LANGUAGE_COMMENTS = {
    "it": ("Il servizio non è stato molto buono questo trimestre.", "Siamo contenti del lavoro del team."),
    "pt": ("O atendimento não foi muito bom neste trimestre.", "Estamos satisfeitos com a equipe."),
    "nl": ("De service was niet erg goed dit kwartaal.", "We zijn tevreden met het team."),
    "ja": ("サポートの対応がとても遅いです。", "チームの仕事に満足しています。"),
}
NO_THEME_COMMENTS = {
    "fr": "Rien de particulier à signaler.",
    "de": "Alles in Ordnung so weit.",
    "es": "Todo bien por ahora.",
}

LATENT_CORRELATION = np.array([[1.0, 0.7, 0.65], [0.7, 1.0, 0.7], [0.65, 0.7, 1.0]])  # trust, commitment, sat
SHARE_DUPLICATES = 0.01
SHARE_STRAIGHTLINERS = 0.015
SHARE_SPEEDERS = 0.012  # on top of the few naturally fast respondents
SHARE_UNMATCHED = 0.01
SHARE_SKIPPED_ITEMS = 0.03
RESPONSE_RATE = 0.40
MEDIAN_DURATION_S = 240.0


@dataclass(frozen=True)
class DemoCompany:
    customers: pd.DataFrame  # CUSTOMER_FIELDS
    transactions: pd.DataFrame  # TRANSACTION_FIELDS
    tickets: pd.DataFrame  # TICKET_FIELDS
    responses: pd.DataFrame  # RESPONSE_FIELDS + pillar indices, rq and QUALITY_FLAGS
    answers: pd.DataFrame  # long: response_id, item_id, value (answered items only)
    contacts: pd.DataFrame  # customer_id, name, email: the people surveyed at each account (not stored)
    planted_themes: pd.DataFrame  # response_id, theme: what each comment was written about (not stored)
    cases: pd.DataFrame | None = None  # the CX team's cases (relq.ingest.demo_cases)
    case_events: pd.DataFrame | None = None  # their history, by customer_id and opened_at


def generate_demo(
    customers: int = 12_000,
    seed: int = 7,
    months: int = 36,
    end: date | None = None,
    instrument: Instrument | None = None,
) -> DemoCompany:
    """Generate the demo company: same arguments, same frames, on any machine and any day.

    ``end`` is the last day with data (default :data:`DEFAULT_END`); customers are acquired over
    the ``months`` calendar months ending with it, at a growing pace.
    """
    if customers < 1:
        raise ValueError(f"customers must be at least 1, got {customers}.")
    if months < 3:
        raise ValueError(f"months must be at least 3 (one survey quarter), got {months}.")
    instrument = instrument or load_instrument()
    rng = np.random.default_rng(seed)
    end = end or DEFAULT_END
    start = (pd.Timestamp(end).to_period("M") - (months - 1)).to_timestamp().date()
    horizon = float((end + timedelta(days=1) - start).days)  # days since start; data ends before it

    people = _customers(rng, customers, start, months, horizon)
    transactions = _transactions(rng, people, start)
    tickets = _tickets(rng, people, start, horizon)
    contacts = _contacts(rng, people)
    responses, answers, planted = _surveys(rng, people, contacts, start, end, horizon, instrument)
    cases, case_events = demo_cases(people.frame, responses, seed)  # its own random stream
    return DemoCompany(
        people.frame, transactions, tickets, responses, answers, contacts.frame, planted, cases, case_events
    )


@dataclass(frozen=True)
class _People:
    """The customers frame plus the hidden traits the other tables are drawn from."""

    frame: pd.DataFrame
    latent: np.ndarray  # (n, 3): trust, commitment, satisfaction
    slowness: np.ndarray  # standardised log first-response time of the customer's support
    log_first_response: np.ndarray  # log hours, customer's typical first response
    plan: np.ndarray  # plan index
    annual_value: np.ndarray
    acquired: np.ndarray  # days since start (whole days)
    until: np.ndarray  # days since start when the customer churned, else the horizon


def _customers(rng: np.random.Generator, n: int, start: date, months: int, horizon: float) -> _People:
    month_starts = pd.date_range(start, periods=months + 1, freq="MS")
    month_offsets = (month_starts - month_starts[0]).days.to_numpy()
    growth = np.exp(np.log(3.0) / max(months - 1, 1) * np.arange(months))  # last month ≈ 3× the first
    month = rng.choice(months, size=n, p=growth / growth.sum())
    month_days = np.diff(month_offsets)[month]
    acquired = month_offsets[month] + np.floor(rng.random(n) * month_days)
    acquired = np.minimum(acquired, horizon - 1)

    region = rng.choice(len(REGIONS), size=n, p=REGION_SHARES)
    industry = rng.choice(len(INDUSTRIES), size=n, p=INDUSTRY_SHARES)
    plan = rng.choice(len(PLANS), size=n, p=PLAN_SHARES)
    owner_offsets = np.cumsum([0, *(len(names) for names in OWNERS)])[:-1]
    owner_counts = np.array([len(names) for names in OWNERS])
    owner = owner_offsets[region] + np.floor(rng.random(n) * owner_counts[region]).astype(int)
    owner_names = np.array([name for names in OWNERS for name in names], dtype=object)
    owner_effect = rng.normal(0.0, 0.2, size=len(owner_names))

    latent = rng.standard_normal((n, 3)) @ np.linalg.cholesky(LATENT_CORRELATION).T
    latent[:, 0] += owner_effect[owner] + np.array([0.0, 0.05, 0.15])[plan] + (industry == 3) * 0.15
    latent[:, 1] += np.array([-0.15, 0.05, 0.3])[plan] - (industry == 2) * 0.2
    log_first_response = np.log(
        np.array(REGION_FIRST_RESPONSE_HOURS)[region] * np.array(PLAN_FIRST_RESPONSE_FACTOR)[plan]
    ) + rng.normal(0.0, 0.35, size=n)
    slowness = (log_first_response - log_first_response.mean()) / max(log_first_response.std(), 1e-9)
    latent[:, 2] -= 0.35 * slowness

    # Monthly churn hazard: falls as trust and commitment rise; Starter churns most.
    log_hazard = (
        np.log(0.018)
        - 0.55 * latent[:, 0]
        - 0.4 * latent[:, 1]
        - 0.15 * latent[:, 2]
        + np.array(PLAN_CHURN_LOG_HAZARD)[plan]
    )
    lifetime = np.maximum(1.0, np.floor(rng.exponential(1.0, n) / np.exp(log_hazard) * DAYS_PER_MONTH))
    churned = acquired + lifetime < horizon
    until = np.where(churned, acquired + lifetime, horizon)

    annual_value = np.round(
        np.array(PLAN_ANNUAL_VALUE)[plan] * np.exp(rng.normal(0.0, 0.55, size=n) + 0.1 * latent[:, 1]), -1
    )

    first = rng.integers(0, len(FIRST_NAMES), size=n)
    last = rng.integers(0, len(LAST_NAMES), size=n)
    brand = _pick(BRAND_STARTS, rng.integers(0, len(BRAND_STARTS), n)) + _pick(
        BRAND_ENDS, rng.integers(0, len(BRAND_ENDS), n)
    )
    word_index = rng.integers(0, 5, size=n)
    industry_word = np.array([word for words in INDUSTRY_WORDS for word in words], dtype=object)[
        industry * 5 + word_index
    ]
    company = brand + " " + industry_word
    tld = np.array([t for tlds in REGION_TLDS for t in tlds], dtype=object)[
        region * 4 + rng.integers(0, 4, n)
    ]
    slug = pd.Series(brand + industry_word).str.lower()
    # Two customers may share a company name, never a domain: later ones get a number.
    repeat = pd.DataFrame({"slug": slug, "tld": tld}).groupby(["slug", "tld"], sort=False).cumcount()
    domain = (slug + repeat.where(repeat > 0).astype("Int64").astype(str).replace("<NA>", "") + tld).to_numpy(
        object
    )
    email = (
        _pick(tuple(name.lower() for name in FIRST_NAMES), first)
        + "."
        + _pick(tuple(name.lower() for name in LAST_NAMES), last)
        + "@"
        + domain
    )
    external = rng.random(n) < 0.6
    external_ref = np.where(external, _ids("HS-", rng.integers(1_000_000, 10_000_000, n), 7), None)

    frame = pd.DataFrame(
        {
            "customer_id": _ids("C", np.arange(1, n + 1), 6),
            "external_ref": external_ref,
            "name": _pick(FIRST_NAMES, first) + " " + _pick(LAST_NAMES, last),
            "email": email,
            "company": company,
            "region": _pick(REGIONS, region),
            "industry": _pick(INDUSTRIES, industry),
            "plan": _pick(PLANS, plan),
            "owner": owner_names[owner],
            "acquired_at": _datetimes(start, acquired),
            "churned_at": _datetimes(start, np.where(churned, until, np.nan)),
            "annual_value": annual_value,
        }
    )
    return _People(
        frame[list(CUSTOMER_FIELDS)],
        latent,
        slowness,
        log_first_response,
        plan,
        annual_value,
        acquired,
        until,
    )


def _transactions(rng: np.random.Generator, people: _People, start: date) -> pd.DataFrame:
    """A first purchase on the acquisition day, then a Poisson stream until churn or the end."""
    rate = np.array(PLAN_PURCHASES_PER_MONTH)[people.plan] * np.exp(0.35 * people.latent[:, 1] - 0.06)
    span = people.until - people.acquired
    count = 1 + rng.poisson(rate * span / DAYS_PER_MONTH)
    who = np.repeat(np.arange(len(count)), count)
    is_first = np.zeros(len(who), dtype=bool)
    is_first[np.cumsum(count) - count] = True
    # Business hours on the first day; anywhere in the customer's active span afterwards.
    offset = np.where(is_first, rng.uniform(8 / 24, 18 / 24, len(who)), rng.random(len(who)) * span[who])
    at = people.acquired[who] + np.minimum(offset, span[who] - 1 / 86400)
    amount = people.annual_value[who] / (12 * rate[who]) * rng.lognormal(-0.18, 0.6, len(who))
    order = np.argsort(at, kind="stable")
    return pd.DataFrame(
        {
            "transaction_id": _ids("T", np.arange(1, len(who) + 1), 8),
            "customer_id": people.frame["customer_id"].to_numpy(object)[who[order]],
            "occurred_at": _datetimes(start, at[order]),
            "amount": np.round(np.maximum(amount[order], 1.0), 2),
        }
    )[list(TRANSACTION_FIELDS)]


def _tickets(rng: np.random.Generator, people: _People, start: date, horizon: float) -> pd.DataFrame:
    span = people.until - people.acquired
    rate = np.array(PLAN_TICKETS_PER_MONTH)[people.plan] * np.exp(-0.15 * people.latent[:, 2])
    count = rng.poisson(rate * span / DAYS_PER_MONTH)
    who = np.repeat(np.arange(len(count)), count)
    m = len(who)
    opened = people.acquired[who] + rng.random(m) * span[who]
    channel = rng.choice(len(CHANNELS), size=m, p=CHANNEL_SHARES)
    first_response_hours = np.exp(
        people.log_first_response[who]
        + np.log(np.array(CHANNEL_FIRST_RESPONSE_FACTOR))[channel]
        + rng.normal(0.0, 0.7, m)
    )
    first_response = opened + first_response_hours / 24
    resolved = first_response + rng.lognormal(np.log(20.0), 1.0, m) / 24
    stuck = rng.random(m) < 0.03  # waiting on the customer or forgotten
    unresolved = stuck | (resolved >= horizon)
    status = np.where(unresolved, np.where(rng.random(m) < 0.4, "pending", "open"), "solved").astype(object)
    order = np.argsort(opened, kind="stable")
    return pd.DataFrame(
        {
            "ticket_id": _ids("K", np.arange(1, m + 1), 7),
            "customer_id": people.frame["customer_id"].to_numpy(object)[who[order]],
            "opened_at": _datetimes(start, opened[order]),
            "first_response_at": _datetimes(
                start, np.where(first_response < horizon, first_response, np.nan)[order]
            ),
            "resolved_at": _datetimes(start, np.where(unresolved, np.nan, resolved)[order]),
            "channel": _pick(CHANNELS, channel[order]),
            "status": status[order],
        }
    )[list(TICKET_FIELDS)]


def _waves(start: date, end: date, horizon: float) -> tuple[list[str], np.ndarray]:
    """Quarterly waves sent on the 8th of the quarter's middle month, when fully inside the data."""
    names, sends = [], []
    for quarter in pd.period_range(start, end, freq="Q"):
        send = (quarter.start_time + pd.DateOffset(months=1, days=7)).date()
        day = float((send - start).days)
        if day >= 0 and day + 21 < horizon:
            names.append(f"{quarter.year}-Q{quarter.quarter}")
            sends.append(day)
    return names, np.array(sends, dtype=float)


@dataclass(frozen=True)
class _Contacts:
    frame: pd.DataFrame  # customer_id, name, email
    account: np.ndarray  # index of the contact's customer
    latent: np.ndarray  # (m, 3): the contact's own trust, commitment, satisfaction


def _contacts(rng: np.random.Generator, people: _People) -> _Contacts:
    """The people surveyed at each account: the primary contact (the customer's email) and colleagues."""
    n = len(people.plan)
    size = (people.annual_value / np.array(PLAN_ANNUAL_VALUE)[people.plan]) ** 0.3
    count = 1 + rng.poisson((np.array(PLAN_CONTACTS)[people.plan] - 1) * size)
    account = np.repeat(np.arange(n), count)
    primary = np.zeros(len(account), dtype=bool)
    primary[np.cumsum(count) - count] = True
    m = len(account)
    first = rng.integers(0, len(FIRST_NAMES), m)
    last = rng.integers(0, len(LAST_NAMES), m)
    frame = people.frame
    domain = frame["email"].str.split("@", n=1).str[1].to_numpy(object)[account]
    local = (
        _pick(tuple(name.lower() for name in FIRST_NAMES), first)
        + "."
        + _pick(tuple(name.lower() for name in LAST_NAMES), last)
    )
    # Namesakes at one account get a number; the primary contact keeps the customer's own address.
    taken = pd.Series(np.where(primary, frame["email"].to_numpy(object)[account], local + "@" + domain))
    repeat = taken.groupby(taken, sort=False).cumcount().to_numpy()
    email = np.where(repeat > 0, local + (repeat + 1).astype(str).astype(object) + "@" + domain, taken)
    name = np.where(
        primary,
        frame["name"].to_numpy(object)[account],
        _pick(FIRST_NAMES, first) + " " + _pick(LAST_NAMES, last),
    )
    # Colleagues share their account's relationship, each with a personal view on top.
    own = rng.standard_normal((m, 3)) @ np.linalg.cholesky(LATENT_CORRELATION).T
    latent = np.sqrt(0.8) * people.latent[account] + np.sqrt(0.2) * own
    contacts = pd.DataFrame(
        {"customer_id": frame["customer_id"].to_numpy(object)[account], "name": name, "email": email}
    )
    return _Contacts(contacts, account, latent)


def _surveys(
    rng: np.random.Generator,
    people: _People,
    contacts: _Contacts,
    start: date,
    end: date,
    horizon: float,
    instrument: Instrument,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    wave_names, sends = _waves(start, end, horizon)
    if not wave_names:
        raise ValueError("The period holds no complete survey quarter; ask for more months.")
    n_waves = len(wave_names)

    # Every contact of an active customer (acquired at least two weeks before the send) gets
    # the survey; committed people answer a little more often.
    account = contacts.account
    eligible = (people.acquired[account, None] <= sends[None, :] - 14) & (
        people.until[account, None] > sends[None, :]
    )
    logit = np.log(RESPONSE_RATE / (1 - RESPONSE_RATE)) + 0.25 * contacts.latent[:, 1]
    answered = eligible & (rng.random(eligible.shape) < 1 / (1 + np.exp(-logit[:, None])))
    person, wave = np.nonzero(answered)
    who = account[person]
    n_matched = len(who)

    # About 1% come from people whose email matches no customer: fresh traits, no support history.
    n_unknown = int(round(SHARE_UNMATCHED * n_matched))
    unknown_latent = rng.standard_normal((n_unknown, 3)) @ np.linalg.cholesky(LATENT_CORRELATION).T
    state = np.vstack([contacts.latent[person], unknown_latent])
    slowness = np.concatenate([people.slowness[who], np.zeros(n_unknown)])
    wave = np.concatenate([wave, rng.choice(wave, n_unknown)])  # same timing as everyone
    n = len(wave)

    # Satisfaction improves over the period; trust dips after an incident two thirds through.
    progress = np.arange(n_waves) / max(n_waves - 1, 1)
    incident = np.zeros(n_waves)
    incident[min(n_waves - 1, (2 * n_waves) // 3)] = -0.45
    if (2 * n_waves) // 3 + 1 < n_waves:
        incident[(2 * n_waves) // 3 + 1] = -0.2
    # This quarter's mood moves all three answers together (a halo), plus pillar-specific news.
    state = state + rng.normal(0.0, 0.35, (n, 1)) + rng.normal(0.0, 0.25, (n, 3))
    state[:, 0] += incident[wave]
    state[:, 2] += 0.3 * progress[wave] - 0.15 + 0.5 * incident[wave]

    submitted = (
        sends[wave] + np.minimum(np.floor(rng.exponential(4.0, n)), 20) + rng.uniform(7 / 24, 20 / 24, n)
    )
    submitted = np.minimum(submitted, horizon - 1 / 86400)

    items = instrument.items
    pillar_of = np.array([PILLARS.index(item.pillar) for item in items])
    reverse = np.array([item.reverse for item in items])
    lo, hi = instrument.scale_min, instrument.scale_max
    centre = lo + (hi - lo) * np.array([0.66, 0.6, 0.68])[pillar_of]
    loading = np.where(reverse, 0.85, 1.05) * (hi - lo) / 6
    noise = np.where(reverse, 1.05, 0.8) * (hi - lo) / 6
    signed = np.where(reverse, -1.0, 1.0)
    values = centre + signed * (loading * state[:, pillar_of] + noise * rng.standard_normal((n, len(items))))
    values = np.clip(np.round(values), lo, hi)

    scores = _scores(rng, state, slowness)
    duration = np.round(rng.lognormal(np.log(MEDIAN_DURATION_S), 0.3, n), 1)

    # Inattentive respondents: speeders rush (and answer at random), straight-liners tick one column.
    speeder = rng.random(n) < SHARE_SPEEDERS
    duration[speeder] = np.round(rng.uniform(35.0, 0.45 * MEDIAN_DURATION_S, speeder.sum()), 1)
    values[speeder] = rng.integers(int(lo), int(hi) + 1, (speeder.sum(), len(items)))
    liner = ~speeder & (rng.random(n) < SHARE_STRAIGHTLINERS)
    line_value = rng.choice(np.arange(lo, hi + 1), size=liner.sum(), p=_straightline_shares(lo, hi))
    values[liner] = line_value[:, None]
    skipped = (rng.random(values.shape) < SHARE_SKIPPED_ITEMS) & ~liner[:, None]
    values[skipped] = np.nan

    customer_id = np.concatenate(
        [people.frame["customer_id"].to_numpy(object)[who], np.full(n_unknown, None, dtype=object)]
    )
    email = np.concatenate(
        [contacts.frame["email"].to_numpy(object)[person], _unknown_emails(rng, n_unknown, contacts.frame)]
    )
    region = np.concatenate(
        [people.frame["region"].to_numpy(object)[who], np.full(n_unknown, "North America", dtype=object)]
    )
    # Comments draw from a generator of their own, so what they say can change without moving
    # any other number of the demo.
    comment, planted = _comments(
        np.random.default_rng(rng.integers(0, 2**63)), scores["nps"], slowness, region
    )

    # About 1% re-submit the same form a few minutes later (a double click, a second tab).
    copy = np.flatnonzero(rng.random(n) < SHARE_DUPLICATES)
    take = np.concatenate([np.arange(n), copy])
    submitted = np.concatenate([submitted, submitted[copy] + rng.uniform(2, 30, len(copy)) / 1440])
    submitted = np.minimum(submitted, horizon - 1 / 86400)
    duration = np.concatenate(
        [duration, np.round(rng.lognormal(np.log(MEDIAN_DURATION_S), 0.3, len(copy)), 1)]
    )
    order = np.lexsort((take, submitted))
    take, submitted, duration = take[order], submitted[order], duration[order]

    response_id = _ids("R", np.arange(1, len(take) + 1), 7)
    responses = pd.DataFrame(
        {
            "response_id": response_id,
            "customer_id": customer_id[take],
            "email": email[take],
            "submitted_at": _datetimes(start, submitted),
            "wave": np.array(wave_names, dtype=object)[wave[take]],
            "duration": duration,
            "nps": scores["nps"][take],
            "csat": scores["csat"][take],
            "ces": scores["ces"][take],
            "comment": comment[take],
        }
    )
    wide = pd.DataFrame(values[take], columns=instrument.item_ids)
    responses = pd.concat([responses, pillar_indices(wide, instrument)], axis=1)
    responses = pd.concat([responses, flag_responses(responses, wide, instrument)], axis=1)
    responses = responses[[*RESPONSE_FIELDS, *PILLARS, "rq", *QUALITY_FLAGS]]

    block = values[take]
    kept = ~np.isnan(block).ravel()
    answers = pd.DataFrame(
        {
            "response_id": np.repeat(response_id, len(items))[kept],
            "item_id": np.tile(np.array(instrument.item_ids, dtype=object), len(take))[kept],
            "value": block.ravel()[kept],
        }
    )
    rows, themes = np.nonzero(planted[take])
    planted_themes = pd.DataFrame(
        {
            "response_id": response_id[rows],
            "theme": np.array([t.name for t in COMMENT_THEMES], dtype=object)[themes],
        }
    )
    return responses, answers, planted_themes


def _scores(rng: np.random.Generator, state: np.ndarray, slowness: np.ndarray) -> dict[str, np.ndarray]:
    """NPS mostly from satisfaction and commitment; CSAT from satisfaction; CES from slow support."""
    n = len(state)
    trust, commitment, satisfaction = state.T
    drive = 0.5 * satisfaction + 0.35 * commitment + 0.15 * trust + rng.normal(0.0, 0.45, n)
    if n:
        drive = (drive - drive.mean()) / max(drive.std(), 1e-9)
    nps = np.clip(np.round(8.2 + 1.75 * drive), 0, 10).astype(np.int64)
    csat = np.clip(np.round(4.05 + 0.8 * satisfaction + rng.normal(0.0, 0.55, n)), 1, 5).astype(np.int64)
    ces = np.clip(
        np.round(3.0 - 0.55 * satisfaction + 0.6 * slowness + rng.normal(0.0, 0.9, n)), 1, 7
    ).astype(np.int64)
    return {"nps": nps, "csat": csat, "ces": ces}


def _straightline_shares(lo: float, hi: float) -> np.ndarray:
    """Straight-liners mostly tick the top or the middle of the scale."""
    points = np.arange(lo, hi + 1)
    weights = np.where(points == hi, 4.0, np.where(points == np.round((lo + hi) / 2), 2.0, 0.5))
    weights[points >= hi - 1] += 1.0
    return weights / weights.sum()


def _comments(
    rng: np.random.Generator, nps: np.ndarray, slowness: np.ndarray, region: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A comment on ≈30% of responses (detractors write more often). Each comment mentions each
    of :data:`COMMENT_THEMES` with its rate for the writer's NPS group (support more often when
    support is slow), after a general remark one time in three; some writers use their own language
    (:data:`COMMENT_LANGUAGES`). Returns the comments and which themes each one was given
    (n × themes, all false for a response without a comment or in a language no rule covers)."""
    n = len(nps)
    promoter, detractor = nps >= 9, nps <= 6
    group = np.where(detractor, 0, np.where(promoter, 2, 1))
    writes = rng.random(n) < np.where(detractor, 0.4, np.where(promoter, 0.3, 0.24))

    language = np.full(n, "en", dtype=object)
    draw = rng.random(n)
    for name, shares in COMMENT_LANGUAGES.items():
        at, edge = region == name, 0.0
        for code, share in shares:
            language[at & (draw >= edge) & (draw < edge + share)] = code
            edge += share

    def pick(options: tuple[str, ...]) -> np.ndarray:
        return _pick(options, rng.integers(0, len(options), n))

    planted = np.zeros((n, len(COMMENT_THEMES)), dtype=bool)
    text = np.full(n, "", dtype=object)
    for j, theme in enumerate(COMMENT_THEMES):
        rate = np.array(theme.rates)[group]
        if theme.name == "support":
            slow = (slowness > 0.5) & ~promoter
            rate = np.where(slow, np.minimum(1.0, rate * SLOW_SUPPORT_RATE_FACTOR), rate)
        praising = promoter | (~detractor & (rng.random(n) < 0.4))
        predicate = np.where(praising, pick(theme.praise), pick(theme.complaints))
        sentence = pick(theme.subjects) + " " + predicate + "."
        writable = language == "en"
        for code, translated in (("fr", theme.french), ("de", theme.german), ("es", theme.spanish)):
            if translated:
                sentence = np.where(language == code, translated, sentence)
                writable |= language == code
        planted[:, j] = writes & writable & (rng.random(n) < rate)
        text = np.where(planted[:, j], text + " " + sentence, text)

    remark = np.where(
        promoter,
        pick(PROMOTER_REMARKS),
        np.where(detractor, pick(DETRACTOR_REMARKS), pick(PASSIVE_REMARKS)),
    )
    opener = np.char.capitalize(remark.astype(str)).astype(object) + "."
    english = language == "en"
    with_opener = english & ((rng.random(n) < 0.35) | (text == ""))
    text = np.where(with_opener, opener + text, np.char.strip(text.astype(str)).astype(object))
    for code, fallback in NO_THEME_COMMENTS.items():
        text = np.where((language == code) & (text == ""), fallback, text)
    for code, options in OTHER_LANGUAGE_COMMENTS.items():
        text = np.where(language == code, _pick(options, (nps >= 9).astype(int)), text)
    return np.where(writes, text, None).astype(object), planted


def _unknown_emails(rng: np.random.Generator, n: int, contacts: pd.DataFrame) -> np.ndarray:
    """People no customer record knows: private addresses, or colleagues the CRM never saw."""
    first = _pick(tuple(name.lower() for name in FIRST_NAMES), rng.integers(0, len(FIRST_NAMES), n))
    last = _pick(tuple(name.lower() for name in LAST_NAMES), rng.integers(0, len(LAST_NAMES), n))
    number = rng.integers(1, 100, n).astype(str).astype(object)
    domain = _pick(UNKNOWN_DOMAINS, rng.integers(0, len(UNKNOWN_DOMAINS), n))
    email = first + "." + last + number + "@" + domain
    # A private-mail address never equals a customer's company address, but keep the promise explicit.
    clash = pd.Series(email).isin(contacts["email"]).to_numpy()
    email[clash] = email[clash] + ".invalid"
    return email


def _pick(options: tuple[str, ...], index: np.ndarray) -> np.ndarray:
    return np.array(options, dtype=object)[index]


def _ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    if len(numbers) == 0:
        return np.array([], dtype=object)
    digits = np.strings.zfill(np.asarray(numbers).astype(np.str_), width)
    return np.strings.add(prefix, digits).astype(object)


def _datetimes(start: date, days: np.ndarray) -> np.ndarray:
    """Days since ``start`` (NaN → NaT) as datetime64[ns], to the second."""
    days = np.asarray(days, dtype=float)
    seconds = np.round(np.nan_to_num(days, nan=0.0) * 86400).astype(np.int64)
    out = np.datetime64(start, "s") + seconds.astype("timedelta64[s]")
    out = out.astype("datetime64[ns]")
    out[np.isnan(days)] = np.datetime64("NaT")
    return out


def ensure_demo(engine: Engine, customers: int | None = None) -> bool:
    """On first start (an empty store), build and load the demo company. True when it did."""
    if store.has_data(engine):
        return False
    load_demo(engine, generate_demo(customers=customers or load_settings().demo_customers))
    return True


def load_demo(engine: Engine, company: DemoCompany) -> LoadCounts:
    """Replace any demo data with ``company`` (one transaction), then read its comments' themes."""
    from relq.ingest.themes import refresh_themes

    counts = store.load_demo(engine, company)
    refresh_themes(engine)
    return counts


# Ids of the demo's frames: prefix and the width of the number, as _ids writes them.
_ID_FORMATS = {
    "customer_id": ("C", 6),
    "transaction_id": ("T", 8),
    "ticket_id": ("K", 7),
    "response_id": ("R", 7),
}


def _renumbered(company: DemoCompany, offsets: dict[str, int]) -> DemoCompany:
    """``company`` with every id moved up by ``offsets`` (a later chunk of a streamed build)."""

    def moved(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.copy()
        for column in set(_ID_FORMATS) & set(out.columns):
            prefix, width = _ID_FORMATS[column]
            present = out[column].notna()
            numbers = out.loc[present, column].str.slice(len(prefix)).astype(np.int64) + offsets[column]
            out.loc[present, column] = _ids(prefix, numbers.to_numpy(), width)
        return out

    return DemoCompany(
        *(
            moved(frame)
            for frame in (
                company.customers,
                company.transactions,
                company.tickets,
                company.responses,
                company.answers,
                company.contacts,
                company.planted_themes,
            )
        )
    )


def build_demo_streamed(engine: Engine, customers: int, seed: int = 7, chunk: int = 250_000, progress=None):
    """Build a demo company of any size on disk, ``chunk`` customers at a time.

    Each chunk is generated with its own seed and appended in its own transaction, so memory stays
    that of one chunk (the 2M-customer huge tier fits this 24 GB machine). A company of at most
    ``chunk`` customers is exactly :func:`generate_demo`'s, loaded in one transaction. A build
    interrupted halfway leaves a partial demo; building again replaces it whole.
    """
    if customers <= chunk:
        return load_demo(engine, generate_demo(customers=customers, seed=seed))
    store.create_schema(engine)
    with store.import_transaction(engine, "Building the demo company") as conn:
        import_id = store.start_demo(conn, rows=0, label=f"demo-{customers}-streamed")
    offsets = dict.fromkeys(_ID_FORMATS, 0)
    totals = np.zeros(5, dtype=np.int64)
    done = 0
    for number, size in enumerate([chunk] * (customers // chunk) + [customers % chunk]):
        if size == 0:
            continue
        part = _renumbered(generate_demo(customers=size, seed=seed * 1_000 + number), offsets)
        with store.import_transaction(engine, "Building the demo company") as conn:
            counts = store.insert_demo(conn, import_id, part)
        totals += np.array(astuple(counts)[1:])
        for column, frame in (
            ("customer_id", part.customers),
            ("transaction_id", part.transactions),
            ("ticket_id", part.tickets),
            ("response_id", part.responses),
        ):
            offsets[column] += len(frame)
        done += size
        if progress:
            progress(done, customers)
    with engine.begin() as conn:
        conn.execute(
            sa.update(store.schema.imports)
            .where(store.schema.imports.c.import_id == import_id)
            .values(rows_total=int(totals[3]), rows_imported=int(totals[3]))
        )
        store.refresh_derived(conn)
        store.note_data_change(conn, "demo")
    from relq.ingest.themes import refresh_themes

    refresh_themes(engine)
    return LoadCounts(import_id, *map(int, totals))
