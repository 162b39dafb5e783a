"""RFC 6962 / RFC 9162 Merkle trees, pure: leaf and node hashing, the compact range the audit
service keeps (O(log n) hashes), and inclusion and consistency proofs.

Proofs are described first as the leaf ranges whose subtree roots they list (`inclusion_ranges`,
`consistency_ranges`), so a caller can compute them in memory from a list of leaf hashes or in
one streaming pass over a log too large to hold (`range_roots`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

Range = tuple[int, int]  # leaves [lo, hi)


class ProofError(ValueError):
    """A proof that does not verify, with the reason."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class CompactRange:
    """The roots of the perfect subtrees covering leaves [0, size): enough to append a leaf
    and to compute the root, in O(log size) memory."""

    def __init__(self, size: int = 0, nodes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(nodes) != size.bit_count():
            raise ValueError(f"a compact range of size {size} has {size.bit_count()} nodes")
        if any(len(node) != HASH_SIZE for node in nodes):
            raise ValueError("compact range nodes must be 32-byte hashes")
        self.size = size
        self.nodes = list(nodes)

    def append(self, hashed_leaf: bytes) -> None:
        node, size = hashed_leaf, self.size
        while size & 1:
            node = node_hash(self.nodes.pop(), node)
            size >>= 1
        self.nodes.append(node)
        self.size += 1

    def extend(self, hashes: bytes) -> None:
        """`append` each 32-byte leaf hash of `hashes` in turn (the verifier's hot loop)."""
        nodes, size, sha256 = self.nodes, self.size, hashlib.sha256
        for at in range(0, len(hashes), HASH_SIZE):
            node, carry = hashes[at : at + HASH_SIZE], size
            while carry & 1:
                node = sha256(b"\x01" + nodes.pop() + node).digest()
                carry >>= 1
            nodes.append(node)
            size += 1
        self.size = size

    def append_subtree(self, root: bytes, height: int) -> None:
        """Append the root of a perfect subtree of 2**height leaves: `append` scaled up, for
        a tree whose size is a multiple of 2**height (RFC 9162 compact ranges merge so)."""
        if self.size & ((1 << height) - 1):
            raise ValueError(f"a subtree of height {height} cannot start at leaf {self.size}")
        nodes, node, carry = self.nodes, root, self.size >> height
        while carry & 1:
            node = hashlib.sha256(b"\x01" + nodes.pop() + node).digest()
            carry >>= 1
        nodes.append(node)
        self.size += 1 << height

    def extend_levels(self, levels: Sequence[bytes], first: int, stop: int) -> None:
        """Append leaves [size, stop) from `subtree_levels(hashes, first)`: a few subtree
        roots each time (O(log n) hashes here), not one leaf at a time."""
        position = self.size
        if not first <= position <= stop <= first + len(levels[0]) // HASH_SIZE:
            raise ValueError(f"leaves [{position}, {stop}) are not all in these levels")
        top = len(levels) - 1
        while position < stop:
            aligned = (position & -position).bit_length() - 1 if position else top
            height = min(aligned, (stop - position).bit_length() - 1, top)
            at = HASH_SIZE * ((position - level_start(first, height)) >> height)
            self.append_subtree(levels[height][at : at + HASH_SIZE], height)
            position += 1 << height

    def root(self) -> bytes:
        if not self.nodes:
            return EMPTY_ROOT
        root = self.nodes[-1]
        for node in reversed(self.nodes[:-1]):
            root = node_hash(node, root)
        return root

    def copy(self) -> CompactRange:
        return CompactRange(self.size, self.nodes)


def root_of(leaf_hashes: Iterable[bytes]) -> bytes:
    """MTH of the given leaf hashes (RFC 6962 §2.1)."""
    tree = CompactRange()
    for hashed in leaf_hashes:
        tree.append(hashed)
    return tree.root()


def level_start(first: int, height: int) -> int:
    """The first leaf of the first aligned subtree of 2**height leaves at or after `first`."""
    return -(-first >> height) << height


def subtree_levels(hashes: bytes, first: int) -> list[bytes]:
    """Level h holds the roots of every aligned perfect subtree of 2**h leaves (leaves
    [x, x + 2**h), x a multiple of 2**h: a node of any tree holding them) that lies inside the
    leaves [first, first + n) whose n leaf hashes are `hashes`, in leaf order; level 0 is
    `hashes`. About n node hashes in all, so a worker can build them and the tree take a
    whole run of leaves in a few steps (`CompactRange.extend_levels`)."""
    levels = [hashes]
    sha256, blob, start, height = hashlib.sha256, hashes, first, 0
    while True:
        skip = (start >> height) & 1  # the first subtree is a right child: its pair is outside
        pairs = (len(blob) // HASH_SIZE - skip) // 2
        if pairs <= 0:
            return levels
        at = HASH_SIZE * skip
        blob = b"".join(
            [
                sha256(b"\x01" + blob[i : i + 2 * HASH_SIZE]).digest()
                for i in range(at, at + 2 * HASH_SIZE * pairs, 2 * HASH_SIZE)
            ]
        )
        start += skip << height
        height += 1
        levels.append(blob)


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The subtrees whose roots form PATH(index, D[0:size]), bottom up (RFC 9162 §2.1.3.1)."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} is not in a tree of size {size}")
    ranges: list[Range] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index - lo < k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo = lo + k
    ranges.reverse()
    return ranges


def consistency_ranges(old_size: int, new_size: int) -> list[Range]:
    """The subtrees whose roots form PROOF(old_size, D[0:new_size]) (RFC 9162 §2.1.4.1)."""
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to {new_size}")
    if old_size in (0, new_size):
        return []
    ranges: list[Range] = []
    m, lo, hi, complete = old_size, 0, new_size, True
    while True:
        n = hi - lo
        if m == n:
            if not complete:
                ranges.append((lo, hi))
            break
        k = _split(n)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            m, lo, complete = m - k, lo + k, False
    ranges.reverse()
    return ranges


def range_roots(ranges: Sequence[Range], leaf_hashes: Iterable[bytes]) -> dict[Range, bytes]:
    """The root of each range, in one pass over the leaf hashes (ranges must not overlap)."""
    pending = sorted(ranges)
    roots: dict[Range, bytes] = {}
    current: CompactRange | None = None
    position = 0
    for index, hashed in enumerate(leaf_hashes):
        if position < len(pending) and index == pending[position][0]:
            current = CompactRange()
        if current is not None:
            current.append(hashed)
            if index + 1 == pending[position][1]:
                roots[pending[position]] = current.root()
                current, position = None, position + 1
        if position == len(pending):
            break
    missing = [r for r in pending if r not in roots]
    if missing:
        raise ValueError(f"the leaves end before range {missing[0]}")
    return roots


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    ranges = inclusion_ranges(index, len(leaf_hashes))
    roots = range_roots(ranges, leaf_hashes)
    return [roots[r] for r in ranges]


def consistency_proof(old_size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    ranges = consistency_ranges(old_size, len(leaf_hashes))
    roots = range_roots(ranges, leaf_hashes)
    return [roots[r] for r in ranges]


def _check_hashes(*hashes: bytes) -> None:
    if any(len(h) != HASH_SIZE for h in hashes):
        raise ProofError("a hash is not 32 bytes")


def root_from_inclusion_proof(
    index: int, size: int, hashed_leaf: bytes, proof: Sequence[bytes]
) -> bytes:
    """RFC 9162 §2.1.3.2: the root that `proof` implies for leaf `index` of a tree of `size`."""
    if not 0 <= index < size:
        raise ProofError(f"index {index} is beyond tree size {size}")
    _check_hashes(hashed_leaf, *proof)
    fn, sn, root = index, size - 1, hashed_leaf
    for sibling in proof:
        if sn == 0:
            raise ProofError("the proof is longer than the tree is high")
        if fn & 1 or fn == sn:
            root = node_hash(sibling, root)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            root = node_hash(root, sibling)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("the proof is shorter than the tree is high")
    return root


def verify_inclusion(
    index: int, size: int, hashed_leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    if root_from_inclusion_proof(index, size, hashed_leaf, proof) != root:
        raise ProofError(f"leaf {index} is not in the tree of size {size} with that root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2: raise unless tree (new_size, new_root) extends (old_size, old_root)."""
    if not 0 <= old_size <= new_size:
        raise ProofError(f"size went from {old_size} back to {new_size}")
    _check_hashes(*proof)
    if old_size == new_size:
        if proof:
            raise ProofError("a proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError(f"two different roots for size {old_size}")
        return
    if old_size == 0:
        if proof:
            raise ProofError("a proof from the empty tree must be empty")
        return
    if not proof:
        raise ProofError("empty consistency proof")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    first = second = path[0]
    for node in path[1:]:
        if sn == 0:
            raise ProofError("the proof is longer than the tree is high")
        if fn & 1 or fn == sn:
            first, second = node_hash(node, first), node_hash(node, second)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            second = node_hash(second, node)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("the proof is shorter than the tree is high")
    if first != old_root:
        raise ProofError(f"the proof does not lead to the old root of size {old_size}")
    if second != new_root:
        raise ProofError(f"the proof does not lead to the new root of size {new_size}")
