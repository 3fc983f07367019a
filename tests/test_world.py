"""The synthetic world: deterministic, and every fact in its table is stated in its text."""

import re

import pytest

from llmedu.world import invent_names, make_world


def test_same_seed_gives_the_same_world():
    assert make_world(3).text == make_world(3).text


def test_different_seeds_give_different_worlds():
    assert make_world(3).text != make_world(4).text


def test_every_birth_year_is_stated_with_the_recall_phrasing():
    world = make_world(0)
    for person in world.people:
        assert f"{person.name} was born in {person.birth_year}" in world.text


def test_every_fact_value_appears_next_to_its_subject():
    world = make_world(0)
    pages = world.documents + world.late_documents
    for subject, _, value in world.facts():
        assert any(subject in page and value in page for page in pages), (subject, value)


def test_unseen_names_never_occur_in_the_text():
    world = make_world(0)
    assert len(world.unseen_names) >= 30
    for name in world.unseen_names:
        assert name not in world.text and name.split()[0] not in world.text


def test_sizes_are_parameters():
    small, large = make_world(0, n_people=10), make_world(0, n_people=40)
    assert len(small.people) == 10 and len(large.people) == 40
    assert len(small.text) < len(large.text)


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="n_people"):
        make_world(0, n_people=0)


def test_the_text_uses_an_before_vowels():
    text = make_world(seed=0, n_people=60).text
    assert not re.findall(r"\b[Aa] [aeiou]", text)


def test_every_citys_secret_is_stated_in_the_pretraining_text():
    world = make_world(0)
    for city in world.cities:
        assert any(city.name in page and city.secret in page for page in world.documents)
    assert (world.cities[0].name, "secret", world.cities[0].secret) in world.facts()


def test_late_people_have_pages_but_never_occur_in_the_pretraining_text():
    world = make_world(0, n_late=12)
    assert len(world.late_people) == 12 and len(world.late_documents) == 3 * 12
    for person in world.late_people:
        assert person.name.split()[0] not in world.text
        assert any(page.startswith(person.name + "\n") for page in world.late_documents)


def test_late_people_unseen_names_and_people_are_all_different():
    world = make_world(0)
    people = {p.name for p in world.people}
    late = {p.name for p in world.late_people}
    assert not people & late and not late & set(world.unseen_names) and not people & set(world.unseen_names)


def test_adding_late_people_leaves_the_pretrained_people_as_they_were():
    assert make_world(0, n_late=0).people == make_world(0, n_late=20).people


def test_invented_names_occur_nowhere_the_model_could_have_read_them():
    world = make_world(0)
    late_text = "\n".join(world.late_documents)
    names = invent_names(world, 50, seed=1)
    assert len(names) == 50
    for name in names:
        assert name.split()[0] not in world.text and name.split()[0] not in late_text


def test_invented_names_share_no_first_part_with_the_unseen_names_or_each_other():
    world = make_world(0)
    firsts = [name.split()[0] for name in invent_names(world, 50, seed=1)]
    assert len(set(firsts)) == 50
    assert not set(firsts) & {name.split()[0] for name in world.unseen_names}


def test_invented_names_come_from_the_seed():
    world = make_world(0)
    assert invent_names(world, 5, seed=1) == invent_names(world, 5, seed=1) != invent_names(world, 5, seed=2)
