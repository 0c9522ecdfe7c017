"""Positions and gap detection, without I/O."""

from __future__ import annotations

import pytest

from portside.hub.sequence import DUPLICATE, NEXT, Missing, Position, Sequence


def test_first_position_comes_next() -> None:
    assert Sequence().check(Position("e", 7)) is NEXT


def test_next_duplicate_and_missing() -> None:
    sequence = Sequence(Position("e", 3))
    assert sequence.check(Position("e", 4)) is NEXT
    assert sequence.check(Position("e", 3)) is DUPLICATE
    assert sequence.check(Position("e", 1)) is DUPLICATE
    missing = sequence.check(Position("e", 7))
    assert missing == Missing("e", 4, 6)
    assert isinstance(missing, Missing)
    assert missing.count == 3
    assert not missing.epoch_changed


def test_new_epoch_counts_its_own_offsets_only() -> None:
    sequence = Sequence(Position("old", 10))
    assert sequence.check(Position("new", 1)) == Missing("new", 1, 0, epoch_changed=True)
    missing = sequence.check(Position("new", 4))
    assert missing == Missing("new", 1, 3, epoch_changed=True)
    assert isinstance(missing, Missing)
    assert missing.count == 3


def test_empty_epoch_starts_the_timeline() -> None:
    sequence = Sequence(Position("", 0))
    assert sequence.check(Position("e", 1)) is NEXT
    assert sequence.check(Position("e", 3)) == Missing("e", 1, 2)
    assert sequence.behind(Position("", 0)) is None
    assert sequence.behind(Position("e", 2)) == Missing("e", 1, 2)
    assert sequence.behind(Position("e", 0)) is None


def test_behind_counts_the_head_itself() -> None:
    sequence = Sequence(Position("e", 5))
    assert sequence.behind(Position("e", 5)) is None
    assert sequence.behind(Position("e", 4)) is None
    assert sequence.behind(Position("e", 8)) == Missing("e", 6, 8)
    assert sequence.behind(Position("f", 2)) == Missing("f", 1, 2, epoch_changed=True)
    assert Sequence().behind(Position("e", 8)) is None


def test_advance() -> None:
    sequence = Sequence()
    sequence.advance(Position("e", 1))
    assert sequence.last == Position("e", 1)


def test_position_json_round_trip() -> None:
    position = Position("5f1c9a2e", 42)
    assert Position.from_json(position.to_json()) == position


@pytest.mark.parametrize(
    "value",
    [
        None,
        [],
        {"epoch": 1, "offset": 1},
        {"epoch": "e", "offset": -1},
        {"epoch": "e", "offset": "1"},
        {"epoch": "e", "offset": True},
        {"epoch": "e" * 65, "offset": 1},
        {"offset": 1},
    ],
)
def test_position_from_bad_json(value: object) -> None:
    with pytest.raises(ValueError, match="position"):
        Position.from_json(value)
