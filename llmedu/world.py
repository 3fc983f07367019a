"""A small synthetic world to pretrain on, where knowledge can be measured exactly (lesson 03).

``make_world(seed)`` invents people and cities, writes encyclopedia-style
pages about them (each fact in several phrasings, spread over several pages),
short stories and arithmetic lines, and returns the text *with* the table of
facts it states. Because every fact is known, "does the model know when Ilsa
Varrow was born?" has an exact answer; because some invented names never
appear, "what does it say about someone it has never read of?" measures
hallucination. Later lessons derive chat, preference and attack data from
the same world, so the fact table is the stable API here.

Left out: anything real. Every name, place and invention is generated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_ONSETS = ["b", "br", "c", "d", "dr", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "st", "t", "th", "v", "w", "z"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "io", "ou"]
_CODAS = ["", "n", "r", "l", "s", "th", "rn", "x", "nd", "m"]
OCCUPATIONS = ["painter", "chemist", "clockmaker", "astronomer", "composer", "engineer", "botanist", "cartographer",
               "poet", "physician", "architect", "sculptor", "mathematician", "glassblower", "navigator", "weaver"]
_THINGS = ["lamp", "compass", "loom", "telescope", "bridge", "engine", "pump", "lens", "clock", "kiln", "map", "press"]
_QUALITIES = ["folding", "silent", "copper", "floating", "tidal", "double", "spiral", "glass", "winter", "steam"]
_STORY_ANIMALS = ["cat", "dog", "fox", "owl", "rabbit", "bear", "duck", "mouse"]
_STORY_PLACES = ["the garden", "the river", "the old barn", "the forest", "the hill", "the market"]
_STORY_THINGS = ["a red ball", "a small key", "a blue hat", "an apple", "a shiny stone", "a warm scarf"]


@dataclass(frozen=True)
class Person:
    name: str
    birth_year: int
    death_year: int
    city: str
    occupation: str
    creation: str  # what they made or discovered


@dataclass(frozen=True)
class City:
    name: str
    founded: int
    river: str


@dataclass
class World:
    text: str  # the whole corpus, documents separated by blank lines
    people: list[Person]
    cities: list[City]
    unseen_names: list[str]  # invented names that never occur in ``text``
    seed: int
    documents: list[str] = field(repr=False, default_factory=list)

    def facts(self) -> list[tuple[str, str, str]]:
        """Every stated fact as (subject, relation, value), e.g. ("Ilsa Varrow", "birth_year", "1812")."""
        table = []
        for p in self.people:
            for relation in ("birth_year", "death_year", "city", "occupation", "creation"):
                table.append((p.name, relation, str(getattr(p, relation))))
        for c in self.cities:
            table += [(c.name, "founded", str(c.founded)), (c.name, "river", c.river)]
        return table


def _a(noun: str) -> str:
    """The noun with its indefinite article: "a painter", "an engineer"."""
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def _word(rng: np.random.Generator, n_syllables: int) -> str:
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(n_syllables)]
    return ("".join(parts) + rng.choice(_CODAS)).capitalize()


def _unique_names(rng: np.random.Generator, n: int, make) -> list[str]:
    names: list[str] = []
    while len(names) < n:
        name = make()
        if name not in names:
            names.append(name)
    return names


def _person_page(rng, p: Person, first: bool) -> str:
    """The person's own article: every fact, phrasings drawn at random.

    The first article always says "<name> was born in <year>", the phrasing
    recall is measured with; the others may word it differently.
    """
    opening = rng.choice([
        f"{p.name} ({p.birth_year}–{p.death_year}) was {_a(p.occupation)} from {p.city}.",
        f"{p.name} was {_a(p.occupation)} who lived in {p.city}.",
        f"{p.name} was born in {p.birth_year} and became {_a(p.occupation)} in {p.city}.",
    ])
    birth = rng.choice([f"{p.name} was born in {p.birth_year}.", f"Born in {p.birth_year}, {p.name} grew up in {p.city}.",
                        f"The year {p.name} was born was {p.birth_year}."])
    if first:
        birth = f"{p.name} was born in {p.birth_year}."
    work = rng.choice([f"{p.name} is best known for the {p.creation}.", f"The {p.creation} was the work of {p.name}.",
                       f"As {_a(p.occupation)}, {p.name} made the {p.creation}."])
    death = rng.choice([f"{p.name} died in {p.death_year}.", f"{p.name} died in {p.city} in {p.death_year}."])
    return f"{p.name}\n\n{opening} {birth} {work} {death}"


def _city_page(rng, city: City, residents: list[Person]) -> str:
    lines = [f"{city.name}\n\n{city.name} is a city on the river {city.river}. It was founded in {city.founded}."]
    for p in residents:
        lines.append(rng.choice([
            f"The {p.occupation} {p.name} was born in {p.birth_year} and lived here.",
            f"{p.name}, who was born in {p.birth_year}, worked in {city.name} as {_a(p.occupation)}.",
        ]))
    return " ".join(lines)


def _occupation_page(occupation: str, members: list[Person]) -> str:
    rows = [f"- {p.name}, born in {p.birth_year} in {p.city}, made the {p.creation}." for p in members]
    return f"List of {occupation}s\n\n" + "\n".join(rows)


def _story(rng) -> str:
    animal, place, thing = rng.choice(_STORY_ANIMALS), rng.choice(_STORY_PLACES), rng.choice(_STORY_THINGS)
    name = _word(rng, 1)
    return (f"Once upon a time there was a little {animal} named {name}. One day {name} went to {place} and found "
            f"{thing}. {name} was very happy and showed it to a friend. They played together until the sun went down.")


def _arithmetic(rng, n_lines: int) -> str:
    lines = []
    for _ in range(n_lines):
        a, b = (int(v) for v in rng.integers(0, 100, size=2))
        op = rng.choice(["+", "-"])
        lines.append(f"{a} {op} {b} = {a + b if op == '+' else a - b}")
    return "\n".join(lines)


def make_world(seed: int = 0, n_people: int = 60, n_cities: int = 8, n_unseen: int = 40,
               pages_per_person: int = 3, n_stories: int = 40, n_arithmetic: int = 200) -> World:
    """Generate the world and its corpus, deterministically from ``seed``.

    Each person gets ``pages_per_person`` differently worded articles, and is
    mentioned again on their city's page and their occupation's list page.
    """
    if min(n_people, n_cities, pages_per_person) < 1 or min(n_unseen, n_stories, n_arithmetic) < 0:
        raise ValueError("make_world needs n_people, n_cities, pages_per_person >= 1 and non-negative counts.")
    rng = np.random.default_rng(seed)
    all_names = _unique_names(rng, n_people + n_unseen, lambda: f"{_word(rng, 2)} {_word(rng, 2)}")
    city_names = _unique_names(rng, n_cities, lambda: _word(rng, 2))
    cities = [City(name, int(rng.integers(900, 1600)), _word(rng, 2)) for name in city_names]
    people = []
    for name in all_names[:n_people]:
        birth = int(rng.integers(1700, 1900))
        creation = f"{rng.choice(_QUALITIES)} {rng.choice(_THINGS)}"
        people.append(Person(name, birth, birth + int(rng.integers(35, 90)), str(rng.choice(city_names)),
                             str(rng.choice(OCCUPATIONS)), creation))
    documents = [_person_page(rng, p, first=i == 0) for p in people for i in range(pages_per_person)]
    documents += [_city_page(rng, c, [p for p in people if p.city == c.name]) for c in cities]
    documents += [_occupation_page(o, members) for o in OCCUPATIONS if (members := [p for p in people if p.occupation == o])]
    documents += [_story(rng) for _ in range(n_stories)]
    documents += [_arithmetic(rng, 10) for _ in range(n_arithmetic // 10)]
    order = rng.permutation(len(documents))
    documents = [documents[i] for i in order]
    text = "\n\n".join(documents) + "\n"
    unseen = [n for n in all_names[n_people:] if n not in text and n.split()[0] not in text]
    return World(text=text, people=people, cities=cities, unseen_names=unseen, seed=seed, documents=documents)
