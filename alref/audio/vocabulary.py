"""Closed vocabularies: map a free object name onto a fixed list of classes (``--categories FILE``).

:func:`map_to_vocabulary` turns the name the LLM (or the label table) gives, "the rooster", into the
vocabulary's spelling, "hen", or None when nothing fits. The AVSBench-semantic classes ship in
``alref/data/avsbench_categories.txt``: "background" first, then the 70 object classes, in the order of
AVSBench's ``label2idx.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

from alref.audio.labels import data_lines
from alref.audio.labels import label_key as _key
from alref.errors import InputError

__all__ = ["SYNONYMS", "avsbench_categories", "map_to_vocabulary", "read_categories"]

#: a name -> vocabulary entries it may stand for, in order of preference (the first one present wins)
SYNONYMS: dict[str, tuple[str, ...]] = {
    "aeroplane": ("airplane", "plane"),
    "plane": ("airplane",),
    "jet": ("airplane", "plane"),
    "aircraft": ("airplane", "helicopter"),
    "chicken": ("hen", "rooster"),
    "rooster": ("hen", "chicken"),
    "hen": ("chicken",),
    "puppy": ("dog",),
    "kitten": ("cat",),
    "infant": ("baby",),
    "toddler": ("baby",),
    "lady": ("woman",),
    "guy": ("man",),
    "gentleman": ("man",),
    "pigeon": ("bird",),
    "dove": ("bird",),
    "crow": ("bird",),
    "owl": ("bird",),
    "songbird": ("bird",),
    "emergency vehicle": ("emergency car", "ambulance", "police car"),
    "police car": ("emergency car",),
    "ambulance": ("emergency car",),
    "fire truck": ("emergency car", "fire engine"),
    "fire engine": ("emergency car", "fire truck"),
    "siren": ("emergency car",),
    "automobile": ("car",),
    "engine": ("car",),
    "vehicle": ("car",),
    "motorbike": ("motorcycle",),
    "scooter": ("motorcycle",),
    "ship": ("boat",),
    "sailboat": ("boat",),
    "canoe": ("boat",),
    "kayak": ("boat",),
    "lorry": ("truck",),
    "subway": ("train",),
    "zither": ("guzheng",),
    "guzheng": ("zither",),
    "steelpan": ("handpan",),
    "steel drum": ("handpan",),
    "hang drum": ("handpan",),
    "xylophone": ("marimba",),
    "suona": ("sorna",),
    "fiddle": ("violin",),
    "drums": ("drum",),
    "drum kit": ("drum",),
    "cymbal": ("drum",),
    "synthesizer": ("keyboard", "piano"),
    "organ": ("keyboard", "piano"),
    "lawn mower": ("mower",),
    "lawnmower": ("mower",),
    "chainsaw": ("saw",),
    "frying pan": ("frying food",),
    "pan": ("frying food",),
    "electric shaver": ("clipper",),
    "shaver": ("clipper",),
    "razor": ("clipper",),
    "hair clipper": ("clipper",),
    "hairdryer": ("hair dryer",),
    "blow dryer": ("hair dryer",),
    "vacuum": ("vacuum cleaner",),
    "rifle": ("gun",),
    "pistol": ("gun",),
    "cannon": ("gun", "tank"),
    "rocket": ("missile rocket",),
    "missile": ("missile rocket",),
    "alarm clock": ("clock",),
    "wind chime": ("bell",),
    "chime": ("bell",),
}

_IRREGULAR_PLURALS = {
    "men": "man", "women": "woman", "people": "person", "children": "child", "geese": "goose",
    "mice": "mouse", "feet": "foot", "teeth": "tooth", "oxen": "ox", "knives": "knife", "wolves": "wolf",
    "calves": "calf", "leaves": "leaf", "buses": "bus", "glasses": "glass", "boxes": "box",
}  # fmt: skip
_NO_PLURAL = {"bus", "glass", "grass", "bass", "chess", "news", "species", "series", "cactus", "bagpipes"}
_STOPWORDS = {"the", "a", "an", "of", "and", "that", "is", "making", "sound", "some"}


def _singular(word: str) -> str:
    if word in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[word]
    if word in _NO_PLURAL or len(word) <= 3 or word.endswith("ss"):
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "zes")):
        return word[:-2]
    return word[:-1] if word.endswith("s") else word


def _singular_key(text: str) -> str:
    words = [w for w in _key(text).split() if w not in ("the", "a", "an")]
    return " ".join(words[:-1] + [_singular(words[-1])]) if words else ""


def map_to_vocabulary(name: str, vocabulary: Sequence[str]) -> str | None:
    """The vocabulary entry that ``name`` stands for, spelled as in ``vocabulary``; None if none fits.

    Tried in order: equal names (case, hyphens, spaces and a leading article ignored: "Emergency car" is
    "emergency-car"); equal after making the last word singular ("dogs" -> "dog", "women" -> "woman");
    :data:`SYNONYMS` ("rooster" -> "hen", "zither" -> "guzheng"); shared words ("acoustic guitar" ->
    "guitar", "race car" -> "car"), preferring an entry whose last word (its head noun) is shared, then
    more shared words, then fewer extra words, then the vocabulary's order.
    """
    query = _singular_key(name)
    if not query:
        return None
    exact = {_key(v): v for v in reversed(vocabulary)}  # the first spelling of a duplicate wins
    if _key(name) in exact:
        return exact[_key(name)]
    singular = {_singular_key(v): v for v in reversed(vocabulary)}
    if query in singular:
        return singular[query]
    for candidate in SYNONYMS.get(query, ()) + SYNONYMS.get(_key(name), ()):
        if _singular_key(candidate) in singular:
            return singular[_singular_key(candidate)]
    words = [w for w in query.split() if w not in _STOPWORDS]
    best: tuple[tuple[int, int, int, int], str] | None = None
    for order, entry in enumerate(vocabulary):
        entry_words = [w for w in _singular_key(entry).split() if w not in _STOPWORDS]
        shared = set(words) & set(entry_words)
        if not shared:
            continue
        head = int(bool(entry_words) and entry_words[-1] in words)
        rank = (head, len(shared), -len(set(entry_words) - shared), -order)
        if best is None or rank > best[0]:
            best = (rank, entry)
    return best[1] if best else None


@cache
def avsbench_categories() -> tuple[str, ...]:
    """AVSBench-semantic classes: "background" first, then its 70 object classes."""
    return tuple(data_lines("avsbench_categories.txt"))


def read_categories(path: str | Path) -> list[str]:
    """A category file: one name per line; blank lines, ``#`` comments and "background" are skipped."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(
            f"cannot read the categories file {path}: {exc}; give a text file, one name a line"
        ) from None
    names = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    names = list(dict.fromkeys(n for n in names if n and _key(n) != "background"))
    if not names:
        raise InputError(f"the categories file {path} lists no category; write one name a line")
    return names
