"""What a process remembers is bounded: the entry kept longest makes room for a new one."""

from __future__ import annotations

from collections import OrderedDict

from shared.memo import remember


def test_the_oldest_entry_makes_room_and_a_known_key_is_replaced_in_place() -> None:
    kept: OrderedDict[int, str] = OrderedDict()
    for n in range(10_000):
        remember(kept, n, str(n), 3)
    assert list(kept.items()) == [(9_997, "9997"), (9_998, "9998"), (9_999, "9999")]
    remember(kept, 9_998, "again", 3)  # known: nothing is forgotten
    assert list(kept) == [9_997, 9_998, 9_999] and kept[9_998] == "again"
