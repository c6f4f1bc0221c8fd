"""How questions are shared among disciplines and how each question's key concepts are drawn."""

from __future__ import annotations

import pytest

from syllabus.generators.sampling import LEARNED_LIMIT, allocate, draw
from syllabus.taxonomy.curriculum import Session, Subject

# --- allocate ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "total, weights, expected",
    [
        (10, {"a": 1, "b": 1}, {"a": 5, "b": 5}),
        (10, {"a": 1, "b": 1, "c": 1}, {"a": 4, "b": 3, "c": 3}),  # tie on remainders: by key
        (7, {"a": 0.5, "b": 0.3, "c": 0.2}, {"a": 4, "b": 2, "c": 1}),  # 3.5, 2.1, 1.4
        (10, {"z": 0.35, "y": 0.45, "x": 0.2}, {"z": 3, "y": 5, "x": 2}),  # 3.5, 4.5, 2: tie .5/.5 goes by key
        (3, {"big": 9, "small": 1}, {"big": 3, "small": 0}),
        (1, {"a": 1, "b": 3}, {"a": 0, "b": 1}),
        (5, {"a": 1, "zero": 0, "neg": -2}, {"a": 5, "zero": 0, "neg": 0}),
        (0, {"a": 1, "b": 2}, {"a": 0, "b": 0}),
        (4, {"a": 0, "b": 0}, {"a": 0, "b": 0}),
        (4, {}, {}),
    ],
)
def test_allocate_largest_remainder(total, weights, expected):
    assert allocate(total, weights) == expected


def test_allocate_parts_sum_to_total_and_follow_weights():
    weights = {"a": 3.0, "b": 1.5, "c": 0.0, "d": 0.7, "e": 2.2}
    for total in range(0, 120):
        parts = allocate(total, weights)
        assert set(parts) == set(weights)
        assert sum(parts.values()) == total
        assert parts["c"] == 0
        scale = sum(w for w in weights.values() if w > 0)
        for key, weight in weights.items():
            exact = total * weight / scale
            assert exact - 1 < parts[key] < exact + 1  # never more than one off its exact share
        assert parts["a"] >= parts["e"] >= parts["b"] >= parts["d"]


# --- draw -------------------------------------------------------------------------------------


def subject(name: str = "Mechanics", sizes=(4, 3, 5, 2, 6)) -> Subject:
    sessions = [Session(f"{name} session {i}", [f"{name} s{i} c{j}" for j in range(n)]) for i, n in enumerate(sizes)]
    return Subject(name=name, level="undergraduate", sessions=sessions)


SUBJECTS = [subject("Mechanics"), subject("Optics", (3, 3, 3))]


def drawn(index, *, seed=0, node="physics/mechanics", concepts=(1, 5), ratio=0.3, subjects=SUBJECTS):
    return draw(subjects, index, seed=seed, node_path=node, concepts=concepts, two_session_ratio=ratio)


def test_draw_is_deterministic_per_seed_node_and_index():
    first = [drawn(i) for i in range(40)]
    assert [drawn(i) for i in range(40)] == first
    # question k is the same whatever else is drawn, in whatever order
    assert [drawn(i) for i in reversed(range(40))][::-1] == first
    assert drawn(17) == first[17]
    # a different seed or node reshuffles
    assert [drawn(i, seed=1) for i in range(40)] != first
    assert [drawn(i, node="physics/optics") for i in range(40)] != first


def test_draw_walks_subjects_in_turn():
    assert [drawn(i).subject.name for i in range(5)] == ["Mechanics", "Optics", "Mechanics", "Optics", "Mechanics"]


@pytest.mark.parametrize("low, high", [(1, 1), (1, 5), (2, 3), (3, 5), (5, 5)])
def test_single_session_concept_count_within_range_and_available(low, high):
    for i in range(60):
        combo = drawn(i, concepts=(low, high), ratio=0.0)
        assert combo.difficulty == "single-session"
        (index,) = combo.session_indices
        available = combo.subject.sessions[index].concepts
        assert min(low, len(available)) <= len(combo.concepts) <= min(high, len(available))
        assert set(combo.concepts) <= set(available)
        assert len(set(combo.concepts)) == len(combo.concepts)


@pytest.mark.parametrize("low, high", [(1, 5), (2, 2), (3, 4), (5, 5)])
def test_two_session_draws_take_from_both_distinct_ordered_sessions(low, high):
    for i in range(60):
        combo = drawn(i, concepts=(low, high), ratio=1.0)
        assert combo.difficulty == "two-session"
        first, second = combo.session_indices
        assert first < second
        a, b = (set(s.concepts) for s in combo.sessions)
        assert a & set(combo.concepts) and b & set(combo.concepts)
        assert set(combo.concepts) <= a | b
        assert len(set(combo.concepts)) == len(combo.concepts)
        assert max(low, 2) <= len(combo.concepts) <= min(high, len(a) + len(b))


def test_two_session_ratio_is_roughly_followed():
    two = sum(drawn(i, ratio=0.3).difficulty == "two-session" for i in range(1000))
    assert 220 < two < 380
    assert all(drawn(i, ratio=0.0).difficulty == "single-session" for i in range(100))


def test_two_session_draw_when_min_exceeds_what_the_sessions_hold():
    tiny = [Subject("Tiny", sessions=[Session("one", ["a"]), Session("two", ["b"]), Session("three", ["c"])])]
    for i in range(30):
        combo = drawn(i, concepts=(3, 5), ratio=1.0, subjects=tiny)  # only two concepts in any pair
        assert combo.difficulty == "two-session"
        assert len(combo.concepts) == 2


def test_max_one_concept_never_makes_two_session_questions():
    for i in range(50):
        combo = drawn(i, concepts=(1, 1), ratio=1.0)
        assert combo.difficulty == "single-session"
        assert len(combo.concepts) == 1


def test_single_session_subject_never_two_session():
    one = [Subject("Solo", sessions=[Session("only", ["a", "b", "c"])])]
    for i in range(20):
        combo = drawn(i, ratio=1.0, subjects=one)
        assert combo.session_indices == (0,) and combo.learned == ()


def test_learned_is_concepts_of_earlier_sessions_only():
    for ratio in (0.0, 1.0):
        for i in range(60):
            combo = drawn(i, ratio=ratio)
            first = combo.session_indices[0]
            earlier = [c for s in combo.subject.sessions[:first] for c in s.concepts]
            assert list(combo.learned) == earlier[-LEARNED_LIMIT:]
            assert not set(combo.learned) & set(combo.concepts)


def test_learned_is_capped_to_the_latest_concepts():
    many = [Subject("Long", sessions=[Session(f"s{i}", [f"c{i}.{j}" for j in range(5)]) for i in range(6)])]
    combos = [drawn(i, ratio=0.0, subjects=many) for i in range(80)]
    last = next(c for c in combos if c.session_indices == (5,))
    expected = [f"c{i}.{j}" for i in range(5) for j in range(5)][-LEARNED_LIMIT:]
    assert list(last.learned) == expected
    assert next(c for c in combos if c.session_indices == (0,)).learned == ()


def test_combination_sessions_property():
    combo = drawn(3, ratio=1.0)
    assert combo.sessions == [combo.subject.sessions[i] for i in combo.session_indices]


def test_style_draw_is_deterministic_and_follows_the_mix():
    from syllabus.generators.sampling import draw_style

    bloom, strategies = {"apply": 3.0, "create": 1.0, "remember": 0.0}, {"direct": 1.0}
    draws = [draw_style(seed=1, node_path="a/b", index=i, bloom=bloom, strategies=strategies) for i in range(400)]
    assert draws == [
        draw_style(seed=1, node_path="a/b", index=i, bloom=bloom, strategies=strategies) for i in range(400)
    ]
    levels = [level for level, _ in draws]
    assert set(levels) == {"apply", "create"}  # weight 0 is never drawn
    assert 0.65 < levels.count("apply") / len(levels) < 0.85  # about 3:1
    assert {strategy for _, strategy in draws} == {"direct"}
    reordered = dict(reversed(list(bloom.items())))
    assert draw_style(seed=1, node_path="a/b", index=7, bloom=reordered, strategies=strategies) == draws[7]
