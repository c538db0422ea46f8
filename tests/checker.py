"""The delivery contract, checked from the clients' side (docs/protocol.md, section 3).

A fault test records what each sender had acknowledged and every `msg` frame each
party (the child, a counsellor, a monitoring supervisor) received on each of its
connections, then asks `violations(...)` what went wrong; the test asserts the list
is empty. The checker counts raw frames: the only deduplication it grants is the one
the protocol gives a client, resuming with `last_seq`. So on each connection a frame
whose seq is not above everything that connection already held (its `last_seq` when
it resumed, or a frame it received before) is a duplicate, even if a careful page
would have ignored it.

Rules, per conversation:

- every acknowledged message is stored at the seq its ack named, once: no two
  messages share a seq, and every seq is in 1..N;
- every party that stayed to the end received every seq 1..N exactly once;
  a party that left (a released counsellor) received a gap-free prefix;
- on each connection seqs strictly increase, and (where the server promises gap fill,
  which is every connection that has a cursor) without skipping one;
- each seq has one body and one sender whoever received it, and it is the
  acknowledged body and sender.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.clients import Client


@dataclass(frozen=True)
class Acked:
    """A message its sender holds an `ack` for."""

    seq: int
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
    bodies: Mapping[str, str],
    conversation_id: str | None = None,
) -> dict[str, Acked]:
    """What one side holds acks for, over all its connections, keyed by client_id.

    `bodies` maps each client_id the side sent to the body it sent. An ack for a
    client_id that was never sent, or two acks for one client_id naming different
    seqs, break the contract on their own and raise at once.
    """
    held: dict[str, Acked] = {}
    for client in clients:
        for frame in client.seen:
            if frame["type"] != "ack" or not _about(frame, conversation_id):
                continue
            client_id, seq = frame["client_id"], frame["seq"]
            if client_id not in bodies:
                raise AssertionError(f"an ack for {client_id!r}, which was never sent")
            earlier = held.get(client_id)
            if earlier is not None and earlier.seq != seq:
                raise AssertionError(
                    f"{client_id!r} acknowledged as seq {earlier.seq} and as seq {seq}"
                )
            held[client_id] = Acked(seq, bodies[client_id])
    return held


def violations(
    acked: Mapping[str, Mapping[str, Acked]],
    parties: Sequence[Party],
    *,
    last_seq: int | None = None,
) -> list[str]:
    """Every way delivery in one conversation fell short, in words; empty if none.

    `acked` maps each sender as `msg.from` names it ("child", "counsellor") to what it
    holds acks for. `last_seq` is the conversation's last seq if the test knows it (from
    the database); otherwise the highest seq anyone acknowledged or received.
    """
    problems: list[str] = []
    expected: dict[int, tuple[str, str, str]] = {}  # seq -> (sender, client_id, body)
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
    last = last_seq
    if last is None:
        last = max([*expected, *(f["seq"] for f in received)], default=0)
    problems += [
        f"{sender}'s {client_id!r} acknowledged as seq {seq}, beyond the last seq {last}"
        for seq, (sender, client_id, _body) in sorted(expected.items())
        if seq > last
    ]
    problems += _one_version_of_each(received, expected)
    for party in parties:
        problems += _party(party, last)
    return problems


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


def _one_version_of_each(
    received: list[dict[str, Any]], expected: Mapping[int, tuple[str, str, str]]
) -> list[str]:
    """One sender and body per seq, everywhere, and the acknowledged one."""
    problems: list[str] = []
    versions: dict[int, set[tuple[str, str]]] = defaultdict(set)
    client_ids: dict[int, set[str]] = defaultdict(set)
    for frame in received:
        versions[frame["seq"]].add((frame["from"], frame["body"]))
        if "client_id" in frame:
            client_ids[frame["seq"]].add(frame["client_id"])
    for seq in sorted(versions):
        if len(versions[seq]) > 1:
            senders = sorted(sender for sender, _body in versions[seq])
            problems.append(f"seq {seq} arrived with {len(versions[seq])} bodies ({senders})")
        if len(client_ids[seq]) > 1:
            problems.append(f"seq {seq} arrived with client_ids {sorted(client_ids[seq])}")
        if seq not in expected:
            continue
        sender, client_id, body = expected[seq]
        if any(version != (sender, body) for version in versions[seq]):
            problems.append(
                f"seq {seq} arrived other than {sender}'s acknowledged {client_id!r} "
                f"({_short(body)})"
            )
        if any(c != client_id for c in client_ids[seq]):
            problems.append(f"seq {seq} arrived as {sorted(client_ids[seq])}, not {client_id!r}")
    return problems


def _party(party: Party, last: int) -> list[str]:
    problems: list[str] = []
    counted: dict[int, int] = defaultdict(int)
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
                counted[seq] += 1
            had.add(seq)
            high = max(high, seq)
    holds = set(counted)
    if party.complete:
        missing = sorted(set(range(1, last + 1)) - holds)
        if missing:
            problems.append(f"{party.name} never received {_ranges(missing)} of 1..{last}")
    else:
        prefix = 0
        while prefix + 1 in holds:
            prefix += 1
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


def _short(body: str, most: int = 30) -> str:
    return repr(body if len(body) <= most else body[:most] + "...")
