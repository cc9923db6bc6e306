"""The rules by which an old primary's writes after the fork are judged (drtopo/database/diverged.py), pure.

On the lab: the fault matrix's row "partition healing after promotion (lease off)" and the failback after SIGKILL
(tests/integration/test_failback.py) take real writes back.
"""

from __future__ import annotations

import pytest

from drtopo.database.diverged import XID_SPACE, Action, Diverged, Fork, FoundRow, TableShape, classify
from drtopo.failover.takeback import TakeBack, fork_key, found_key


@pytest.mark.parametrize(
    ("kind", "old_after", "new_after", "old_shared", "rekeyable", "expected"),
    [
        # missing on the new primary
        ("missing", True, False, True, False, Action.INSERT),  # the old primary's insert
        ("missing", False, False, False, False, Action.INSERT),  # open at the fork, committed on the old side only
        ("missing", False, False, True, False, Action.NONE),  # a row both had: the new primary deleted it
        ("missing", True, False, True, True, Action.REKEY),  # a generated key: the next id, never a live client's
        # changed
        ("changed", True, False, True, False, Action.UPDATE),  # the old primary's update of an untouched row
        ("changed", False, False, False, False, Action.UPDATE),  # an update open at the fork
        ("changed", False, True, True, False, Action.NONE),  # the new primary's own update
        ("changed", True, True, True, False, Action.CONFLICT),  # both wrote it
        ("changed", False, True, False, False, Action.CONFLICT),  # open at the fork, and the new one wrote it too
        ("changed", True, True, True, True, Action.REKEY),  # two rows took one generated key
        # on the new primary only
        ("extra", False, False, True, False, Action.DELETED),  # a row both had: the old primary deleted it
        ("extra", False, True, True, False, Action.NONE),  # the new primary's insert
    ],
)
def test_each_differing_key_gets_what_its_two_versions_say(
    kind: str, old_after: bool, new_after: bool, old_shared: bool, rekeyable: bool, expected: Action
) -> None:
    assert classify(kind, True, old_after, new_after, old_shared, rekeyable) == expected


def test_without_the_fork_a_change_is_a_conflict_and_an_insert_is_still_taken_back() -> None:
    assert classify("missing", False) == Action.INSERT
    assert classify("missing", False, rekeyable=True) == Action.REKEY
    assert classify("changed", False, True, True, True, True) == Action.CONFLICT
    assert classify("extra", False) == Action.NONE  # a delete cannot be told from the new primary's insert


def test_an_unknown_kind_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="kind 'moved' is unknown; expected missing, changed or extra"):
        classify("moved", True)


def test_the_fork_compares_transaction_ids_as_postgresql_does_across_the_wrap() -> None:
    fork = Fork(next_xid=5 * XID_SPACE + 100)
    assert fork.xid32 == 100
    assert fork.after(100) and fork.after(101) and fork.after(100 + 2**31 - 1)
    assert not fork.after(99) and not fork.after(100 - 2**31)
    near_wrap = Fork(next_xid=3 * XID_SPACE + XID_SPACE - 10)
    assert near_wrap.after(5)  # handed out after the wrap: after the fork
    assert not near_wrap.after(XID_SPACE - 11)
    assert near_wrap.full(XID_SPACE - 11) == 3 * XID_SPACE + XID_SPACE - 11
    assert fork.full(99) == 5 * XID_SPACE + 99
    assert Fork.from_dict(fork.to_dict()) == fork


def test_a_table_is_rekeyable_only_with_a_generated_key_and_a_natural_one() -> None:
    base = {"table": "t", "columns": ("id", "tx")}
    assert TableShape(key="id", generated=True, natural=("tx",), **base).rekeyable
    assert not TableShape(key="id", generated=False, natural=("tx",), **base).rekeyable
    assert not TableShape(key="id", generated=True, natural=(), **base).rekeyable
    assert not TableShape(key=None, generated=True, natural=("tx",), **base).rekeyable


def _found() -> Diverged:
    rows = [
        FoundRow("t", 1, Action.INSERT, {"id": 1}),
        FoundRow("t", 2, Action.REKEY, {"id": 2}),
        FoundRow("t", 3, Action.CONFLICT, {"id": 3}),
        FoundRow("t", 4, Action.DELETED),
        FoundRow("t", 5, Action.NONE),
    ]
    return Diverged(Fork(1000), rows)


def test_before_a_re_apply_everything_found_is_listed_after_it_only_conflicts_and_deletes() -> None:
    found = _found()
    assert [r.key for r in found.found] == [1, 2, 3, 4]
    assert [r.key for r in found.listed] == [1, 2, 3, 4] and found.reapplied == []
    assert "nothing re-applied yet" in found.summary()
    found.applied = True
    assert [r.key for r in found.reapplied] == [1, 2]
    assert [r.key for r in found.listed] == [3, 4]
    assert found.counts() == {"insert": 1, "update": 0, "rekey": 1, "conflict": 1, "deleted": 1}
    assert found.summary() == "4 rows found (1 insert, 1 rekey, 1 conflict, 1 deleted); 2 re-applied; 2 listed"
    document = found.to_dict()
    assert (document["found"], document["reapplied"], document["listed"]) == (4, 2, 2)
    assert [r["key"] for r in document["rows"]] == [1, 2, 3, 4]  # the conflicts' rows are kept, with content
    assert document["rows"][0]["row"] == {"id": 1}


def test_what_the_rebuild_would_discard_is_what_is_left_listed() -> None:
    found = _found()
    found.applied = True
    took = TakeBack(True, found, ["/state/diverged/prod-x.json"])
    assert took.left == 2
    assert took.as_dict()["counts"]["conflict"] == 1
    assert TakeBack(False, reason="down").left == 0 and TakeBack(False).as_dict()["found"] is None
    assert Diverged(None).summary() == "no write of the old primary is missing on the new one"


def test_the_records_live_under_their_own_prefixes_by_old_primary() -> None:
    assert fork_key("prod") == "fork/prod.json"
    assert found_key("prod", "20261202T000000Z") == "diverged/prod/20261202T000000Z.json"
