"""Reading free-text comments: accents folded, stop words, the language a comment is written in,
and its VADER sentiment — what comment themes are built on (:mod:`relq.ingest.themes`).

- **Folding**: lower case, Unicode NFKD with the combining marks dropped (é → e, ñ → n, ü → u),
  and the letters NFKD leaves alone spelled out (ß → ss, æ → ae, œ → oe, ø → o, ł → l); curly
  quotes become straight ones. A rule, a search term and a comment are folded the same way, so
  "Qualité", "qualite" and "QUALITÉ" are one word.
- **Stop words** of English, French, German and Spanish (their common function words, folded) are
  left out of theme discovery.
- **Language**: each comment's function words are counted against short lists for English,
  French, German and Spanish — the languages the shipped rules and stop words cover — and for
  Italian, Portuguese and Dutch; a word shared by several languages counts for each in equal part.
  The language with the highest count is the comment's when it leads alone; otherwise the comment
  is undetermined (``und``: short comments such as "Great support!" carry no function word) and
  is read as one of the covered languages. A comment mostly in a non-Latin script is ``other``.
  Comments in a language outside the covered four are stored as **not themed** rather than given
  a theme their words were never meant for.
- **Sentiment**: VADER (Hutto & Gilbert 2014, the vaderSentiment package, lexicon inside the
  package), compound ≥ 0.05 positive, ≤ −0.05 negative, else neutral. VADER reads English;
  comments in other languages mostly score neutral.

Everything works on whole pandas Series at once (each distinct text is processed once).
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import pandas as pd

__all__ = [
    "COVERED_LANGUAGES",
    "LANGUAGE_NAMES",
    "STOP_WORDS",
    "fold",
    "fold_series",
    "folded_with_positions",
    "languages",
    "sentiment",
    "words",
]

COVERED_LANGUAGES: tuple[str, ...] = ("en", "fr", "de", "es")
LANGUAGE_NAMES = {
    "en": "English",
    "fr": "French",
    "de": "German",
    "es": "Spanish",
    "und": "undetermined (read as a covered language)",
    "it": "Italian",
    "pt": "Portuguese",
    "nl": "Dutch",
    "other": "a non-Latin script",
}

# Letters NFKD does not split into a base letter and a mark.
_SPELLED = str.maketrans(
    {
        "ß": "ss",
        "æ": "ae",
        "œ": "oe",
        "ø": "o",
        "ł": "l",
        "đ": "d",
        "ð": "d",
        "þ": "th",
        "ı": "i",
        "’": "'",
        "‘": "'",
        "ʼ": "'",
        "`": "'",
        "“": '"',
        "”": '"',
        "«": '"',
        "»": '"',
        "\u00a0": " ",
    }
)
_MARKS = re.compile(r"[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


def _fold_one(text: str) -> str:
    import unicodedata

    return _MARKS.sub("", unicodedata.normalize("NFKD", text.lower().translate(_SPELLED)))


def fold(text: object) -> str:
    """``text`` lower-cased with its accents folded (the form rules and discovery read).

    >>> fold("Qualité MÉDIOCRE, Straße, Œuvre, l’équipe")
    "qualite mediocre, strasse, oeuvre, l'equipe"
    """
    return "" if text is None or (isinstance(text, float) and np.isnan(text)) else _fold_one(str(text))


def fold_series(texts: pd.Series) -> pd.Series:
    """:func:`fold` of every text, each distinct text folded once."""
    texts = pd.Series(texts, dtype=object).fillna("").astype(str)
    unique = pd.unique(texts.to_numpy())
    folded = pd.Series([_fold_one(t) for t in unique], index=unique, dtype=object)
    return pd.Series(folded.reindex(texts.to_numpy()).to_numpy(), index=texts.index, dtype=object)


def folded_with_positions(text: str) -> tuple[str, list[int]]:
    """The folded text and, for each of its characters, the index of the original character it
    came from — so a match found in the folded text can be marked in the original.

    >>> folded_with_positions("Straße é")
    ('strasse e', [0, 1, 2, 3, 4, 4, 5, 6, 7])
    """
    out: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(text):
        piece = _fold_one(ch)
        out.append(piece)
        origin.extend([i] * len(piece))
    return "".join(out), origin


_WORD = re.compile(r"[a-z]{2,}")


def words(folded: str) -> list[str]:
    """The words of a folded text (letters a–z, two or more; an apostrophe splits).

    >>> words("l'equipe n'a pas repondu, it's 2 late")
    ['equipe', 'pas', 'repondu', 'it', 'late']
    """
    return _WORD.findall(folded)


# --------------------------------------------------------------------------- stop words

_EN = """a about above after again against all also am an and any are aren as at be because been before being
below between both but by can cannot could couldn did didn do does doesn doing don during each even
every few for from further get gets got had hadn has hasn have haven having he her here hers herself him
himself his how however if in into is isn it its itself just let ll me more most much must mustn my myself
no nor not now of on once only or other ought our ours ourselves own quite re really same shan she
should shouldn so some such than that the their theirs them themselves then there these they this those
through to too until ve very was wasn we were weren what when where which while who whom why will with
won would wouldn yet you your yours yourself yourselves us lot bit one two well way make made many""".split()
_FR = """a ai aie aient ait alors as au aucun aussi autre aux avec avez avions avoir avons bien c ca car ce
ceci cela celle celles celui ces cet cette chez comme comment d dans de des deja donc dont du elle elles en
encore est et etaient etait ete etes etre eu eux fait faire fois il ils j jamais je l la le les leur leurs
lui m ma mais me meme mes moi moins mon n ne ni nos notre nous on ont ou par pas peu plus pour pourquoi
qu quand que quel quelle qui rien s sa sans se ses si son sont sous suis sur t ta te tes toi ton toujours
tous tout toute toutes tres trop tu un une vos votre vous y""".split()
_DE = """aber alle allem allen aller alles als also am an andere anderen auch auf aus bei beim bin bis
bist da damit dann das dass dein deine dem den denn der des dessen die dies diese diesem diesen dieser
dieses doch dort du durch ein eine einem einen einer eines er es etwas euer eure fur gegen gewesen hab
habe haben hat hatte hatten hier hin hinter ich ihm ihn ihr ihre im immer in ins ist ja jede jedem jeden
jeder jetzt kam kann kein keine konnen man manche mehr mein meine mich mir mit muss nach nicht nichts
noch nun nur ob oder ohne schon sehr sein seine seit sich sie sind so solche soll sondern sonst uber um
und uns unser unsere unter viel vom von vor war waren was weil weiter welche wenn werde werden wie
wieder will wir wird wo wurde wurden zu zum zur zwar zwischen""".split()
_ES = """a al algo algunas algunos ante antes como con contra cual cuando de del desde donde durante e el
ella ellas ellos en entre era eran eres es esa esas ese eso esos esta estaba estado estamos estan estar
este esto estos estoy fue fueron fui ha han has hasta hay la las le les lo los mas me mi mis mucho muchos
muy nada ni no nos nosotros nuestra nuestro nunca o os otra otro para pero poco por porque que quien se
sea ser si siempre sin sobre son su sus tambien te tiene tienen todo todos tu tus un una uno unos y ya
demasiado""".split()

STOP_WORDS: frozenset[str] = frozenset(_EN) | frozenset(_FR) | frozenset(_DE) | frozenset(_ES)
"""English, French, German and Spanish stop words, folded (left out of theme discovery)."""

# Short lists of frequent function words, for telling languages apart (not for discovery).
_LANGUAGE_WORDS: dict[str, str] = {
    "en": "the and is are was were of to with for not it we our you this that have has too very but they "
    "on at be been would will from so no there what just your my any all their an",
    "fr": "le la les des est et pas tres pour nous vous une avec sur que qui mais ce du au trop sont ete "
    "notre il elle ne en un plus toujours jamais rien",
    "de": "der die das und ist nicht zu sehr wir ein eine mit auf fur den dem sind war ich es auch noch "
    "unsere immer kam viel zu nur hat haben",
    "es": "el la los las es y que no muy con por para una del pero nos su esta son fue demasiado siempre "
    "nuestro nuestra un lo se hay otra otro vez como mas tambien",
    "it": "il di che non molto sono per con una della del gli troppo ma questo siamo nostro stato lo ci ha "
    "sempre ancora la un le e alla",
    "pt": "os da do das dos nao muito com uma em para que mas foi sao nosso nossa sempre tem ao pelo esta "
    "um o as e mais vez outra",
    "nl": "de het een en is niet van zeer erg wij we ons onze met voor op maar te ook nog zijn was heel dat "
    "wel",
}


@lru_cache(maxsize=1)
def _language_matrix():
    languages = list(_LANGUAGE_WORDS)
    vocabulary = sorted({w for text in _LANGUAGE_WORDS.values() for w in text.split()})
    index = {w: i for i, w in enumerate(vocabulary)}
    matrix = np.zeros((len(vocabulary), len(languages)))
    for j, lang in enumerate(languages):
        for w in set(_LANGUAGE_WORDS[lang].split()):
            matrix[index[w], j] = 1.0
    matrix /= matrix.sum(axis=1, keepdims=True)  # a shared word counts for each in equal part
    return languages, vocabulary, matrix


_ASCII_LETTER = re.compile(r"[a-z]")
_ANY_LETTER = re.compile(r"[^\W\d_]")


def languages(folded: pd.Series) -> pd.Series:
    """The language code of each folded comment: en, fr, de, es, und (undetermined), it, pt, nl,
    or other (mostly a non-Latin script). See the module's docstring.

    >>> languages(pd.Series(["the delivery was late", "la livraison est en retard", "great support",
    ...                      "il servizio non è stato molto buono", "配送が遅い"]).map(fold)).tolist()
    ['en', 'fr', 'und', 'it', 'other']
    """
    from sklearn.feature_extraction.text import CountVectorizer

    folded = pd.Series(folded, dtype=object).fillna("")
    if folded.empty:
        return pd.Series([], index=folded.index, dtype=object)
    names, vocabulary, matrix = _language_matrix()
    counter = CountVectorizer(vocabulary=vocabulary, token_pattern=r"[a-z]{1,}", lowercase=False)
    scores = np.asarray(counter.transform(folded.to_numpy()) @ matrix)
    best = scores.argmax(axis=1)
    top = scores[np.arange(len(best)), best]
    second = np.partition(scores, -2, axis=1)[:, -2] if scores.shape[1] > 1 else np.zeros(len(best))
    code = np.where((top >= 1.0) & (top > second + 1e-9), np.array(names, dtype=object)[best], "und")
    # "other": more letters outside a–z than in it. A text of ASCII without capitals has none
    # outside (most folded comments: 0.6 s of counting saved on 200k), so only the rest are counted.
    texts = folded.to_numpy()
    counted = np.fromiter((not (t.isascii() and t == t.lower()) for t in texts), dtype=bool, count=len(texts))
    if counted.any():
        some = pd.Series(texts[counted], dtype=object)
        ascii_letters = some.str.count(_ASCII_LETTER.pattern).to_numpy()
        all_letters = some.str.count(_ANY_LETTER.pattern).to_numpy()
        code[counted] = np.where(all_letters - ascii_letters > ascii_letters, "other", code[counted])
    return pd.Series(code, index=folded.index, dtype=object)


@lru_cache(maxsize=1)
def _analyzer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def sentiment(texts: pd.Series) -> pd.DataFrame:
    """VADER compound (−1 … +1) and label of each text (positive ≥ 0.05, negative ≤ −0.05, else
    neutral — Hutto & Gilbert's thresholds); each distinct text is scored once.

    >>> sentiment(pd.Series(["Great support, thank you!", "Invoices are wrong again."]))["sentiment"].tolist()
    ['positive', 'negative']
    """
    texts = pd.Series(texts, dtype=object).fillna("").astype(str)
    analyzer = _analyzer()
    unique = pd.unique(texts.to_numpy())
    compound = pd.Series([analyzer.polarity_scores(t)["compound"] for t in unique], index=unique, dtype=float)
    values = compound.reindex(texts.to_numpy()).to_numpy()
    label = np.select([values >= 0.05, values <= -0.05], ["positive", "negative"], "neutral")
    return pd.DataFrame({"compound": values, "sentiment": label.astype(object)}, index=texts.index)
