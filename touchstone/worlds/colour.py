"""Colours: names and RGB values, checked by perceptual distance (CIEDE2000, computed by coloraide).

Names come from the CSS colour keywords (the `webcolors` package) and, when the file is present, the
XKCD colour survey (`rgb.txt`, read at run time; `xkcd_colors/rgb.txt` under the shared data folder,
`touchstone.files.shared_data()`). A name may have several reference colours (CSS "green" is #008000, XKCD "green"
#15b01a); a colour matches a name when it is close to any of them.

An item is {"colour": "#ff0000", "name": "red"}: "The colour #ff0000 is red." It is true when the
CIEDE2000 distance to the nearest reference of the name is at most `TRUE_MAX`, false when it is at
least `FALSE_MIN`; in between it is "ambiguous" and never rendered. False names are drawn both from
far away (red vs blue) and from the nearest neighbours that are still clearly different (subtle).

Every colour a record shows is a random nearby shade of a reference (within `TRUE_MAX / 2` of it), never
the reference itself. Version 1 showed exact references in half the items and as every wrong option of a
"Which colour is X?" pair; with items split by hash, the held-out suite's right answers were then
mostly colours that training had shown only as wrong options, and its wrong answers colours training
had shown as right ones, so a model that memorised colours fell below chance on the suite (44.8-49.7%
after every fine-tuning recipe tried). Shades make almost every shown colour new, so what carries over
from training is the neighbourhood of a colour, not its string.

Guaranteed: every rendered record's label agrees with the distances in its verdict's evidence.
Not guaranteed: that people would agree at the margins; ΔE thresholds stand in for them. The suites
depend on whether the XKCD file was found.
"""

from __future__ import annotations

import functools
import random
import re
from pathlib import Path

from touchstone.files import shared_data
from touchstone.records import claim_record, is_pair, pair_record
from touchstone.worlds.base import Verdict, World, agreement, ordered

TRUE_MAX = 5.0  # at most this far from a reference: the name fits
FALSE_MIN = 10.0  # at least this far from every reference: the name does not fit
COLOUR_RE = r"#[0-9a-f]{6}|rgb\(\d{1,3}, \d{1,3}, \d{1,3}\)"
STATEMENT_RE = re.compile(rf"The colour (?P<colour>{COLOUR_RE}) is (?P<name>.+)\.")
NAME_PROMPT_RE = re.compile(rf"What is the name of the colour (?P<colour>{COLOUR_RE})\?")
HEX_PROMPT_RE = re.compile(r"Which colour is (?P<name>.+)\?")


def xkcd_path() -> Path:
    return shared_data() / "xkcd_colors" / "rgb.txt"


def to_hex(colour: str) -> str:
    """'#abcdef' or 'rgb(1, 2, 3)' -> '#abcdef'."""
    if colour.startswith("#"):
        return colour.lower()
    r, g, b = (int(v) for v in re.findall(r"\d+", colour))
    if max(r, g, b) > 255:
        raise ValueError(f"not an RGB colour: {colour!r}")
    return f"#{r:02x}{g:02x}{b:02x}"


def shade(ref: str, rng: random.Random, tries: int = 8) -> str:
    """A random colour near `ref`: each channel moved by up to 6, kept within `TRUE_MAX / 2` of it
    (`ref` itself if no try lands there)."""
    for _ in range(tries):
        rgb = [min(255, max(0, int(ref[i : i + 2], 16) + rng.randint(-6, 6))) for i in (1, 3, 5)]
        near = "#" + "".join(f"{v:02x}" for v in rgb)
        if delta_e(near, ref) <= TRUE_MAX / 2:
            return near
    return ref


def show(hex_: str, rng: random.Random) -> str:
    """Hex or rgb() notation, at random, so the model meets both."""
    if rng.random() < 0.7:
        return hex_
    return "rgb({}, {}, {})".format(*(int(hex_[i : i + 2], 16) for i in (1, 3, 5)))


@functools.lru_cache(maxsize=4)
def palette(xkcd: str | None) -> dict:
    """name -> sorted reference hexes, plus Lab coordinates for a fast first cut."""
    import numpy as np
    import webcolors
    from coloraide import Color

    refs: dict[str, set[str]] = {}
    for name in webcolors.names("css3"):
        refs.setdefault(name, set()).add(webcolors.name_to_hex(name, "css3"))
    if xkcd and Path(xkcd).is_file():
        for line in Path(xkcd).read_text(encoding="utf-8").splitlines():
            parts = line.split("\t")
            if len(parts) >= 2 and parts[1].startswith("#") and not line.startswith("#"):
                refs.setdefault(parts[0].strip(), set()).add(parts[1].strip().lower())
    names = sorted(refs)
    flat = [(name, h) for name in names for h in sorted(refs[name])]
    lab = np.array([Color(h).convert("lab-d65").coords() for _, h in flat])
    return {"refs": {n: sorted(refs[n]) for n in names}, "names": names, "flat": flat, "lab": lab}


@functools.lru_cache(maxsize=65536)
def delta_e(hex1: str, hex2: str) -> float:
    from coloraide import Color

    return round(Color(hex1).delta_e(Color(hex2), method="2000"), 2)


class ColourWorld(World):
    name = "colour"
    version = 2

    def __init__(self, xkcd: str | None = None):
        path = xkcd or xkcd_path()
        self.xkcd = str(path) if Path(path).is_file() else None

    def inputs(self) -> tuple:
        return (self.xkcd,)

    @property
    def palette(self) -> dict:
        return palette(self.xkcd)

    def distance(self, colour: str, name: str) -> tuple[float, str]:
        """(CIEDE2000 to the nearest reference of `name`, that reference)."""
        refs = self.palette["refs"].get(name)
        if not refs:
            raise ValueError(f"unknown colour name {name!r}")
        hex_ = to_hex(colour)
        return min((delta_e(hex_, r), r) for r in refs)

    def sample(self, rng: random.Random) -> dict:
        name, ref = rng.choice(self.palette["flat"])
        return {"colour": shade(ref, rng), "name": name}

    def mutate(self, item: dict, rng: random.Random) -> dict:
        """The same colour with a wrong name: a close neighbour (subtle) or a far one (gross)."""
        import numpy as np
        from coloraide import Color

        p = self.palette
        lab = np.array(Color(to_hex(item["colour"])).convert("lab-d65").coords())
        dist = np.linalg.norm(p["lab"] - lab, axis=1)  # Euclidean Lab: a cheap first cut, confirmed below
        order = np.argsort(dist)
        near = [i for i in order if dist[i] > FALSE_MIN / 2]
        far = [i for i in order if dist[i] > 50]
        rng.shuffle(far)
        # Subtle: walk outwards from the nearest names, skipping a few at random; then fall back to far ones.
        tries = near[rng.randint(0, 5) :][:60] if rng.random() < 0.5 else []
        for i in tries + far[:40]:
            name = p["flat"][i][0]
            if name != item["name"] and self.distance(item["colour"], name)[0] >= FALSE_MIN:
                return {**item, "name": name}
        raise RuntimeError(f"no wrong name found for {item}")

    def verify(self, item: dict) -> Verdict:
        d, ref = self.distance(item["colour"], item["name"])
        reason = "match" if d <= TRUE_MAX else "mismatch" if d >= FALSE_MIN else "ambiguous"
        return Verdict(
            reason == "match",
            d,
            reason,
            {"delta_e2000": d, "nearest_reference": ref, "colour": to_hex(item["colour"]), "name": item["name"]},
        )

    def record(self, item: dict, rng: random.Random) -> dict | None:
        """A name question, a colour question (two colours, one name) or a claim."""
        wrong = self.mutate(item, rng)
        colour = show(item["colour"], rng)
        r = rng.random()
        label = rng.choice("ab")
        if r < 0.25:
            a, b = ordered(label, item["name"], wrong["name"])
            return pair_record(
                f"What is the name of the colour {colour}?",
                a,
                b,
                label,
                world=self.name,
                kind="colour_name",
                source="colour",
            )
        if r < 0.5:
            # Two colours, one name: the wrong colour is a shade of the wrong name's nearest reference.
            other = show(shade(self.distance(item["colour"], wrong["name"])[1], rng), rng)
            if self.distance(other, item["name"])[0] < FALSE_MIN:
                return None
            a, b = ordered(label, colour, other)
            return pair_record(
                f"Which colour is {item['name']}?", a, b, label, world=self.name, kind="colour_value", source="colour"
            )
        shown = rng.choice([item, wrong])
        return claim_record(
            f"The colour {colour} is {shown['name']}.",
            shown is item,
            world=self.name,
            kind="colour_name",
            source="colour",
        )

    def derivation(self, record: dict) -> str | None:
        """The distances behind the answer, from the record's own text: each name's nearest reference
        colour and how far (CIEDE2000, rounded) the shown colour lies from it; an rgb() colour is first
        given in hex."""

        def near(colour: str, name: str) -> str:
            d, ref = self.distance(colour, name)
            return f"{name} is {ref}, {d:.0f} from {colour}"

        def spelled(colour: str) -> str:
            return "" if colour.startswith("#") else f" {colour} is {to_hex(colour)}."

        try:
            if not is_pair(record):
                m = STATEMENT_RE.fullmatch(record["statement"].strip())
                return spelled(m["colour"]) + f" {near(m['colour'], m['name'])}." if m else None
            if m := NAME_PROMPT_RE.fullmatch(record.get("prompt", "")):
                return spelled(m["colour"]) + f" {near(m['colour'], record['a'])}; {near(m['colour'], record['b'])}."
            if m := HEX_PROMPT_RE.fullmatch(record.get("prompt", "")):
                shown = [record["a"], record["b"]]
                return "".join(map(spelled, shown)) + f" {near(shown[0], m['name'])}; {near(shown[1], m['name'])}."
        except (ValueError, KeyError):
            pass
        return None

    def verify_record(self, record: dict) -> Verdict:
        """Recompute the distances named by the record's text; ok when the label agrees with them."""
        try:
            if not is_pair(record):
                m = STATEMENT_RE.fullmatch(record["statement"].strip())
                if not m:
                    raise ValueError(f"not a colour statement: {record['statement']!r}")
                v = self.verify({"colour": m["colour"], "name": m["name"]})
                if v.reason == "ambiguous":
                    return Verdict(False, v.score, "ambiguous", v.evidence)
                return agreement(v.ok == bool(record["label"]), v.evidence, v.score)
            prompt = record.get("prompt", "")
            if m := NAME_PROMPT_RE.fullmatch(prompt):
                va, vb = (self.verify({"colour": m["colour"], "name": record[k]}) for k in ("a", "b"))
            elif m := HEX_PROMPT_RE.fullmatch(prompt):
                va, vb = (self.verify({"colour": record[k], "name": m["name"]}) for k in ("a", "b"))
            else:
                raise ValueError(f"unknown question {prompt!r}")
        except (ValueError, KeyError) as e:
            return Verdict(False, 0.0, "unparseable", {"error": str(e)})
        evidence = {"a": va.evidence, "b": vb.evidence}
        if {va.reason, vb.reason} != {"match", "mismatch"}:
            return Verdict(False, 0.0, "ambiguous", evidence)
        return agreement(record["label"] == ("a" if va.ok else "b"), evidence, abs(va.score - vb.score))
