"""AudioSet labels to object names: the table the pipeline uses when no LLM is configured.

:data:`LABEL_OBJECTS` maps an AudioSet label (the tagger's class names) to the noun of the thing that
makes the sound ("Bark" -> "dog"), for GroundingDINO to find ("the dog that is making sound"). Labels that
name no visible object are absent, and :func:`label_to_object` gives None for them: music genres and
moods ("Rock music", "Happy music"), "Music" itself, "Silence", noises and acoustics ("Noise", "Static",
"Echo", "Reverberation", "Inside, small room"), weather ("Wind", "Rain", "Thunder"), generic sounds
("Sound effect", "Whoosh, swoosh, swish", "Beep, bleep"). Families map to their most common member
("Plucked string instrument" -> "guitar", "Brass instrument" -> "trumpet"). Speech by a man or a woman
maps to "man" / "woman" (AVSBench has those classes), other human sounds to "person".

The 527 AudioSet class names ship in ``alref/data/audioset_labels.txt`` in the index order of
AudioSet's ``class_labels_indices.csv``, which is the ``id2label`` of the AST AudioSet checkpoint.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

__all__ = ["LABEL_OBJECTS", "audioset_labels", "data_lines", "label_key", "label_to_object"]

# object noun -> the AudioSet labels whose sound it makes (inverted into LABEL_OBJECTS below)
_OBJECT_LABELS: dict[str, tuple[str, ...]] = {
    "person": (
        "Speech", "Conversation", "Narration, monologue", "Shout", "Bellow", "Whoop", "Yell", "Battle cry",
        "Screaming", "Whispering", "Laughter", "Giggle", "Snicker", "Belly laugh", "Chuckle, chortle",
        "Crying, sobbing", "Whimper", "Wail, moan", "Sigh", "Singing", "Yodeling", "Chant", "Mantra",
        "Rapping", "Humming", "Groan", "Grunt", "Whistling", "Breathing", "Wheeze", "Snoring", "Gasp",
        "Pant", "Snort", "Cough", "Throat clearing", "Sneeze", "Sniff", "Run", "Shuffle",
        "Walk, footsteps", "Chewing, mastication", "Biting", "Gargling", "Burping, eructation", "Hiccup",
        "Hands", "Finger snapping", "Clapping", "Beatboxing",
    ),
    "man": ("Male speech, man speaking", "Male singing"),
    "woman": ("Female speech, woman speaking", "Female singing"),
    "child": ("Child speech, kid speaking", "Child singing", "Children shouting", "Children playing"),
    "baby": ("Baby cry, infant cry", "Baby laughter", "Babbling"),
    "crowd": ("Cheering", "Applause", "Chatter", "Crowd", "Hubbub, speech noise, speech babble", "Choir"),
    "dog": (
        "Dog", "Bark", "Yip", "Howl", "Bow-wow", "Growling", "Whimper (dog)", "Canidae, dogs, wolves",
    ),
    "cat": ("Cat", "Purr", "Meow", "Hiss", "Caterwaul"),
    "horse": ("Horse", "Clip-clop", "Neigh, whinny"),
    "cow": ("Cattle, bovinae", "Moo"),
    "pig": ("Pig", "Oink"),
    "goat": ("Goat",),
    "sheep": ("Sheep", "Bleat"),
    "chicken": ("Fowl", "Chicken, rooster", "Cluck", "Crowing, cock-a-doodle-doo"),
    "turkey": ("Turkey", "Gobble"),
    "duck": ("Duck", "Quack"),
    "goose": ("Goose", "Honk"),
    "lion": ("Roaring cats (lions, tigers)", "Roar"),
    "bird": ("Bird", "Bird vocalization, bird call, bird song", "Chirp, tweet", "Squawk",
             "Bird flight, flapping wings"),
    "pigeon": ("Pigeon, dove", "Coo"),
    "crow": ("Crow", "Caw"),
    "owl": ("Owl", "Hoot"),
    "mouse": ("Rodents, rats, mice", "Mouse", "Patter"),
    "insect": ("Insect", "Buzz"),
    "cricket": ("Cricket",),
    "mosquito": ("Mosquito",),
    "fly": ("Fly, housefly",),
    "bee": ("Bee, wasp, etc.",),
    "frog": ("Frog", "Croak"),
    "snake": ("Snake", "Rattle"),
    "whale": ("Whale vocalization",),
    "guitar": ("Guitar", "Electric guitar", "Bass guitar", "Acoustic guitar", "Steel guitar, slide guitar",
               "Tapping (guitar technique)", "Strum", "Plucked string instrument"),
    "banjo": ("Banjo",),
    "sitar": ("Sitar",),
    "mandolin": ("Mandolin",),
    "zither": ("Zither",),
    "ukulele": ("Ukulele",),
    "keyboard": ("Keyboard (musical)", "Synthesizer", "Sampler"),
    "piano": ("Piano", "Electric piano"),
    "organ": ("Organ", "Electronic organ", "Hammond organ"),
    "harpsichord": ("Harpsichord",),
    "drum": ("Percussion", "Drum kit", "Drum machine", "Drum", "Snare drum", "Rimshot", "Drum roll",
             "Bass drum", "Timpani"),
    "tabla": ("Tabla",),
    "cymbal": ("Cymbal", "Hi-hat"),
    "wood block": ("Wood block",),
    "tambourine": ("Tambourine",),
    "rattle": ("Rattle (instrument)",),
    "maracas": ("Maraca",),
    "gong": ("Gong",),
    "bell": ("Bell", "Church bell", "Jingle bell", "Tubular bells", "Change ringing (campanology)",
             "Cowbell"),
    "marimba": ("Mallet percussion", "Marimba, xylophone"),
    "glockenspiel": ("Glockenspiel",),
    "vibraphone": ("Vibraphone",),
    "steelpan": ("Steelpan",),
    "orchestra": ("Orchestra",),
    "trumpet": ("Brass instrument", "Trumpet"),
    "french horn": ("French horn",),
    "trombone": ("Trombone",),
    "violin": ("Violin, fiddle", "Pizzicato", "String section", "Bowed string instrument"),
    "cello": ("Cello",),
    "double bass": ("Double bass",),
    "flute": ("Wind instrument, woodwind instrument", "Flute"),
    "saxophone": ("Saxophone",),
    "clarinet": ("Clarinet",),
    "harp": ("Harp",),
    "harmonica": ("Harmonica",),
    "accordion": ("Accordion",),
    "bagpipes": ("Bagpipes",),
    "didgeridoo": ("Didgeridoo",),
    "shofar": ("Shofar",),
    "theremin": ("Theremin",),
    "singing bowl": ("Singing bowl",),
    "tuning fork": ("Tuning fork",),
    "wind chime": ("Chime", "Wind chime"),
    "turntable": ("Scratching (performance technique)",),
    "boat": ("Boat, Water vehicle", "Rowboat, canoe, kayak", "Motorboat, speedboat"),
    "sailboat": ("Sailboat, sailing ship",),
    "ship": ("Ship", "Foghorn"),
    "car": ("Motor vehicle (road)", "Car", "Vehicle horn, car horn, honking", "Toot", "Car alarm",
            "Power windows, electric windows", "Skidding", "Tire squeal", "Car passing by",
            "Race car, auto racing", "Engine", "Medium engine (mid frequency)", "Engine knocking",
            "Engine starting", "Idling", "Accelerating, revving, vroom", "Traffic noise, roadway noise"),
    "truck": ("Truck", "Air brake", "Air horn, truck horn", "Reversing beeps",
              "Ice cream truck, ice cream van", "Heavy engine (low frequency)"),
    "bus": ("Bus",),
    "emergency vehicle": ("Emergency vehicle", "Siren", "Civil defense siren"),
    "police car": ("Police car (siren)",),
    "ambulance": ("Ambulance (siren)",),
    "fire truck": ("Fire engine, fire truck (siren)",),
    "motorcycle": ("Motorcycle",),
    "train": ("Rail transport", "Train", "Train whistle", "Train horn", "Railroad car, train wagon",
              "Train wheels squealing", "Subway, metro, underground"),
    "airplane": ("Aircraft", "Aircraft engine", "Jet engine", "Propeller, airscrew",
                 "Fixed-wing aircraft, airplane"),
    "helicopter": ("Helicopter",),
    "bicycle": ("Bicycle", "Bicycle bell"),
    "skateboard": ("Skateboard",),
    "vehicle": ("Vehicle",),
    "drill": ("Dental drill, dentist's drill", "Drill"),
    "lawn mower": ("Lawn mower",),
    "chainsaw": ("Chainsaw",),
    "door": ("Door", "Sliding door", "Slam", "Knock"),
    "doorbell": ("Doorbell", "Ding-dong"),
    "cupboard": ("Cupboard open or close",),
    "drawer": ("Drawer open or close",),
    "pot": ("Dishes, pots, and pans",),
    "cutlery": ("Cutlery, silverware",),
    "knife": ("Chopping (food)",),
    "frying pan": ("Frying (food)", "Sizzle"),
    "microwave": ("Microwave oven",),
    "blender": ("Blender",),
    "faucet": ("Water tap, faucet",),
    "sink": ("Sink (filling or washing)",),
    "bathtub": ("Bathtub (filling or washing)",),
    "hair dryer": ("Hair dryer",),
    "toilet": ("Toilet flush",),
    "toothbrush": ("Toothbrush", "Electric toothbrush"),
    "vacuum cleaner": ("Vacuum cleaner",),
    "zipper": ("Zipper (clothing)",),
    "keys": ("Keys jangling",),
    "coin": ("Coin (dropping)",),
    "scissors": ("Scissors",),
    "electric shaver": ("Electric shaver, electric razor",),
    "cards": ("Shuffling cards",),
    "computer keyboard": ("Typing", "Computer keyboard"),
    "typewriter": ("Typewriter",),
    "pen": ("Writing",),
    "telephone": ("Telephone", "Telephone bell ringing", "Ringtone", "Telephone dialing, DTMF"),
    "alarm clock": ("Alarm clock",),
    "clock": ("Clock", "Tick", "Tick-tock"),
    "smoke detector": ("Smoke detector, smoke alarm", "Fire alarm"),
    "whistle": ("Whistle",),
    "sewing machine": ("Sewing machine",),
    "fan": ("Mechanical fan",),
    "air conditioner": ("Air conditioning",),
    "cash register": ("Cash register",),
    "printer": ("Printer",),
    "camera": ("Camera", "Single-lens reflex camera"),
    "hammer": ("Hammer",),
    "jackhammer": ("Jackhammer",),
    "saw": ("Sawing",),
    "power tool": ("Power tool",),
    "axe": ("Chop",),
    "gun": ("Gunshot, gunfire", "Machine gun", "Fusillade", "Cap gun"),
    "cannon": ("Artillery fire",),
    "fireworks": ("Fireworks", "Firecracker"),
    "glass": ("Glass", "Chink, clink", "Shatter"),
    "basketball": ("Basketball bounce",),
    "fire": ("Fire", "Crackle"),
    "waterfall": ("Waterfall",),
    "stream": ("Stream",),
    "waves": ("Ocean", "Waves, surf"),
    "television": ("Television",),
    "radio": ("Radio",),
}  # fmt: skip

#: AudioSet label -> noun of the object that makes that sound (labels naming no object are absent)
LABEL_OBJECTS: dict[str, str] = {label: noun for noun, labels in _OBJECT_LABELS.items() for label in labels}


def label_key(text: str) -> str:
    """Case, hyphens, underscores and spacing do not matter when names are compared."""
    return " ".join(str(text).lower().replace("-", " ").replace("_", " ").split())


_LABEL_KEYS = {label_key(label): noun for label, noun in LABEL_OBJECTS.items()}


def label_to_object(label: str) -> str | None:
    """The object noun for an AudioSet label ("Bark" -> "dog"), None when the label names no object."""
    return _LABEL_KEYS.get(label_key(label))


def data_lines(name: str) -> list[str]:
    """The non-blank lines of a file shipped in ``alref/data``."""
    text = resources.files("alref").joinpath("data", name).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


@cache
def audioset_labels() -> tuple[str, ...]:
    """The 527 AudioSet class names in index order (the AST AudioSet checkpoint's ``id2label``)."""
    return tuple(data_lines("audioset_labels.txt"))
