"""The delivery contract, checked from the clients' side (docs/protocol.md, section 3).

A fault test records what each sender had acknowledged and every `msg` frame each
party (the child, a counsellor, a monitoring supervisor) received on each of its
connections, and, where it can read it, what the database stored; then it asks
`violations(...)` what went wrong and asserts the list is empty. The checker counts raw
frames: the only deduplication it grants is the one the protocol gives a client,
resuming with `last_seq`. So a frame whose seq is not above everything its connection
already held (its `last_seq` when it resumed, or a frame it received before) is a
duplicate, even if a careful page would have ignored it; and so is a seq a party
already received on an earlier connection, since a page resumes from what it holds.

Rules, per conversation:

- every acknowledged message is stored at the seq its ack named, once: no two
  messages share a seq, and every seq is in 1..N;
- where the test read the database: its seqs are 1..N without a gap, no client_id of
  one side is stored twice, and each acknowledged seq holds that side's client_id;
- every party that stayed to the end received every seq 1..N exactly once;
  a party that left (a released counsellor) received a gap-free prefix;
- on each connection seqs strictly increase, and (where the server promises gap fill,
  which is every connection that has a cursor) without skipping one;
- each seq has one body and one sender whoever received it, and it is the
  acknowledged body and sender, and the stored one.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from db.engine import create_engine
from db.models import Message
from tests.clients import Client


@dataclass(frozen=True)
class Acked:
    """A message its sender holds an `ack` for."""

    seq: int
    # None where the test kept no copy of what it sent: then only the stored row, the
    # same for every party, vouches for the body.
    body: str | None = None


@dataclass(frozen=True)
class Stored:
    """A row of the conversation's messages, as the database holds it."""

    seq: int
    sender: str
    client_id: str | None
    body: str


@dataclass
class Connection:
    """The `msg` frames one socket received for one conversation, in arrival order."""

    frames: list[dict[str, Any]]
    # The `last_seq` the client sent when this socket joined the conversation: it
    # asked for everything after it, so frames at or below it are duplicates.
    resumed_from: int = 0
    # False for a console that follows a chat without a cursor yet (reconnected, no
    # `resume` sent): the server does not fill its gaps (docs/protocol.md, 3.5).
    fills_gaps: bool = True

    @classmethod
    def of(
        cls,
        client: Client,
        conversation_id: str | None = None,
        *,
        resumed_from: int = 0,
        fills_gaps: bool = True,
    ) -> Connection:
        """A test client's `msg` frames; staff frames are kept for `conversation_id`."""
        return cls(
            [f for f in client.seen if f["type"] == "msg" and _about(f, conversation_id)],
            resumed_from,
            fills_gaps,
        )


@dataclass
class Party:
    """One side of a conversation, across every connection it has had."""

    name: str
    connections: list[Connection] = field(default_factory=list)
    # False for a party that stopped following the chat (released, transferred): it
    # must hold a gap-free prefix, not everything.
    complete: bool = True


def acknowledged(
    clients: Iterable[Client],
    bodies: Mapping[str, str] | None,
    conversation_id: str | None = None,
) -> dict[str, Acked]:
    """What one side holds acks for, over all its connections, keyed by client_id.

    `bodies` maps each client_id the side sent to the body it sent (None if the test
    did not keep them). An ack for a client_id that was never sent, or two acks for one
    client_id naming different seqs, break the contract on their own and raise at once.
    """
    held: dict[str, Acked] = {}
    for client in clients:
        for frame in client.seen:
            if frame["type"] != "ack" or not _about(frame, conversation_id):
                continue
            client_id, seq = frame["client_id"], frame["seq"]
            if bodies is not None and client_id not in bodies:
                raise AssertionError(f"an ack for {client_id!r}, which was never sent")
            earlier = held.get(client_id)
            if earlier is not None and earlier.seq != seq:
                raise AssertionError(
                    f"{client_id!r} acknowledged as seq {earlier.seq} and as seq {seq}"
                )
            held[client_id] = Acked(seq, None if bodies is None else bodies[client_id])
    return held


async def stored(database_url: str, conversation_id: str) -> list[Stored]:
    """The conversation's messages in the database, in seq order."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            result = await connection.execute(
                select(Message)
                .where(Message.conversation_id == uuid.UUID(conversation_id))  # type: ignore[arg-type]
                .order_by(Message.seq)  # type: ignore[arg-type]
            )
            return [Stored(m.seq, m.sender, m.client_id, m.body) for m in result.all()]
    finally:
        await engine.dispose()


def violations(
    acked: Mapping[str, Mapping[str, Acked]],
    parties: Sequence[Party],
    *,
    last_seq: int | None = None,
    rows: Sequence[Stored] | None = None,
) -> list[str]:
    """Every way delivery in one conversation fell short, in words; empty if none.

    `acked` maps each sender as `msg.from` names it ("child", "counsellor") to what it
    holds acks for. `rows` is what the database stored, if the test read it; the last
    seq is then the highest stored. Otherwise `last_seq` is the conversation's last seq
    if the test knows it, or else the highest seq anyone acknowledged or received.
    """
    if rows is not None and last_seq is not None:
        raise TypeError("pass the stored rows or the last seq, not both")
    problems: list[str] = []
    expected: dict[int, tuple[str, str, str | None]] = {}  # seq -> (sender, client_id, body)
    for sender, messages in acked.items():
        for client_id, message in messages.items():
            other = expected.get(message.seq)
            if other is not None:
                problems.append(
                    f"seq {message.seq} acknowledged twice: to {other[0]} as {other[1]!r} "
                    f"and to {sender} as {client_id!r}"
                )
                continue
            if message.seq < 1:
                problems.append(f"{sender}'s {client_id!r} acknowledged as seq {message.seq}")
            expected[message.seq] = (sender, client_id, message.body)

    received = [f for p in parties for c in p.connections for f in c.frames]
    if rows is not None:
        table = {row.seq: row for row in rows}
        last = max(table, default=0)
        problems += _storage(rows, expected)
    else:
        table = {}
        last = (
            last_seq
            if last_seq is not None
            else max([*expected, *(f["seq"] for f in received)], default=0)
        )
        problems += [
            f"{sender}'s {client_id!r} acknowledged as seq {seq}, beyond the last seq {last}"
            for seq, (sender, client_id, _body) in sorted(expected.items())
            if seq > last
        ]
    problems += _one_version_of_each(received, expected, table)
    for party in parties:
        problems += _party(party, last)
    return problems


def in_order(seqs: Iterable[int], after: int = 0) -> int:
    """The highest seq up to which nothing is missing: what a page resumes from."""
    held = set(seqs)
    last = after
    while last + 1 in held:
        last += 1
    return last


def describe(problems: Sequence[str], most: int = 20) -> str:
    """For an assertion message: the first problems, and how many more there were."""
    shown = "\n  ".join(problems[:most])
    more = f"\n  ... and {len(problems) - most} more" if len(problems) > most else ""
    return f"{len(problems)} delivery violations:\n  {shown}{more}"


def _about(frame: dict[str, Any], conversation_id: str | None) -> bool:
    """The child's frames carry no conversation_id; staff frames do."""
    return conversation_id is None or frame.get("conversation_id", conversation_id) == (
        conversation_id
    )


def _storage(
    rows: Sequence[Stored], expected: Mapping[int, tuple[str, str, str | None]]
) -> list[str]:
    """The stored seqs are 1..N, nothing is stored twice, and every ack names its row."""
    problems: list[str] = []
    seqs = [row.seq for row in rows]
    if seqs != list(range(1, len(seqs) + 1)):
        problems.append(f"the database holds seqs {_ranges(seqs)}, not 1..{len(seqs)}")
    rows_of: dict[tuple[str, str], list[int]] = defaultdict(list)
    for stored_row in rows:
        if stored_row.client_id is not None:
            rows_of[stored_row.sender, stored_row.client_id].append(stored_row.seq)
    problems += [
        f"{sender}'s {client_id!r} stored {len(at)} times, as seqs {_ranges(at)}"
        for (sender, client_id), at in rows_of.items()
        if len(at) > 1
    ]
    table = {r.seq: r for r in rows}
    for seq, (sender, client_id, body) in sorted(expected.items()):
        row = table.get(seq)
        if row is None:
            problems.append(f"{sender}'s {client_id!r} acknowledged as seq {seq}, not stored")
        elif (row.sender, row.client_id) != (sender, client_id):
            problems.append(
                f"seq {seq} stored as {row.sender}'s {row.client_id!r}, not {sender}'s "
                f"acknowledged {client_id!r}"
            )
        elif body is not None and row.body != body:
            problems.append(
                f"seq {seq} stored other than {sender}'s {client_id!r} ({_short(body)})"
            )
    return problems


def _one_version_of_each(
    received: list[dict[str, Any]],
    expected: Mapping[int, tuple[str, str, str | None]],
    table: Mapping[int, Stored],
) -> list[str]:
    """One sender and body per seq, everywhere, and the acknowledged and stored one."""
    problems: list[str] = []
    versions: dict[int, set[tuple[str, str]]] = defaultdict(set)
    client_ids: dict[int, set[str | None]] = defaultdict(set)
    for frame in received:
        versions[frame["seq"]].add((frame["from"], frame["body"]))
        client_ids[frame["seq"]].add(frame.get("client_id"))
    for seq in sorted(versions):
        if len(versions[seq]) > 1:
            senders = sorted(sender for sender, _body in versions[seq])
            problems.append(f"seq {seq} arrived with {len(versions[seq])} bodies ({senders})")
        if len(client_ids[seq] - {None}) > 1:
            problems.append(f"seq {seq} arrived with client_ids {_sorted(client_ids[seq])}")
        if seq in expected:
            sender, client_id, body = expected[seq]
            if any(v[0] != sender or body not in (None, v[1]) for v in versions[seq]):
                problems.append(
                    f"seq {seq} arrived other than {sender}'s acknowledged {client_id!r}"
                    + (f" ({_short(body)})" if body is not None else "")
                )
            if any(c not in (None, client_id) for c in client_ids[seq]):
                problems.append(
                    f"seq {seq} arrived as {_sorted(client_ids[seq])}, not {client_id!r}"
                )
        row = table.get(seq)
        if row is not None:
            if any(version != (row.sender, row.body) for version in versions[seq]):
                problems.append(
                    f"seq {seq} arrived other than stored: {row.sender}'s {_short(row.body)}"
                )
            if any(c not in (None, row.client_id) for c in client_ids[seq]):
                problems.append(
                    f"seq {seq} arrived as {_sorted(client_ids[seq])}, stored as {row.client_id!r}"
                )
    return problems


def _party(party: Party, last: int) -> list[str]:
    problems: list[str] = []
    first_on: dict[int, int] = {}  # seq -> the connection it first arrived on
    for n, connection in enumerate(party.connections, start=1):
        where = f"{party.name}, connection {n}"
        high = connection.resumed_from
        had: set[int] = set()
        for frame in connection.frames:
            seq = frame["seq"]
            if seq in had or seq <= connection.resumed_from:
                problems.append(
                    f"{where}: seq {seq} again (it resumed from {connection.resumed_from}"
                    f" and had {_ranges(had)})"
                )
            elif seq < high:
                problems.append(f"{where}: seq {seq} after seq {high}")
            else:
                if seq > high + 1 and connection.fills_gaps:
                    problems.append(f"{where}: seq {seq} after seq {high}, skipping between")
                if seq in first_on:
                    problems.append(
                        f"{where}: seq {seq} again (it came on connection {first_on[seq]})"
                    )
                else:
                    first_on[seq] = n
            had.add(seq)
            high = max(high, seq)
    holds = set(first_on)
    if party.complete:
        missing = sorted(set(range(1, last + 1)) - holds)
        if missing:
            problems.append(f"{party.name} never received {_ranges(missing)} of 1..{last}")
    else:
        prefix = in_order(holds)
        after = sorted(s for s in holds if s > prefix)
        if after:
            problems.append(
                f"{party.name} (left) holds 1..{prefix} and then {_ranges(after)}, not a prefix"
            )
    beyond = sorted(s for s in holds if s > last)
    if beyond:
        problems.append(f"{party.name} received {_ranges(beyond)}, beyond the last seq {last}")
    return problems


def _ranges(seqs: Iterable[int]) -> str:
    """[1, 2, 3, 7] as "1-3, 7": a lost burst reads as one range, not a page of numbers."""
    spans: list[list[int]] = []
    for seq in sorted(seqs):
        if spans and seq == spans[-1][1] + 1:
            spans[-1][1] = seq
        else:
            spans.append([seq, seq])
    if not spans:
        return "nothing"
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _sorted(client_ids: Iterable[str | None]) -> list[str | None]:
    """Client_ids for a message, a frame without one (None) first."""
    return sorted(client_ids, key=lambda c: (c is not None, c or ""))


def _short(body: str, most: int = 30) -> str:
    return repr(body if len(body) <= most else body[:most] + "...")
