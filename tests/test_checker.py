"""The delivery checker (tests/checker.py) on made-up deliveries: a checker that cannot
fail proves nothing.

Pure: no server, no event loop, no database.
"""

from __future__ import annotations

from typing import Any, cast

import pytest
from websockets.asyncio.client import ClientConnection

from tests import checker
from tests.checker import Acked, Connection, Party, Stored
from tests.clients import Client


def _msg(seq: int, sender: str = "child", body: str | None = None) -> dict[str, Any]:
    return {"type": "msg", "seq": seq, "from": sender, "body": body or f"m{seq}"}


def _acked(*seqs: int) -> dict[str, dict[str, Acked]]:
    return {"child": {f"c{s}": Acked(s, f"m{s}") for s in seqs}}


def _rows(*seqs: int) -> list[Stored]:
    return [Stored(s, "child", f"c{s}", f"m{s}") for s in seqs]


def _client(*frames: dict[str, Any]) -> Client:
    """A client that has already read these frames; it never touches a socket."""
    client = Client(cast(ClientConnection, None))
    client.seen = list(frames)
    return client


def test_a_clean_delivery_to_two_parties_passes() -> None:
    frames = [_msg(1), _msg(2, "counsellor"), _msg(3)]
    acked = {
        "child": {"c1": Acked(1, "m1"), "c3": Acked(3, "m3")},
        "counsellor": {"k2": Acked(2, "m2")},
    }
    parties = [Party("child", [Connection(frames)]), Party("counsellor", [Connection(frames)])]
    assert checker.violations(acked, parties) == []


def test_a_clean_delivery_across_a_resume_passes() -> None:
    first = Connection([_msg(1), _msg(2), _msg(3)])
    second = Connection([_msg(4), _msg(5)], resumed_from=3)
    assert checker.violations(_acked(1, 2, 3, 4, 5), [Party("child", [first, second])]) == []


def test_an_acknowledged_message_that_never_arrives_is_missing() -> None:
    party = Party("counsellor", [Connection([_msg(1), _msg(2)])])
    problems = checker.violations(_acked(1, 2, 3), [party])
    assert problems == ["counsellor never received 3 of 1..3"]


def test_a_message_lost_in_the_middle_is_a_skip_and_missing() -> None:
    party = Party("child", [Connection([_msg(1), _msg(3)])])
    problems = checker.violations(_acked(1, 2, 3), [party])
    assert problems == [
        "child, connection 1: seq 3 after seq 1, skipping between",
        "child never received 2 of 1..3",
    ]


def test_a_message_that_arrives_twice_is_a_duplicate() -> None:
    party = Party("child", [Connection([_msg(1), _msg(2), _msg(2)])])
    problems = checker.violations(_acked(1, 2), [party])
    assert problems == ["child, connection 1: seq 2 again (it resumed from 0 and had 1-2)"]


def test_messages_out_of_seq_order_are_out_of_order() -> None:
    party = Party("child", [Connection([_msg(2), _msg(1)])])
    problems = checker.violations(_acked(1, 2), [party])
    assert problems == [
        "child, connection 1: seq 2 after seq 0, skipping between",
        "child, connection 1: seq 1 after seq 2",
        "child never received 1 of 1..2",
    ]


def test_a_frame_replayed_below_last_seq_is_a_duplicate() -> None:
    first = Connection([_msg(1), _msg(2), _msg(3)])
    second = Connection([_msg(3), _msg(4)], resumed_from=3)
    problems = checker.violations(_acked(1, 2, 3, 4), [Party("child", [first, second])])
    assert problems == ["child, connection 2: seq 3 again (it resumed from 3 and had nothing)"]


def test_a_seq_the_party_already_held_on_another_connection_is_a_duplicate() -> None:
    first = Connection([_msg(1), _msg(2), _msg(3)])
    second = Connection([_msg(3), _msg(4)], resumed_from=2)
    problems = checker.violations(_acked(1, 2, 3, 4), [Party("child", [first, second])])
    assert problems == ["child, connection 2: seq 3 again (it came on connection 1)"]


def test_repeats_disorder_gaps_and_losses_are_all_reported() -> None:
    party = Party("counsellor", [Connection([_msg(1), _msg(3), _msg(2), _msg(3)])])
    problems = checker.violations(_acked(1, 2, 3, 4), [party])
    assert problems == [
        "counsellor, connection 1: seq 3 after seq 1, skipping between",
        "counsellor, connection 1: seq 2 after seq 3",
        "counsellor, connection 1: seq 3 again (it resumed from 0 and had 1-3)",
        "counsellor never received 2, 4 of 1..4",
    ]


def test_a_wrong_body_and_two_messages_on_one_seq_are_reported() -> None:
    acked = _acked(1) | {"counsellor": {"k1": Acked(1, "hello")}}
    party = Party("child", [Connection([_msg(1, body="changed")])])
    problems = checker.violations(acked, [party])
    assert problems[0] == "seq 1 acknowledged twice: to child as 'c1' and to counsellor as 'k1'"
    assert problems[1] == "seq 1 arrived other than child's acknowledged 'c1' ('m1')"


def test_a_party_that_left_needs_only_a_gap_free_prefix() -> None:
    gone = Party("first counsellor", [Connection([_msg(1), _msg(2)])], complete=False)
    holed = Party("second", [Connection([_msg(1), _msg(3)], fills_gaps=False)], complete=False)
    problems = checker.violations(_acked(1, 2, 3), [gone, holed], last_seq=3)
    assert problems == ["second (left) holds 1..1 and then 3, not a prefix"]


def test_the_stored_rows_set_the_last_seq() -> None:
    party = Party("child", [Connection([_msg(1), _msg(2)])])
    assert checker.violations(_acked(1, 2), [party], rows=_rows(1, 2)) == []
    problems = checker.violations(_acked(1, 2), [party], rows=_rows(1, 2, 3))
    assert problems == ["child never received 3 of 1..3"]


def test_a_gap_or_a_double_in_the_database_is_reported() -> None:
    rows = [*_rows(1, 2, 4), Stored(5, "child", "c1", "again")]
    problems = checker.violations({}, [], rows=rows)
    assert problems == [
        "the database holds seqs 1-2, 4-5, not 1..4",
        "child's 'c1' stored 2 times, as seqs 1, 5",
    ]


def test_an_ack_must_name_its_stored_row() -> None:
    rows = [Stored(1, "child", "c1", "m1"), Stored(2, "counsellor", "k2", "m2")]
    acked = {"child": {"c1": Acked(1, "other"), "c2": Acked(2, "m2"), "c3": Acked(3, "m3")}}
    problems = checker.violations(acked, [], rows=rows)
    assert problems == [
        "seq 1 stored other than child's 'c1' ('other')",
        "seq 2 stored as counsellor's 'k2', not child's acknowledged 'c2'",
        "child's 'c3' acknowledged as seq 3, not stored",
    ]


def test_a_frame_must_carry_the_stored_message() -> None:
    party = Party("child", [Connection([_msg(1, body="changed"), {**_msg(2), "client_id": "c9"}])])
    problems = checker.violations({}, [party], rows=_rows(1, 2))
    assert problems == [
        "seq 1 arrived other than stored: child's 'm1'",
        "seq 2 arrived as ['c9'], stored as 'c2'",
    ]


def test_acks_are_gathered_across_connections_and_must_agree() -> None:
    first = _client({"type": "ack", "client_id": "c1", "seq": 1})
    second = _client({"type": "ack", "client_id": "c1", "seq": 1}, _msg(1))
    assert checker.acknowledged([first, second], {"c1": "m1"}) == {"c1": Acked(1, "m1")}
    assert checker.acknowledged([first], None) == {"c1": Acked(1)}
    moved = _client({"type": "ack", "client_id": "c1", "seq": 2})
    with pytest.raises(AssertionError, match="'c1' acknowledged as seq 1 and as seq 2"):
        checker.acknowledged([first, moved], {"c1": "m1"})
    with pytest.raises(AssertionError, match="an ack for 'c1', which was never sent"):
        checker.acknowledged([first], {})


def test_staff_frames_are_kept_for_their_conversation_only() -> None:
    console = _client({**_msg(1), "conversation_id": "a"}, {**_msg(1), "conversation_id": "b"})
    assert len(Connection.of(console, "a").frames) == 1
    assert len(Connection.of(console).frames) == 2


def test_in_order_is_the_gap_free_prefix() -> None:
    assert checker.in_order([1, 2, 4]) == 2
    assert checker.in_order([4, 5], after=3) == 5
    assert checker.in_order([]) == 0
