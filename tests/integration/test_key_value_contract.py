"""The key-value contract: one suite, run against every adapter of the port
(services/runtime/keyvalue.py).

`memory` runs without a server (a unit test: `-m "not integration"` keeps it); `jetstream`
runs against a real nats-server, on a bucket configured as the bootstrap configures the
hub's (history 1, file storage). Both must give the same answers: an adapter that passes
here can stand in for the other in the handlers' tests."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StorageType

from services.runtime.in_memory import InMemoryKeyValue
from services.runtime.keyvalue import Entry, KeyNotFound, KeyValue, WrongRevision
from services.runtime.keyvalue_jetstream import JetStreamKeyValue


@pytest.fixture
async def jetstream_bucket(nc: Client) -> KeyValue:
    config = KeyValueConfig(
        bucket=f"contract-{uuid.uuid4().hex[:8]}", history=1, storage=StorageType.FILE
    )
    return JetStreamKeyValue(nc, config.bucket, await nc.jetstream().create_key_value(config))


# Not async: it asks for the server's fixtures only for the JetStream run, outside the loop.
@pytest.fixture(params=["memory", pytest.param("jetstream", marks=pytest.mark.integration)])
def bucket(request: pytest.FixtureRequest) -> KeyValue:
    if request.param == "memory":
        return InMemoryKeyValue()
    jetstream: KeyValue = request.getfixturevalue("jetstream_bucket")
    return jetstream


def key() -> str:
    return str(uuid.uuid4())


async def test_an_unknown_key_is_not_found_and_an_empty_bucket_has_no_keys(
    bucket: KeyValue,
) -> None:
    with pytest.raises(KeyNotFound):
        await bucket.get(key())
    assert await bucket.keys() == []


async def test_create_writes_once_and_get_returns_the_value_and_its_revision(
    bucket: KeyValue,
) -> None:
    k = key()
    revision = await bucket.create(k, b"first")
    entry = await bucket.get(k)
    assert (entry.key, entry.value, entry.revision) == (k, b"first", revision)
    with pytest.raises(WrongRevision):
        await bucket.create(k, b"second")
    assert (await bucket.get(k)).value == b"first"


async def test_update_is_compare_and_set_on_the_latest_revision(bucket: KeyValue) -> None:
    k = key()
    first = await bucket.create(k, b"1")
    second = await bucket.update(k, b"2", last=first)
    assert second > first
    with pytest.raises(WrongRevision):  # stale: someone updated in between
        await bucket.update(k, b"stale", last=first)
    with pytest.raises(WrongRevision):  # no such key yet
        await bucket.update(key(), b"new", last=first)
    with pytest.raises(WrongRevision):  # a revision of 0 is not "create"
        await bucket.update(key(), b"new", last=0)
    assert await bucket.get(k) == Entry(k, b"2", second)


async def test_of_two_updates_from_the_same_revision_one_wins(bucket: KeyValue) -> None:
    k = key()
    base = await bucket.create(k, b"0")
    results = await asyncio.gather(
        bucket.update(k, b"a", last=base), bucket.update(k, b"b", last=base), return_exceptions=True
    )
    assert sorted(type(r).__name__ for r in results) == ["WrongRevision", "int"]
    won = b"a" if isinstance(results[0], int) else b"b"
    assert (await bucket.get(k)).value == won


async def test_revisions_increase_across_the_bucket(bucket: KeyValue) -> None:
    a, b = key(), key()
    revisions = [
        await bucket.put(a, b"1"),
        await bucket.create(b, b"1"),
        await bucket.put(a, b"2"),
    ]
    assert revisions == sorted(revisions) and len(set(revisions)) == 3
    assert (await bucket.get(a)).revision == revisions[2]


async def test_deleted_and_purged_keys_are_gone_and_can_be_created_again(
    bucket: KeyValue,
) -> None:
    deleted, purged, kept = key(), key(), key()
    for k in (deleted, purged, kept):
        await bucket.put(k, b"v")
    await bucket.delete(deleted)
    await bucket.purge(purged)
    for k in (deleted, purged):
        with pytest.raises(KeyNotFound):
            await bucket.get(k)
    assert await bucket.keys() == [kept]
    await bucket.create(deleted, b"again")  # no value: create may write
    await bucket.create(purged, b"again")
    assert sorted(await bucket.keys()) == sorted([deleted, purged, kept])
    assert (await bucket.get(purged)).value == b"again"
    await bucket.delete(key())  # deleting a key that never existed is no error


async def test_a_conditional_delete_removes_only_the_revision_it_names(bucket: KeyValue) -> None:
    k = key()
    read = await bucket.put(k, b"due")
    rewritten = await bucket.put(k, b"due again")  # written after the sweep read `read`
    with pytest.raises(WrongRevision):
        await bucket.delete(k, last=read)
    assert await bucket.get(k) == Entry(k, b"due again", rewritten)
    with pytest.raises(WrongRevision):  # a revision of 0 is not "unconditionally"
        await bucket.delete(k, last=0)
    with pytest.raises(WrongRevision):  # a key that never existed has no such revision
        await bucket.delete(key(), last=rewritten)
    await bucket.delete(k, last=rewritten)
    with pytest.raises(KeyNotFound):
        await bucket.get(k)
    assert await bucket.keys() == []


async def test_keys_lists_the_keys_with_a_value(bucket: KeyValue) -> None:
    written = {f"idx.{uuid.uuid4().hex}" for _ in range(3)} | {f"case.{key()}"}
    for k in written:
        await bucket.put(k, b"x")
    assert sorted(await bucket.keys()) == sorted(written)


async def test_keys_under_a_group_list_that_group_alone(bucket: KeyValue) -> None:
    group, other = key(), key()
    mine = {f"{group}.a", f"{group}.b.c"}
    for k in (*mine, f"{group}.gone", group, f"{group}x.a", f"{other}.a"):
        await bucket.put(k, b"x")
    await bucket.delete(f"{group}.gone")
    assert sorted(await bucket.keys(under=group)) == sorted(mine)
    assert await bucket.keys(under=key()) == []
    for bad in ("", "a.", "*", ">", "a b"):
        with pytest.raises(ValueError):
            await bucket.keys(under=bad)


async def test_entries_give_each_key_with_a_value_its_latest_value_and_revision(
    bucket: KeyValue,
) -> None:
    assert await bucket.entries() == []
    changed, deleted, purged, kept = key(), key(), key(), key()
    for k in (changed, deleted, purged, kept):
        await bucket.put(k, b"first")
    latest = await bucket.put(changed, b"second")
    await bucket.delete(deleted)
    await bucket.purge(purged)
    found = {e.key: e for e in await bucket.entries()}
    assert sorted(found) == sorted([changed, kept])
    assert found[changed].value == b"second" and found[changed].revision == latest
    assert found[kept] == await bucket.get(kept)


async def test_a_key_outside_the_allowed_characters_is_refused(bucket: KeyValue) -> None:
    for bad in ("", "a b", "a.", ".a", "a*", "a>"):
        with pytest.raises(ValueError):
            await bucket.put(bad, b"x")
        with pytest.raises(ValueError):
            await bucket.get(bad)


# Only the JetStream adapter lists by reading a stream through a consumer of its own.


@pytest.mark.integration
async def test_listing_a_bucket_often_leaves_no_consumer_behind(nc: Client) -> None:
    """nats-py's `keys()` left its consumer on the server for five minutes; past about a
    thousand of them the server refused new ones and the listing failed."""
    name = f"listed-{uuid.uuid4().hex[:8]}"
    config = KeyValueConfig(bucket=name, history=1, storage=StorageType.FILE)
    bucket = JetStreamKeyValue(nc, name, await nc.jetstream().create_key_value(config))
    await bucket.put("kept", b"v")
    for _ in range(1_100):
        assert await bucket.keys() == ["kept"]
    info = await nc.jetstream().stream_info(f"KV_{name}")
    assert info.state.consumer_count == 0


@pytest.mark.integration
async def test_a_bucket_with_history_lists_each_keys_latest_write(nc: Client) -> None:
    name = f"history-{uuid.uuid4().hex[:8]}"
    config = KeyValueConfig(bucket=name, history=5, storage=StorageType.FILE)
    bucket = JetStreamKeyValue(nc, name, await nc.jetstream().create_key_value(config))
    changed, deleted, revived = key(), key(), key()
    for k in (changed, deleted, revived):
        await bucket.put(k, b"first")
    await bucket.delete(deleted)
    await bucket.delete(revived)
    latest = await bucket.put(changed, b"second")
    again = await bucket.put(revived, b"again")
    found = {e.key: e for e in await bucket.entries()}
    assert found == {
        changed: Entry(changed, b"second", latest),
        revived: Entry(revived, b"again", again),
    }
