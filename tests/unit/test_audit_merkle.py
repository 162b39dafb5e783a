"""RFC 6962 / 9162 Merkle hashing and proofs against the published reference vectors
(certificate-transparency / transparency-dev/merkle test data), and the negative categories of
transparency-dev/merkle's verifier tests: each corrupted proof must be refused."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    level_start,
    root_of,
    subtree_levels,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
# MTH of the first n reference leaves, n = 1..8.
ROOTS = [
    bytes.fromhex(h)
    for h in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
# (leaf number 1-based, tree size, published audit path)
INCLUSION = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        2,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
HASHED = [leaf_hash(leaf) for leaf in LEAVES]


def _accepts_inclusion(index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes) -> bool:
    try:
        verify_inclusion(index, size, leaf, proof, root)
    except ProofError:
        return False
    return True


def _accepts_consistency(m: int, n: int, r1: bytes, r2: bytes, proof: list[bytes]) -> bool:
    try:
        verify_consistency(m, n, r1, r2, proof)
    except ProofError:
        return False
    return True


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert root_of([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_of_the_reference_trees(size: int) -> None:
    assert root_of(HASHED[:size]) == ROOTS[size - 1]


@pytest.mark.parametrize(("number", "size", "path"), INCLUSION)
def test_published_inclusion_proofs_are_generated_and_verified(
    number: int, size: int, path: list[str]
) -> None:
    proof = [bytes.fromhex(h) for h in path]
    assert inclusion_proof(number - 1, HASHED[:size]) == proof
    verify_inclusion(number - 1, size, HASHED[number - 1], proof, ROOTS[size - 1])


@pytest.mark.parametrize(("m", "n", "path"), CONSISTENCY)
def test_published_consistency_proofs_are_generated_and_verified(
    m: int, n: int, path: list[str]
) -> None:
    proof = [bytes.fromhex(h) for h in path]
    assert consistency_proof(m, HASHED[:n]) == proof
    verify_consistency(m, n, ROOTS[m - 1], ROOTS[n - 1], proof)


def _inclusion_probes(
    index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes
) -> list[tuple[str, int, int, bytes, list[bytes], bytes]]:
    probes = [
        ("index - 1", index - 1, size, leaf, proof, root),
        ("index + 1", index + 1, size, leaf, proof, root),
        ("index ^ 2", index ^ 2, size, leaf, proof, root),
        ("size * 2", index, size * 2, leaf, proof, root),
        ("size / 2", index, size // 2, leaf, proof, root),
        ("wrong leaf", index, size, b"WrongLeaf", proof, root),
        ("wrong leaf hash", index, size, SOME_HASH, proof, root),
        ("empty root", index, size, leaf, proof, EMPTY_ROOT),
        ("random root", index, size, leaf, proof, SOME_HASH),
        ("trailing garbage", index, size, leaf, [*proof, b""], root),
        ("trailing root", index, size, leaf, [*proof, root], root),
        ("preceding garbage", index, size, leaf, [b"", *proof], root),
        ("preceding root", index, size, leaf, [root, *proof], root),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([proof[i][0] ^ 8]) + proof[i][1:]
        probes.append((f"proof[{i}] bit 3 flipped", index, size, leaf, flipped, root))
    if proof:
        probes.append(("missing element", index, size, leaf, proof[:-1], root))
    if len(proof) > 1:
        probes.append(
            ("inserted element", index, size, leaf, [proof[0], SOME_HASH, *proof[1:]], root)
        )
    return probes


@pytest.mark.parametrize(("number", "size", "path"), INCLUSION)
def test_every_corrupted_inclusion_proof_is_refused(
    number: int, size: int, path: list[str]
) -> None:
    proof = [bytes.fromhex(h) for h in path]
    probes = _inclusion_probes(number - 1, size, HASHED[number - 1], proof, ROOTS[size - 1])
    accepted = [p[0] for p in probes if _accepts_inclusion(*p[1:])]
    assert accepted == []


@pytest.mark.parametrize(("m", "n", "path"), [c for c in CONSISTENCY if c[2]])
def test_every_corrupted_consistency_proof_is_refused(m: int, n: int, path: list[str]) -> None:
    proof = [bytes.fromhex(h) for h in path]
    r1, r2 = ROOTS[m - 1], ROOTS[n - 1]
    probes = [
        ("size1 - 1", m - 1, n, r1, r2, proof),
        ("size1 + 1", m + 1, n, r1, r2, proof),
        ("size1 ^ 2", m ^ 2, n, r1, r2, proof),
        ("size2 * 2", m, n * 2, r1, r2, proof),
        ("size2 / 2", m, n // 2, r1, r2, proof),
        ("wrong root1", m, n, b"WrongRoot", r2, proof),
        ("wrong root2", m, n, r1, b"WrongRoot", proof),
        ("swapped roots", m, n, r2, r1, proof),
        ("empty proof", m, n, r1, r2, []),
        ("trailing garbage", m, n, r1, r2, [*proof, b""]),
        ("trailing root1", m, n, r1, r2, [*proof, r1]),
        ("trailing root2", m, n, r1, r2, [*proof, r2]),
        ("preceding garbage", m, n, r1, r2, [b"", *proof]),
        ("preceding root1", m, n, r1, r2, [r1, *proof]),
        ("preceding root2", m, n, r1, r2, [r2, *proof]),
        ("preceding proof[0]", m, n, r1, r2, [proof[0], *proof]),
        ("truncated", m, n, r1, r2, proof[:-1]),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([proof[i][0] ^ 16]) + proof[i][1:]
        probes.append((f"proof[{i}] bit 4 flipped", m, n, r1, r2, flipped))
    accepted = [p[0] for p in probes if _accepts_consistency(*p[1:])]
    assert accepted == []


@pytest.mark.parametrize(
    ("m", "n", "r1", "r2", "proof", "ok"),
    [
        (0, 0, b"r1", b"r2", [], False),
        (1, 1, b"r1", b"r2", [], False),
        (0, 0, b"r1", b"r1", [], True),
        (0, 1, b"r1", b"r2", [], True),
        (1, 1, b"r2", b"r2", [], True),
        (1, 0, b"r1", b"r2", [], False),
        (2, 1, b"r1", b"r2", [], False),
        (1, 2, b"r1", b"r2", [], False),
        (0, 0, EMPTY_ROOT, b"r2", [], False),
        (1, 1, EMPTY_ROOT, b"r2", [], False),
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
        (0, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
        (1, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
    ],
)
def test_consistency_edge_cases_and_the_empty_tree(
    m: int, n: int, r1: bytes, r2: bytes, proof: list[bytes], ok: bool
) -> None:
    assert _accepts_consistency(m, n, r1, r2, proof) is ok


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 0), (2, 1), (1, 1)])
def test_no_inclusion_in_a_tree_too_small(index: int, size: int) -> None:
    assert not _accepts_inclusion(index, size, SOME_HASH, [], EMPTY_ROOT)


def test_single_leaf_tree_root_is_the_leaf_hash() -> None:
    hashed = leaf_hash(b"data")
    assert _accepts_inclusion(0, 1, hashed, [], hashed)
    assert not _accepts_inclusion(0, 1, b"", [], hashed)
    assert not _accepts_inclusion(0, 1, hashed, [], b"")


@given(st.integers(min_value=1, max_value=70), st.data())
def test_all_proofs_round_trip_on_random_sizes(size: int, data: st.DataObject) -> None:
    hashed = [leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    tree = CompactRange()
    for h in hashed:
        tree.append(h)
    assert len(tree.nodes) == size.bit_count()
    root = tree.root()
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    verify_inclusion(index, size, hashed[index], inclusion_proof(index, hashed), root)
    old = data.draw(st.integers(min_value=0, max_value=size))
    old_root = root_of(hashed[:old])
    verify_consistency(old, size, old_root, root, consistency_proof(old, hashed))
    # A different old root never verifies against the same proof.
    assert old in (0,) or not _accepts_consistency(
        old, size, SOME_HASH, root, consistency_proof(old, hashed)
    )


@given(st.integers(0, 300), st.integers(0, 300))
def test_extend_is_append_leaf_by_leaf(before: int, count: int) -> None:
    """The verifier's batch append builds the same compact range as one append per leaf."""
    hashes = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(before + count)]
    one_by_one, batched = CompactRange(), CompactRange()
    for hashed in hashes:
        one_by_one.append(hashed)
    for hashed in hashes[:before]:
        batched.append(hashed)
    batched.extend(b"".join(hashes[before:]))
    assert (batched.size, batched.nodes) == (one_by_one.size, one_by_one.nodes)
    assert batched.root() == one_by_one.root() == root_of(hashes)


@given(st.integers(0, 1100), st.integers(0, 300), st.data())
def test_subtree_levels_are_the_roots_of_the_aligned_subtrees(
    first: int, count: int, data: st.DataObject
) -> None:
    hashes = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(first + count)]
    levels = subtree_levels(b"".join(hashes[first:]), first)
    assert levels[0] == b"".join(hashes[first:])
    for height, level in enumerate(levels):
        start = level_start(first, height)
        expected = [
            root_of(hashes[x : x + (1 << height)])
            for x in range(start, first + count - (1 << height) + 1, 1 << height)
        ]
        assert [level[i : i + 32] for i in range(0, len(level), 32)] == expected
        assert expected or height == 0  # no empty level above the leaves
    # and none is missing: the next level up would hold no subtree
    assert level_start(first, len(levels)) + (1 << len(levels)) > first + count


@given(st.integers(0, 1100), st.integers(0, 300), st.data())
def test_extend_levels_is_append_leaf_by_leaf_at_every_stop(
    first: int, count: int, data: st.DataObject
) -> None:
    """The verifier appends a chunk's leaves by subtree roots, stopping anywhere (checkpoint
    sizes): the compact range and the root at each stop are those of one append per leaf."""
    hashes = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(first + count)]
    stops = sorted(data.draw(st.lists(st.integers(first, first + count), max_size=6)))
    levels = subtree_levels(b"".join(hashes[first:]), first)
    one_by_one, by_levels = CompactRange(), CompactRange()
    for hashed in hashes[:first]:
        one_by_one.append(hashed)
        by_levels.append(hashed)
    for stop in [*stops, first + count]:
        by_levels.extend_levels(levels, first, stop)
        while one_by_one.size < stop:
            one_by_one.append(hashes[one_by_one.size])
        assert (by_levels.size, by_levels.nodes) == (one_by_one.size, one_by_one.nodes)
        assert by_levels.root() == one_by_one.root() == root_of(hashes[:stop])


def test_a_subtree_is_appended_only_where_it_is_aligned() -> None:
    tree = CompactRange()
    tree.append(SOME_HASH)
    with pytest.raises(ValueError):
        tree.append_subtree(SOME_HASH, 1)
    with pytest.raises(ValueError):
        tree.extend_levels([SOME_HASH * 2], 2, 3)
