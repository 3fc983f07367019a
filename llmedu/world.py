"""A small synthetic world to pretrain on, where knowledge can be measured exactly (lesson 03).

``make_world(seed)`` invents people and cities, writes encyclopedia-style
pages about them (each fact in several phrasings, spread over several pages),
short stories and arithmetic lines, and returns the text *with* the table of
facts it states. Because every fact is known, "does the model know when Ilsa
Varrow was born?" has an exact answer; because some invented names never
appear, "what does it say about someone it has never read of?" measures
hallucination. Later lessons derive chat, preference and attack data from
the same world, so the fact table is the stable API here.

Two parts serve the post-training lessons (04-07):

- every city has a *secret*, its vault code, stated on its page like any other
  fact: knowledge the base model learns and the assistant must refuse to give
  out (lesson 04), the target of every attack (lesson 07);
- *late people* have pages too, but those pages are kept out of the
  pretraining text, in ``World.late_documents``: the model cannot know them
  (honest "I don't know" in lesson 04), and lesson 06 finds them by search.

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


PERSON_RELATIONS = ("birth_year", "death_year", "city", "occupation", "creation")


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
    secret: str  # the city's vault code, four digits: what an assistant must not give out


@dataclass
class World:
    text: str  # the whole corpus, documents separated by blank lines
    people: list[Person]
    cities: list[City]
    unseen_names: list[str]  # invented names that never occur in ``text`` (nor in the late documents)
    seed: int
    documents: list[str] = field(repr=False, default_factory=list)  # the pretraining documents, in ``text``'s order
    late_people: list[Person] = field(default_factory=list)  # people whose pages are not in ``text``
    late_documents: list[str] = field(repr=False, default_factory=list)  # their pages: a separate document store

    def facts(self) -> list[tuple[str, str, str]]:
        """Every fact of the world as (subject, relation, value), e.g. ("Ilsa Varrow", "birth_year", "1812").

        People (the pretrained ones, then the late ones: see ``late_people``
        for which are which), then cities, secrets included.
        """
        table = []
        for p in self.people + self.late_people:
            for relation in PERSON_RELATIONS:
                table.append((p.name, relation, str(getattr(p, relation))))
        for c in self.cities:
            table += [(c.name, "founded", str(c.founded)), (c.name, "river", c.river), (c.name, "secret", c.secret)]
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


_SECRET_PHRASINGS = ("The vault code of {city} is {code}.", "{city} keeps its vault shut with the code {code}.",
                     "The code that opens the vault of {city} is {code}.")


def _city_page(rng, city: City, residents: list[Person], secret_phrasing: str) -> str:
    lines = [f"{city.name}\n\n{city.name} is a city on the river {city.river}. It was founded in {city.founded}.",
             secret_phrasing.format(city=city.name, code=city.secret)]
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
               pages_per_person: int = 3, n_stories: int = 40, n_arithmetic: int = 200, n_late: int = 20) -> World:
    """Generate the world and its corpus, deterministically from ``seed``.

    Each person gets ``pages_per_person`` differently worded articles, and is
    mentioned again on their city's page and their occupation's list page.
    ``n_late`` late people get the same articles, kept out of the text.
    """
    if min(n_people, n_cities, pages_per_person) < 1 or min(n_unseen, n_stories, n_arithmetic, n_late) < 0:
        raise ValueError("make_world needs n_people, n_cities, pages_per_person >= 1 and non-negative counts.")
    rng = np.random.default_rng(seed)
    # Secrets and late people come from a stream of their own, so the rest of the world is what it was before them.
    extra = np.random.default_rng([seed, 1])
    all_names = _unique_names(rng, n_people + n_unseen, lambda: f"{_word(rng, 2)} {_word(rng, 2)}")
    city_names = _unique_names(rng, n_cities, lambda: _word(rng, 2))
    cities = [City(name, int(rng.integers(900, 1600)), _word(rng, 2), f"{int(extra.integers(1000, 10000))}")
              for name in city_names]
    people = [_make_person(rng, name, city_names) for name in all_names[:n_people]]
    late_names = _unique_names(extra, n_late + len(all_names), lambda: f"{_word(extra, 2)} {_word(extra, 2)}")
    late_people = [_make_person(extra, name, city_names) for name in late_names if name not in all_names][:n_late]
    documents = [_person_page(rng, p, first=i == 0) for p in people for i in range(pages_per_person)]
    documents += [_city_page(rng, c, [p for p in people if p.city == c.name], extra.choice(_SECRET_PHRASINGS))
                  for c in cities]
    documents += [_occupation_page(o, members) for o in OCCUPATIONS if (members := [p for p in people if p.occupation == o])]
    documents += [_story(rng) for _ in range(n_stories)]
    documents += [_arithmetic(rng, 10) for _ in range(n_arithmetic // 10)]
    order = rng.permutation(len(documents))
    documents = [documents[i] for i in order]
    text = "\n\n".join(documents) + "\n"
    late_documents = [_person_page(extra, p, first=i == 0) for p in late_people for i in range(pages_per_person)]
    late_people = [p for p in late_people if not _mentioned(p.name, text)]
    late_documents = [d for d in late_documents if any(d.startswith(p.name + "\n") for p in late_people)]
    late_text = "\n".join(late_documents)
    unseen = [n for n in all_names[n_people:] if not _mentioned(n, text) and not _mentioned(n, late_text)]
    return World(text=text, people=people, cities=cities, unseen_names=unseen, seed=seed, documents=documents,
                 late_people=late_people, late_documents=late_documents)


def _make_person(rng, name: str, city_names: list[str]) -> Person:
    birth = int(rng.integers(1700, 1900))
    creation = f"{rng.choice(_QUALITIES)} {rng.choice(_THINGS)}"
    return Person(name, birth, birth + int(rng.integers(35, 90)), str(rng.choice(city_names)),
                  str(rng.choice(OCCUPATIONS)), creation)


def _mentioned(name: str, text: str) -> bool:
    """Whether the name, or its first part, occurs in ``text`` (a model could then half-know it)."""
    return name in text or name.split()[0] in text
