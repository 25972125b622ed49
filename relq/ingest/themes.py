"""Comment themes, derived from the stored comments like the pillar indices are derived from the
answers: rules an analyst can read and edit, themes discovered in the comments, and the stored
assignments (``comment_themes``) that every page and the theme filter read.

Why here, in ingest: themes are refreshed after every survey import (``write_import`` calls
:func:`refresh_themes` once its transaction has committed), so the code that reads comments sits
with the importer; the statistics of each theme are in :mod:`relq.analyses.themes`.

**Rules.** A theme is a name, phrases and exclusions. A phrase is matched in the comment with
accents and case folded (:func:`relq.ingest.comments.fold`) at word boundaries: ``price`` finds
"Price" and "prices" not at all, ``price*`` finds "price", "prices" and "pricing"; words may be
separated by spaces or hyphens ("follow up" finds "follow-up"). An entry written ``/…/`` is a
regular expression read on the folded text. An exclusion is written the same way; the text it
matches is blanked before the phrases are looked for ("priceless" is not about price). A rule is
refused with a sentence when it is empty, when its name is taken, or when a regular expression
could run away (a repetition inside a repetition, alternatives inside a repetition,
back-references, look-arounds) or matches an empty text. Rules are versioned in ``theme_rules``.

**Discovery.** Each comment is cut into sentences (a comment often speaks of several things).
TF-IDF over their words (English, French, German and Spanish stop words left out; sublinear term
frequency, l2 norm) and non-negative matrix factorisation (scikit-learn's NMF, NNDSVDa start,
seeded) on the sentences of a seeded sample of at most 50,000 comments give k themes, each named
by its top words. Every comment is then assigned in batches of 50,000: a theme that explains at
least a fifth of one of its sentences is one of its themes (:func:`assign`). The vocabulary, idf
and components are stored as numbers, so comments imported later are assigned to the same
themes; discovery runs anew when an analyst asks, or on its own when the comments to read
outnumber those it saw. Nothing is downloaded.

**Languages.** Comments in a language other than English, French, German or Spanish are counted
as not themed (:func:`relq.ingest.comments.languages`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from relq.exceptions import RelqError
from relq.ingest.comments import COVERED_LANGUAGES, STOP_WORDS, fold, fold_series, languages, sentiment
from relq.ingest.comments import folded_with_positions as _folded_with_positions
from relq.store import bulk_insert, schema, serialise_imports
from relq.store import themes as stored

__all__ = [
    "BATCH",
    "DEFAULT_K",
    "DEFAULT_SEED",
    "MAX_SAMPLE",
    "STARTER_RULES",
    "CompiledRule",
    "Discovery",
    "RefreshSummary",
    "ThemeRule",
    "ThemeRuleError",
    "assign",
    "compile_rule",
    "compiled_themes",
    "delete_rule",
    "discover",
    "highlight",
    "promote",
    "refresh_themes",
    "retag_rules",
    "rules_in_force",
    "save_rule",
    "tag",
    "validate_rule",
]

R = schema.survey_responses
F = schema.comment_facts
T = schema.comment_themes

DEFAULT_K = 12
DEFAULT_SEED = 7
MAX_SAMPLE = 50_000
BATCH = 50_000
MAX_PATTERN = 200
EXPLAINED = 0.2  # a discovered theme is assigned when it explains at least this much of a sentence


class ThemeRuleError(RelqError):
    """A theme rule that cannot be used as written (the sentence says why and what to do)."""


@dataclass(frozen=True)
class ThemeRule:
    """A theme: its name, the phrases that mark it and the exclusions that do not."""

    name: str
    phrases: tuple[str, ...]
    exclusions: tuple[str, ...] = ()
    source: str = "analyst"


STARTER_RULES: tuple[ThemeRule, ...] = (
    ThemeRule(
        "Delivery",
        (
            "deliver*",
            "shipping",
            "shipment*",
            "shipped",
            "courier*",
            "tracking",
            "dispatch*",
            "arrive* late",
            "late arrival*",
            "livraison*",
            "livre",
            "lieferung*",
            "geliefert",
            "versand",
            "entrega*",
            "envio*",
        ),
        ("deliverable*",),
        "starter",
    ),
    ThemeRule(
        "Price",
        (
            "price*",
            "pricing",
            "expensive",
            "overpriced",
            "cost*",
            "value for money",
            "cheap*",
            "prix",
            "cher",
            "chere",
            "tarif*",
            "preis*",
            "teuer",
            "precio*",
            "caro",
        ),
        ("priceless",),
        "starter",
    ),
    ThemeRule(
        "Support",
        (
            "support",
            "help desk",
            "helpdesk",
            "ticket*",
            "customer service",
            "service desk",
            "chat",
            "response time*",
            "first answer",
            "assistance",
            "soporte",
            "asistencia",
            "kundendienst",
            "kundenservice",
            "service client",
        ),
        (),
        "starter",
    ),
    ThemeRule(
        "Billing",
        (
            "bill",
            "bills",
            "billing",
            "billed",
            "invoice*",
            "charged",
            "double charge*",
            "overcharg*",
            "refund*",
            "payment*",
            "facture*",
            "facturation",
            "rechnung*",
            "abrechnung*",
            "factura*",
            "cobro*",
        ),
        ("bill of materials",),
        "starter",
    ),
    ThemeRule(
        "Product quality",
        (
            "bug*",
            "buggy",
            "crash*",
            "broken",
            "defect*",
            "glitch*",
            "outage*",
            "downtime",
            "is down",
            "doesn't work",
            "does not work",
            "not working",
            "just works",
            "rock solid",
            "unstable",
            "stable",
            "unreliable",
            "reliab*",
            "quality",
            "qualite",
            "qualitat",
            "calidad",
            "fehler*",
            "fallo*",
            "panne*",
        ),
        (),
        "starter",
    ),
    ThemeRule(
        "Onboarding",
        (
            "onboard*",
            "getting started",
            "set up",
            "setup",
            "implementation",
            "training*",
            "learning curve",
            "mise en place",
            "prise en main",
            "einarbeitung",
            "einfuhrung",
            "implementacion",
            "puesta en marcha",
            "capacitacion",
        ),
        (),
        "starter",
    ),
    ThemeRule(
        "Communication",
        (
            "communicat*",
            "follow* up",
            "kept informed",
            "keep* us informed",
            "keep* us posted",
            "no one called",
            "nobody called",
            "hear about",
            "never told",
            "newsletter*",
            "suivi",
            "kommunikation",
            "informiert",
            "comunicacion",
            "seguimiento",
        ),
        (),
        "starter",
    ),
)


# --------------------------------------------------------------------------- rules: syntax


@dataclass(frozen=True)
class CompiledRule:
    """A rule ready to read folded comments: one pattern for its phrases, one for its exclusions,
    and the word lookups that decide most comments without running either (:func:`tag`)."""

    name: str
    include: re.Pattern
    exclude: re.Pattern | None = None
    source: str = "rule"
    words: frozenset[str] = frozenset()  # one-word phrases
    prefixes: tuple[str, ...] = ()  # one-word phrases ending with *
    cues: tuple[tuple[frozenset[str], tuple[str, ...]], ...] = ()  # the first word of the other phrases
    always: bool = False  # a regular expression: no word says it cannot match
    exclusion_cues: tuple[tuple[frozenset[str], tuple[str, ...]], ...] = ()
    exclusion_always: bool = False


_EDGE_BEFORE = r"(?<![a-z0-9])"
_EDGE_AFTER = r"(?![a-z0-9])"


def _is_regex(entry: str) -> bool:
    return len(entry) >= 2 and entry.startswith("/") and entry.endswith("/")


def _phrase_pattern(phrase: str) -> str:
    """A plain phrase as a regular expression on folded text (word boundaries, ``*`` wildcard)."""
    folded = fold(phrase).strip()
    tokens = [t for t in re.split(r"[\s\-]+", folded) if t]
    parts = [re.escape(t).replace(r"\*", "[a-z0-9]*") for t in tokens]
    return _EDGE_BEFORE + r"[\s\-]+".join(parts) + _EDGE_AFTER


def _runaway(pattern: str) -> str | None:
    """Why ``pattern`` could run away (or use a construct RelQ does not run), else None."""
    from re import _constants as c
    from re import _parser

    tree = _parser.parse(pattern)

    def repeats(items) -> bool:
        for op, av in items:
            if op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT) and av[1] > 1:
                return True
            if any(repeats(sub) for sub in _children(op, av)):
                return True
        return False

    def branches(items) -> bool:
        for op, av in items:
            if op == c.BRANCH or any(branches(sub) for sub in _children(op, av)):
                return True
        return False

    def _children(op, av) -> list:
        if op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
            return [av[2]]
        if op == c.SUBPATTERN:
            return [av[-1]]
        if op == c.ATOMIC_GROUP:
            return [av]
        if op == c.BRANCH:
            return list(av[1])
        return []

    def walk(items) -> str | None:
        for op, av in items:
            if op in (c.GROUPREF, c.GROUPREF_EXISTS):
                return "it uses a back-reference"
            if op in (c.ASSERT, c.ASSERT_NOT):
                return "it uses a look-ahead or look-behind"
            if op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT) and av[1] > 1:
                if repeats(av[2]):
                    return "it repeats a repetition (like (a+)+), which can take forever on some comments"
                if branches(av[2]):
                    return "it repeats alternatives (like (a|ab)*), which can take forever on some comments"
            for sub in _children(op, av):
                found = walk(sub)
                if found:
                    return found
        return None

    return walk(tree)


def _entry_pattern(entry: str, theme: str, role: str) -> str:
    """The regular expression of one phrase or exclusion; a sentence when it cannot be used."""
    if _is_regex(entry):
        source = entry[1:-1]
        where = f"The {role} {entry} of theme {theme!r}"
        if not source.strip():
            raise ThemeRuleError(
                f"{where} is empty; write a phrase or a regular expression between the slashes."
            )
        if len(source) > MAX_PATTERN:
            raise ThemeRuleError(
                f"{where} is {len(source)} characters long; keep a regular expression under {MAX_PATTERN} "
                "characters, or split it into several entries."
            )
        if any(ord(ch) > 127 and ch.isalpha() for ch in source):
            raise ThemeRuleError(
                f"{where} has accented or non-Latin letters; comments are read with accents folded "
                "(é → e, ß → ss), so write it without them."
            )
        try:
            compiled = re.compile(source, re.IGNORECASE)
        except re.error as exc:
            raise ThemeRuleError(f"{where} is not a valid regular expression ({exc}).") from None
        reason = _runaway(source)
        if reason:
            raise ThemeRuleError(f"{where} is refused: {reason}. Write it as plain phrases with * instead.")
        if compiled.search("") is not None:
            raise ThemeRuleError(
                f"{where} matches an empty text, so it would tag every comment; make it require at "
                "least one letter."
            )
        return f"(?:{source})"
    folded = fold(entry).strip()
    if not re.search(r"[a-z0-9]", folded.replace("*", "")):
        raise ThemeRuleError(
            f"The {role} {entry!r} of theme {theme!r} has no letter or digit to look for; "
            "write a word, a phrase, or a word with * (e.g. deliver*)."
        )
    if len(folded) > MAX_PATTERN:
        raise ThemeRuleError(
            f"The {role} {entry[:40]!r}… of theme {theme!r} is too long (over {MAX_PATTERN})."
        )
    return _phrase_pattern(entry)


def _clean_entries(entries: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, str] = {}
    for raw in entries:
        entry = re.sub(r"\s+", " ", str(raw)).strip()
        if entry and (entry if _is_regex(entry) else fold(entry)) not in seen:
            seen[entry if _is_regex(entry) else fold(entry)] = entry
    return tuple(seen.values())


def validate_rule(rule: ThemeRule, taken: Iterable[str] = ()) -> ThemeRule:
    """``rule`` cleaned (blank and repeated entries dropped), or :class:`ThemeRuleError` with a
    sentence: no name, a name in ``taken`` (other themes' names), no phrase, or an entry that
    cannot be used (see the module's docstring).

    >>> validate_rule(ThemeRule("Price", ("price*", " Price* ", "")), taken=["Support"]).phrases
    ('price*',)
    """
    name = re.sub(r"\s+", " ", str(rule.name or "")).strip()
    if not name:
        raise ThemeRuleError("A theme needs a name (e.g. Delivery).")
    if len(name) > 60:
        raise ThemeRuleError(f"The theme name {name[:30]!r}… is longer than 60 characters; shorten it.")
    if "|" in name:
        raise ThemeRuleError(
            f"The theme name {name!r} contains |, which links use to separate themes; remove it."
        )
    if name == stored.NOT_THEMED:
        raise ThemeRuleError(f"{name!r} is how RelQ names comments without a theme; choose another name.")
    clash = next((t for t in taken if fold(t).strip() == fold(name)), None)
    if clash is not None:
        raise ThemeRuleError(
            f"A theme named {clash!r} already exists; choose another name, or edit that theme instead."
        )
    phrases, exclusions = _clean_entries(rule.phrases), _clean_entries(rule.exclusions)
    if not phrases:
        raise ThemeRuleError(
            f"Theme {name!r} has no phrase; give at least one word or phrase that marks it (e.g. late delivery)."
        )
    for entry in phrases:
        _entry_pattern(entry, name, "phrase")
    for entry in exclusions:
        _entry_pattern(entry, name, "exclusion")
    return replace(rule, name=name, phrases=phrases, exclusions=exclusions)


_SIMPLE_WORD = re.compile(r"[a-z0-9]+\*?")
_TEXT_WORD = re.compile(r"[a-z0-9]+")


def _cue(entry: str) -> tuple[frozenset[str], tuple[str, ...]] | None:
    """The first word of a phrase as (exact words, prefixes), or None when it has no plain first
    word (a regular expression, or a first word with other characters)."""
    if _is_regex(entry):
        return None
    tokens = [t for t in re.split(r"[\s\-]+", fold(entry).strip()) if t]
    # the phrase starts at a word boundary, so its first run of letters and digits is a whole
    # word of the comment ("doesn't" → "doesn"), or the start of one when a * follows it
    run = re.match(r"[a-z0-9]+\*?", tokens[0]) if tokens else None
    if run is None:
        return None
    first = run.group(0)
    return (frozenset(), (first[:-1],)) if first.endswith("*") else (frozenset({first}), ())


def _cues(entries: Sequence[str]) -> tuple[tuple, bool]:
    found, always = [], False
    for entry in entries:
        cue = _cue(entry)
        if cue is None:
            always = True
        else:
            found.append(cue)
    return tuple(found), always


def compile_rule(rule: ThemeRule, source: str = "rule") -> CompiledRule:
    """The rule's phrases as one pattern and its exclusions as another (both on folded text)."""
    include = _joined(rule.phrases, rule.name, "phrase")
    exclude = _joined(rule.exclusions, rule.name, "exclusion")
    words, prefixes, others = set(), [], []
    for entry in rule.phrases:
        folded = fold(entry).strip()
        if not _is_regex(entry) and _SIMPLE_WORD.fullmatch(folded):
            if folded.endswith("*"):
                prefixes.append(folded[:-1])
            else:
                words.add(folded)
        else:
            others.append(entry)
    cues, always = _cues(others)
    exclusion_cues, exclusion_always = _cues(rule.exclusions)
    return CompiledRule(
        rule.name,
        re.compile(include),
        re.compile(exclude) if exclude else None,
        source,
        frozenset(words),
        tuple(prefixes),
        cues,
        always,
        exclusion_cues,
        exclusion_always,
    )


def _joined(entries: Sequence[str], theme: str, role: str) -> str:
    """One pattern for ``entries``: the plain phrases share one pair of word-boundary checks (one
    look-behind per position instead of one per phrase), regular expressions follow."""
    plain, regexes = [], []
    for entry in entries:
        pattern = _entry_pattern(entry, theme, role)
        if _is_regex(entry):
            regexes.append(pattern)
        else:
            plain.append(pattern[len(_EDGE_BEFORE) : -len(_EDGE_AFTER)])
    parts = ([f"{_EDGE_BEFORE}(?:{'|'.join(plain)}){_EDGE_AFTER}"] if plain else []) + regexes
    return "|".join(parts)


def _blank(match: re.Match) -> str:
    return " " * len(match.group(0))


def tag(folded: pd.Series, rules: Sequence[CompiledRule]) -> pd.DataFrame:
    """Which rules each folded comment matches: a boolean frame, one column per rule.

    Each distinct text is read once; exclusions are blanked (same length, so positions hold)
    before the phrases are looked for.

    >>> r = compile_rule(ThemeRule("Price", ("price*",), ("priceless",)))
    >>> tag(pd.Series(["prices went up", "your team is priceless", "pricey"]), [r])["Price"].tolist()
    [True, False, True]
    """
    folded = pd.Series(folded, dtype=object).fillna("")
    unique = pd.unique(folded.to_numpy())
    found = np.zeros((len(unique), len(rules)), dtype=bool)
    index = _RuleIndex(rules)
    findall = _TEXT_WORD.findall
    for i, text in enumerate(unique):
        hit, cue, excluded = index.lookup(set(findall(text)))
        for j, rule in enumerate(rules):
            bit = 1 << j
            if excluded & bit:  # an exclusion may blank a phrase: read the text the exact way
                found[i, j] = rule.include.search(rule.exclude.sub(_blank, text)) is not None
            elif hit & bit:
                found[i, j] = True
            elif cue & bit:
                found[i, j] = rule.include.search(text) is not None
    position = pd.Series(np.arange(len(unique)), index=unique).reindex(folded.to_numpy()).to_numpy()
    return pd.DataFrame(found[position], index=folded.index, columns=[r.name for r in rules])


class _RuleIndex:
    """Every rule's words in one lookup: which rules a comment's words surely match (``hit``),
    may match (``cue``: run the pattern) and may have blanked (``excluded``), as bit masks."""

    def __init__(self, rules: Sequence[CompiledRule]) -> None:
        self.exact: dict[str, list[int]] = {}
        self.prefix: dict[str, list[int]] = {}
        self.always = [0, 0, 0]
        for j, rule in enumerate(rules):
            bit = 1 << j
            for w in rule.words:
                self._add(self.exact, w, 0, bit)
            for p in rule.prefixes:
                self._add(self.prefix, p, 0, bit)
            for slot, cues, always in (
                (1, rule.cues, rule.always),
                (2, rule.exclusion_cues, rule.exclusion_always),
            ):
                if slot == 2 and rule.exclude is None:
                    continue
                if always:
                    self.always[slot] |= bit
                for exact, prefixes in cues:
                    for w in exact:
                        self._add(self.exact, w, slot, bit)
                    for p in prefixes:
                        self._add(self.prefix, p, slot, bit)
        self.lengths = sorted({len(p) for p in self.prefix})

    @staticmethod
    def _add(table: dict[str, list[int]], key: str, slot: int, bit: int) -> None:
        table.setdefault(key, [0, 0, 0])[slot] |= bit

    def lookup(self, words: set[str]) -> tuple[int, int, int]:
        hit, cue, excluded = 0, self.always[1], self.always[2]
        exact, prefix, lengths = self.exact, self.prefix, self.lengths
        for w in words:
            masks = exact.get(w)
            if masks:
                hit |= masks[0]
                cue |= masks[1]
                excluded |= masks[2]
            for n in lengths:
                if n > len(w):
                    break
                masks = prefix.get(w[:n])
                if masks:
                    hit |= masks[0]
                    cue |= masks[1]
                    excluded |= masks[2]
        return hit, cue, excluded


def highlight(
    text: str, rules: Sequence[CompiledRule], marks: tuple[str, str] = ("«", "»")
) -> tuple[str, list[str]]:
    """``text`` with the phrases the rules found wrapped in ``marks``, and the phrases found (as
    written in the comment). Plain text: nothing is rendered as Markdown or HTML.

    >>> r = compile_rule(ThemeRule("Delivery", ("deliver*", "arrive* late")))
    >>> highlight("Livraison? No: the DÉLIVERY arrived  late.", [r])
    ('Livraison? No: the «DÉLIVERY» «arrived  late».', ['DÉLIVERY', 'arrived  late'])
    """
    if not text:
        return "", []
    folded, origin = _folded_with_positions(str(text))
    spans: list[tuple[int, int]] = []
    for rule in rules:
        readable = rule.exclude.sub(_blank, folded) if rule.exclude is not None else folded
        for m in rule.include.finditer(readable):
            if m.end() > m.start():
                spans.append((origin[m.start()], origin[m.end() - 1] + 1))
    if not spans:
        return str(text), []
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    pieces, found, last = [], [], 0
    for start, end in merged:
        pieces += [text[last:start], marks[0], text[start:end], marks[1]]
        found.append(text[start:end])
        last = end
    pieces.append(text[last:])
    return "".join(pieces), found


def rules_in_force(conn: Connection) -> list[ThemeRule]:
    """The stored rules in force, as :class:`ThemeRule` (the starter set before any is stored)."""
    if not stored.has_rules(conn):
        return list(STARTER_RULES)
    return [
        ThemeRule(r["theme"], tuple(r["phrases"]), tuple(r["exclusions"]), r["source"])
        for r in stored.current_rules(conn)
    ]


def compiled_themes(conn: Connection) -> list[CompiledRule]:
    """Every theme in force ready to mark its phrases in a comment: the rules, then the
    discovered themes' top words."""
    out = [compile_rule(r) for r in rules_in_force(conn)]
    found = _stored_discovery(conn)
    if found is not None:
        out += found.compiled()
    return out


def _ensure_starter_rules(conn: Connection) -> None:
    if stored.has_rules(conn):
        return
    for rule in STARTER_RULES:
        stored.add_rule_version(
            conn, rule.name, list(rule.phrases), list(rule.exclusions), source="starter", note="starter set"
        )


# --------------------------------------------------------------------------- discovery


@dataclass(frozen=True)
class Discovery:
    """A fitted discovery: the TF-IDF vocabulary and idf and the NMF components (k × terms)."""

    k: int
    seed: int
    sample_size: int
    comments: int
    vocabulary: tuple[str, ...]
    idf: np.ndarray
    components: np.ndarray
    names: tuple[str, ...] = ()
    terms: tuple[tuple[str, ...], ...] = field(default=())

    def compiled(self) -> list[CompiledRule]:
        """Each discovered theme as a rule of its top terms (to mark them in a comment)."""
        return [
            CompiledRule(
                name,
                re.compile("|".join(_phrase_pattern(t) for t in words[:8])),
                None,
                "discovered",
                always=True,
            )
            for name, words in zip(self.names, self.terms, strict=True)
        ]


def _vectorizer(vocabulary=None, min_df: int = 1):
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

    common = {
        "lowercase": False,  # the texts are folded already
        "token_pattern": r"[a-z]{2,}",
        "stop_words": sorted(STOP_WORDS),
        "dtype": np.float64,
    }
    if vocabulary is not None:
        return CountVectorizer(vocabulary=list(vocabulary), **common)
    return TfidfVectorizer(min_df=min_df, max_df=0.5, max_features=5000, sublinear_tf=True, **common)


def _tfidf(folded: Sequence[str], vocabulary: Sequence[str], idf: np.ndarray):
    """TF-IDF of ``folded`` on a fixed vocabulary and idf: 1 + ln(tf), × idf, l2-normalised —
    what scikit-learn's TfidfVectorizer(sublinear_tf=True) gives."""
    from sklearn.preprocessing import normalize

    counts = _vectorizer(vocabulary).transform(list(folded)).tocsr()
    counts.data = 1.0 + np.log(counts.data)
    return normalize(counts.multiply(np.asarray(idf)[None, :]).tocsr(), norm="l2", copy=False)


def _weights(x, components: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.decomposition import non_negative_factorization

    if x.shape[0] == 0:
        return np.zeros((0, components.shape[0]))
    w, _, _ = non_negative_factorization(
        x,
        H=components,
        n_components=components.shape[0],
        update_H=False,
        solver="cd",
        max_iter=400,
        tol=1e-4,
        random_state=seed,
    )
    return w


def _theme_names(
    components: np.ndarray, vocabulary: Sequence[str], taken: Iterable[str]
) -> tuple[list, list]:
    names, terms = [], []
    used = {fold(t) for t in taken}
    for row in components:
        order = np.argsort(-row, kind="stable")
        top = [vocabulary[i] for i in order[:15] if row[i] > 0]
        label_words: list[str] = []
        covered: set[str] = set()
        for term in top:
            parts = set(term.split())
            if parts <= covered:
                continue
            label_words.append(term)
            covered |= parts
            if len(label_words) == 3:
                break
        name = " · ".join(label_words) or "(no words)"
        base, n = name, 2
        while fold(name) in used:
            name = f"{base} ({n})"
            n += 1
        used.add(fold(name))
        names.append(name)
        terms.append(tuple(top[:10]))
    return names, terms


_SENTENCE_END = r"[.!?;:\n]+"


def _sentences(folded: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Each comment's sentences and the position of the comment each came from."""
    parts = pd.Series(list(folded), dtype=object).fillna("").str.split(_SENTENCE_END, regex=True).explode()
    parts = parts[parts.notna() & (parts.str.strip().str.len() > 0)]
    return parts.tolist(), parts.index.to_numpy(dtype=np.int64)


def discover(
    folded: Sequence[str], k: int = DEFAULT_K, seed: int = DEFAULT_SEED, taken: Iterable[str] = ()
) -> Discovery:
    """Fit TF-IDF + NMF with ``k`` themes on the sentences of ``folded`` comments (already a
    sample), seeded. Raises :class:`RelqError` when there are too few comments or words."""
    from sklearn.decomposition import NMF

    if not 2 <= int(k) <= 40:
        raise RelqError(f"The number of themes to discover must be between 2 and 40, not {k}.")
    folded = [t for t in folded if t]
    if len(folded) < max(50, 5 * k):
        raise RelqError(
            f"Only {len(folded):,} comments can be read for themes; discovery needs at least "
            f"{max(50, 5 * k):,} to find {k} themes."
        )
    sentences, _ = _sentences(folded)
    min_df = max(3, int(0.0005 * len(sentences)))
    vectorizer = _vectorizer(min_df=min_df)
    x = vectorizer.fit_transform(sentences)
    if x.shape[1] < 2 * k:
        raise RelqError(
            f"The comments share only {x.shape[1]} words used {min_df}+ times; too few to find {k} themes. "
            "Ask for fewer themes."
        )
    vocabulary = tuple(vectorizer.get_feature_names_out().tolist())
    idf = vectorizer.idf_.astype(float)
    model = NMF(n_components=int(k), init="nndsvda", random_state=int(seed), max_iter=500, tol=1e-4)
    model.fit(x)
    components = model.components_.astype(float)
    names, terms = _theme_names(components, vocabulary, taken)
    return Discovery(
        int(k), int(seed), len(folded), len(folded), vocabulary, idf, components, tuple(names), tuple(terms)
    )


def assign(discovery: Discovery, folded: Sequence[str]) -> pd.DataFrame:
    """The discovered themes of each folded comment: rows (position in ``folded``), theme, score.

    Each sentence is read on its own (a comment often speaks of several things): its TF-IDF
    vector x (unit length) is approximated by Σⱼ wⱼ·hⱼ over the themes' components hⱼ (NMF with
    the components held fixed), and theme j *explains* ``wⱼ·(x·hⱼ)`` of it. A comment gets a
    theme when the theme explains at least :data:`EXPLAINED` of one of its sentences; the score
    is the largest such share. A comment whose words the discovery never saw gets none.
    """
    empty = pd.DataFrame(
        {"row": np.array([], dtype=np.int64), "theme": np.array([], dtype=object), "score": []}
    )
    sentences, comment = _sentences(folded)
    if not sentences:
        return empty
    x = _tfidf(sentences, discovery.vocabulary, discovery.idf)
    w = _weights(x, discovery.components, discovery.seed)
    explained = w * np.asarray(x @ discovery.components.T)
    rows, cols = np.nonzero(explained >= EXPLAINED)
    if len(rows) == 0:
        return empty
    found = pd.DataFrame({"row": comment[rows], "col": cols, "score": explained[rows, cols]})
    found = found.groupby(["row", "col"], as_index=False, sort=True)["score"].max()
    found["theme"] = np.array(discovery.names, dtype=object)[found["col"].to_numpy()]
    return found[["row", "theme", "score"]]


def _stored_discovery(conn: Connection) -> Discovery | None:
    model = stored.latest_model(conn)
    if model is None:
        return None
    found = stored.discovered_themes(conn, include_promoted=True)
    return Discovery(
        int(model["k"]),
        int(model["seed"]),
        int(model["sample_size"]),
        int(model["comments"]),
        tuple(model["vocabulary"]),
        np.asarray(model["idf"], dtype=float),
        np.asarray(model["components"], dtype=float),
        tuple(d["theme"] for d in found),
        tuple(tuple(d["terms"]) for d in found),
    )


# --------------------------------------------------------------------------- refresh


@dataclass(frozen=True)
class RefreshSummary:
    """What a refresh did: comments read, themed by a rule or a discovered theme, not themed
    (other languages), whether discovery was (re)fitted, and the seconds each step took."""

    comments_read: int
    not_themed_language: int
    rule_assignments: int
    discovered_assignments: int
    rediscovered: bool
    k: int | None
    seconds: dict[str, float]

    def sentence(self) -> str:
        parts = [f"Themes refreshed: {self.comments_read:,} new comments read"]
        if self.not_themed_language:
            parts.append(f"{self.not_themed_language:,} in other languages left not themed")
        if self.rediscovered:
            parts.append(f"{self.k} themes discovered anew")
        return "; ".join(parts) + f" ({sum(self.seconds.values()):.1f} s)."


def _keyset_batches(conn: Connection, query: sa.Select, key, batch: int):
    """Rows of ``query`` in batches of ``batch``, ordered by ``key`` (keyset pagination)."""
    last = None
    while True:
        page = query if last is None else query.where(key > last)
        rows = conn.execute(page.order_by(key).limit(batch)).all()
        if not rows:
            return
        yield pd.DataFrame(rows, columns=list(rows[0]._fields))
        if len(rows) < batch:
            return
        last = rows[-1][0]


def _pending_query() -> sa.Select:
    return sa.select(R.c.response_id, R.c.comment, R.c.import_id).where(
        stored.commented_clause(), ~sa.exists().where(F.c.response_id == R.c.response_id)
    )


def _themable_query() -> sa.Select:
    return (
        sa.select(R.c.response_id, R.c.comment, R.c.import_id)
        .select_from(R.join(F, F.c.response_id == R.c.response_id))
        .where(F.c.themable)
    )


def _read(conn: Connection, frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Language and sentiment of ``frame``'s comments, written to comment_facts; returns the
    comments that can be themed (with their folded text) and how many cannot."""
    folded = fold_series(frame["comment"])
    language = languages(folded)
    themable = language.isin([*COVERED_LANGUAGES, "und"]).to_numpy()
    scored = sentiment(frame["comment"])
    bulk_insert(
        conn,
        F,
        pd.DataFrame(
            {
                "response_id": frame["response_id"],
                "language": language,
                "themable": themable,
                "sentiment": scored["sentiment"],
                "compound": scored["compound"],
                "import_id": frame["import_id"],
            }
        ),
    )
    return frame[themable].assign(folded=folded[themable]), int((~themable).sum())


def _write_rule_tags(conn: Connection, frame: pd.DataFrame, rules: Sequence[CompiledRule]) -> int:
    if frame.empty or not rules:
        return 0
    folded = frame["folded"] if "folded" in frame else fold_series(frame["comment"])
    hits = tag(folded, rules)
    parts = []
    for rule in rules:
        mask = hits[rule.name].to_numpy()
        if mask.any():
            parts.append(
                pd.DataFrame(
                    {
                        "response_id": frame["response_id"].to_numpy()[mask],
                        "theme": rule.name,
                        "source": "rule",
                        "score": 1.0,
                        "import_id": frame["import_id"].to_numpy()[mask],
                    }
                )
            )
    if not parts:
        return 0
    return bulk_insert(conn, T, pd.concat(parts, ignore_index=True))


def _write_discovered(conn: Connection, frame: pd.DataFrame, discovery: Discovery, promoted: set[str]) -> int:
    if frame.empty:
        return 0
    folded = frame["folded"] if "folded" in frame else fold_series(frame["comment"])
    found = assign(discovery, folded.tolist())
    found = found[~found["theme"].isin(promoted)]
    if found.empty:
        return 0
    rows = found["row"].to_numpy()
    return bulk_insert(
        conn,
        T,
        pd.DataFrame(
            {
                "response_id": frame["response_id"].to_numpy()[rows],
                "theme": found["theme"].to_numpy(),
                "source": "discovered",
                "score": found["score"].to_numpy(),
                "import_id": frame["import_id"].to_numpy()[rows],
            }
        ),
    )


def _sample(conn: Connection, seed: int, size: int) -> list[str]:
    """A seeded sample of at most ``size`` themable comments, the same on every engine (ordered
    by the MD5 of the seed and the response id)."""
    order = sa.func.md5(sa.literal(f"{seed}:") + R.c.response_id)
    rows = conn.execute(
        sa.select(R.c.comment)
        .select_from(R.join(F, F.c.response_id == R.c.response_id))
        .where(F.c.themable)
        .order_by(order, R.c.response_id)
        .limit(size)
    ).scalars()
    return fold_series(pd.Series(list(rows), dtype=object)).tolist()


def _themable_count(conn: Connection) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(F).where(F.c.themable)).scalar_one()


def _rediscover(conn: Connection, k: int, seed: int, batch: int, user: str | None) -> tuple[Discovery, int]:
    """Fit discovery on a seeded sample, store it, and assign every themable comment to it."""
    taken = [r.name for r in rules_in_force(conn)]
    found = discover(_sample(conn, seed, MAX_SAMPLE), k, seed, taken)
    found = replace(found, comments=_themable_count(conn))
    stored.save_discovery(
        conn,
        {
            "k": found.k,
            "seed": found.seed,
            "sample_size": found.sample_size,
            "comments": found.comments,
            "vocabulary": list(found.vocabulary),
            "idf": found.idf.tolist(),
            "components": found.components.tolist(),
            "fitted_by": user,
            "fitted_at": datetime.now(),
        },
        [{"theme": n, "terms": list(t)} for n, t in zip(found.names, found.terms, strict=True)],
    )
    written = 0
    for frame in _keyset_batches(conn, _themable_query(), R.c.response_id, batch):
        written += _write_discovered(conn, frame, found, set())
    return found, written


def _lock(conn: Connection) -> None:
    serialise_imports(conn)  # a refresh and an import take turns (PostgreSQL; DuckDB has one writer)


def refresh_themes(
    engine: Engine,
    *,
    rediscover: bool = False,
    k: int | None = None,
    seed: int = DEFAULT_SEED,
    user: str | None = None,
    batch: int = BATCH,
    sums: bool = True,
) -> RefreshSummary:
    """Read the comments not read yet and store their themes, in one transaction.

    New comments get their language and sentiment, the rules' themes and the stored discovery's
    themes. Discovery is fitted anew when ``rediscover`` is set, when ``k`` or ``seed`` differ
    from the stored discovery's, when there is none, or when the comments to read outnumber those
    it saw; then every comment is assigned again. With too few comments to discover anything the
    rules still apply (an explicit ``rediscover`` or ``k`` then raises the reason).

    The stored month sums of the themes are rebuilt before it commits; without ``sums`` they are
    forgotten instead (the pages read the rows until they are made again) — for a caller that has the
    stored tables rebuilt right after, as the Upload page does once an import is followed up.
    """
    seconds = {"read": 0.0, "rules": 0.0, "discovery": 0.0}
    with engine.begin() as conn:
        _lock(conn)
        _ensure_starter_rules(conn)
        current = _stored_discovery(conn)
        pending = stored.pending_comments(conn)
        want_k = int(k or (current.k if current else DEFAULT_K))
        refit = (
            rediscover
            or current is None
            or want_k != current.k
            or seed != current.seed
            or pending >= current.comments
        )
        rules = [compile_rule(r) for r in rules_in_force(conn)]
        promoted = {
            d["theme"] for d in stored.discovered_themes(conn, include_promoted=True) if d["promoted_to"]
        }
        read = other = tagged = discovered = 0
        # Each batch read leaves the pending set, so every query starts from the first pending id.
        while True:
            started = time.perf_counter()
            rows = conn.execute(_pending_query().order_by(R.c.response_id).limit(batch)).all()
            if not rows:
                break
            frame = pd.DataFrame(rows, columns=["response_id", "comment", "import_id"])
            themable, not_themable = _read(conn, frame)
            read += len(frame)
            other += not_themable
            seconds["read"] += time.perf_counter() - started
            started = time.perf_counter()
            tagged += _write_rule_tags(conn, themable, rules)
            seconds["rules"] += time.perf_counter() - started
            if not refit and current is not None:
                started = time.perf_counter()
                discovered += _write_discovered(conn, themable, current, promoted)
                seconds["discovery"] += time.perf_counter() - started
            if len(rows) < batch:
                break
        did_refit = False
        if refit:
            started = time.perf_counter()
            try:
                current, discovered = _rediscover(conn, want_k, seed, batch, user)
                did_refit = True
            except RelqError:
                if rediscover or k:
                    raise
                current = None  # too few comments yet: the rules still apply
            seconds["discovery"] += time.perf_counter() - started
        if read or did_refit or not stored.theme_sums_ready(conn):  # else nothing they sum changed
            if sums:
                stored.rebuild_theme_sums(conn)
            else:
                stored.forget_theme_sums(conn)
    return RefreshSummary(read, other, tagged, discovered, did_refit, current.k if current else None, seconds)


def retag_rules(engine: Engine, themes: Sequence[str] | None = None, batch: int = BATCH) -> int:
    """Tag every read comment again with the rules in force (only ``themes`` when given), in one
    transaction; returns the assignments written."""
    with engine.begin() as conn:
        _lock(conn)
        return _retag(conn, themes, batch)


def _retag(conn: Connection, themes: Sequence[str] | None, batch: int = BATCH) -> int:
    """:func:`retag_rules` inside ``conn``'s transaction, the themes' month sums rebuilt after it."""
    rules = [compile_rule(r) for r in rules_in_force(conn) if themes is None or r.name in themes]
    delete = T.delete().where(T.c.source == "rule")
    if themes is not None:
        delete = delete.where(T.c.theme.in_(list(themes)))
    conn.execute(delete)
    written = 0
    for frame in _keyset_batches(conn, _themable_query(), R.c.response_id, batch):
        written += _write_rule_tags(conn, frame, rules)
    stored.rebuild_theme_sums(conn)
    return written


# --------------------------------------------------------------------------- analysts' edits


def _taken(conn: Connection, except_name: str | None = None) -> list[str]:
    names = [r.name for r in rules_in_force(conn)] + [d["theme"] for d in stored.discovered_themes(conn)]
    return [n for n in names if except_name is None or fold(n) != fold(except_name)]


def save_rule(
    engine: Engine,
    rule: ThemeRule,
    *,
    user: str | None = None,
    editing: str | None = None,
    retag: bool = True,
) -> ThemeRule:
    """Validate and store a new rule, or a new version of the rule named ``editing``, then tag
    every comment with it (unless ``retag`` is off: the caller tags them). Raises
    :class:`ThemeRuleError` with a sentence when it is refused."""
    with engine.begin() as conn:
        _lock(conn)
        _ensure_starter_rules(conn)
        if editing is not None and editing not in [r.name for r in rules_in_force(conn)]:
            raise ThemeRuleError(f"There is no theme named {editing!r} to edit; it may have been deleted.")
        clean = validate_rule(rule, _taken(conn, except_name=editing))
        if editing is not None and clean.name != editing:
            stored.add_rule_version(
                conn,
                editing,
                [],
                [],
                source="analyst",
                active=False,
                user=user,
                note=f"renamed to {clean.name}",
            )
        stored.add_rule_version(
            conn,
            clean.name,
            list(clean.phrases),
            list(clean.exclusions),
            source=rule.source if rule.source in ("discovered", "starter") and editing is None else "analyst",
            user=user,
            note="edited" if editing else "created",
        )
    if retag:
        retag_rules(engine, [clean.name] + ([editing] if editing and editing != clean.name else []))
    return clean


def delete_rule(engine: Engine, name: str, *, user: str | None = None) -> None:
    """Delete a rule (a new version marked deleted) and its assignments."""
    with engine.begin() as conn:
        _lock(conn)
        current = {r.name: r for r in rules_in_force(conn)}
        if name not in current:
            raise ThemeRuleError(f"There is no theme named {name!r}; it may have been deleted already.")
        rule = current[name]
        stored.add_rule_version(
            conn,
            name,
            list(rule.phrases),
            list(rule.exclusions),
            source="analyst",
            active=False,
            user=user,
            note="deleted",
        )
        conn.execute(T.delete().where(T.c.theme == name, T.c.source == "rule"))
        stored.rebuild_theme_sums(conn)


def promote(
    engine: Engine,
    discovered: str,
    name: str,
    phrases: Sequence[str],
    exclusions: Sequence[str] = (),
    *,
    user: str | None = None,
) -> ThemeRule:
    """Make the discovered theme ``discovered`` a rule named ``name`` with ``phrases``."""
    with engine.begin() as conn:
        if discovered not in [d["theme"] for d in stored.discovered_themes(conn)]:
            raise ThemeRuleError(
                f"There is no discovered theme {discovered!r} to promote; discovery may have run again."
            )
    rule = ThemeRule(name, tuple(phrases), tuple(exclusions), "discovered")
    rule = save_rule(engine, rule, user=user, retag=False)
    with engine.begin() as conn:  # the discovered theme's mentions become the rule's, sums rebuilt once
        _lock(conn)
        stored.mark_promoted(conn, discovered, rule.name)
        _retag(conn, [rule.name])
    return rule
