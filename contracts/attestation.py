"""Victim-status attestations: the credential, the hub's public key file and the status list,
as the hub writes them and as an offline verifier reads them (docs/ATTESTATION.md).

The credential is an SD-JWT VC (IETF draft-ietf-oauth-sd-jwt-vc) with no selectively
disclosable claim: a compact JWS signed by the hub with Ed25519 (JOSE `alg` "Ed25519",
RFC 9864; `kid` = the RFC 7638 thumbprint of the hub's key), followed by the SD-JWT
separator `~`. Its claims say who issued it (`iss`, the country hub), when (`iat`), until when
(`exp`), which attestation it is (`jti`), what it attests (`vct`, `victim_status`,
`nrm_country`) and where its revocation bit is (`status.status_list` = {idx, uri}, IETF
draft-ietf-oauth-status-list). No name, no date of birth, no document number, no case id.

The person is bound to it, when the case has a document number and the person did not
withhold it, by `doc_binding` = {alg: "pbkdf2-sha256", iter, salt, hash}:
hash = PBKDF2-HMAC-SHA256(normalised document number, salt, iter). An officer holding the
person's document recomputes it; a reader without the document learns nothing quickly (the
salt is per attestation, and the iterations make guessing each number slow).

The status list is a Token Status List JWT (`typ` statuslist+jwt) signed with the same key:
one bit per attestation (1 = revoked), zlib-compressed, base64url. It carries an `exp`: a
verifier refuses a list that is out of date, so a revocation reaches offline checks within
the list's validity.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import unicodedata
import zlib
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any
from uuid import UUID

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jws
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import OKPKey

ALG = "Ed25519"  # RFC 9864: the fully specified name of EdDSA over Ed25519
CREDENTIAL_TYP = "dc+sd-jwt"
STATUS_LIST_TYP = "statuslist+jwt"
VCT = "urn:nrm-hub:vct:victim-status:1"
BINDING_ALG = "pbkdf2-sha256"
BINDING_ITERATIONS = 600_000
SALT_BYTES = 16
# A list this long at least, whatever was issued: the list does not tell how many there are.
MIN_LIST_SIZE = 131_072
STATUS_LIST_VALIDITY = dt.timedelta(days=7)
STATUS_LIST_TTL = dt.timedelta(days=1)
# Longer inputs are not ours: a credential is ~750 characters; a status list of a million
# entries, half revoked at random, is ~220 KB of text.
MAX_TEXT = {CREDENTIAL_TYP: 20_000, STATUS_LIST_TYP: 4_000_000}
KEY_FORMAT = "nrm-attestation-key/1"


def issuer_for(country: str) -> str:
    """The `iss` of a country hub's credentials, e.g. urn:nrm-hub:kg."""
    return f"urn:nrm-hub:{country}"


def status_list_uri(country: str, list_id: str) -> str:
    return f"urn:nrm-hub:{country}:status-list:{list_id}"


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


def _epoch(moment: dt.datetime) -> int:
    return int(moment.timestamp())


def _moment(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


# --- the person's binding -----------------------------------------------------------------


def normalise_document_number(text: str) -> str:
    """Letters and digits only, upper case (NFKC first): `an 123-45.67` and `AN1234567` are
    one number, as an officer may type it either way."""
    folded = unicodedata.normalize("NFKC", text).upper()
    return "".join(ch for ch in folded if ch.isalnum())


def binding_hash(salt: bytes, document_number: str, iterations: int) -> bytes:
    number = normalise_document_number(document_number)
    return hashlib.pbkdf2_hmac("sha256", number.encode(), salt, iterations)


@dataclass(frozen=True)
class Binding:
    salt: bytes
    digest: bytes
    iterations: int

    @classmethod
    def of(cls, salt: bytes, document_number: str, iterations: int) -> Binding:
        return cls(salt, binding_hash(salt, document_number, iterations), iterations)

    def claim(self) -> dict[str, Any]:
        return {
            "alg": BINDING_ALG,
            "iter": self.iterations,
            "salt": _b64url(self.salt),
            "hash": _b64url(self.digest),
        }

    @classmethod
    def from_claim(cls, claim: Any) -> Binding:
        if not isinstance(claim, dict) or claim.get("alg") != BINDING_ALG:
            raise ValueError("doc_binding is not pbkdf2-sha256")
        iterations = claim.get("iter")
        if not isinstance(iterations, int) or not 1 <= iterations <= 10_000_000:
            raise ValueError("doc_binding iterations out of range")
        return cls(_unb64url(str(claim["salt"])), _unb64url(str(claim["hash"])), iterations)

    def matches(self, document_number: str) -> bool:
        recomputed = binding_hash(self.salt, document_number, self.iterations)
        return hmac.compare_digest(recomputed, self.digest)


# --- keys ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HubPublicKey:
    """A hub's attestation key as published (`nrm attest key`): a JWK with its issuer."""

    issuer: str
    key: OKPKey

    @property
    def kid(self) -> str:
        return str(self.key.thumbprint())

    def to_json(self) -> str:
        jwk = {**self.key.as_dict(private=False), "kid": self.kid, "alg": ALG, "use": "sig"}
        return json.dumps({"format": KEY_FORMAT, "iss": self.issuer, "jwk": jwk}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> HubPublicKey:
        try:
            record = json.loads(text)
            if record.get("format") != KEY_FORMAT:
                raise ValueError("not an NRM hub attestation key")
            jwk = record["jwk"]
            if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or "d" in jwk:
                raise ValueError("not an Ed25519 public key")
            key = OKPKey.import_key({k: jwk[k] for k in ("kty", "crv", "x")})
            issuer = str(record["iss"])
        except (ValueError, KeyError, TypeError, AttributeError, JoseError) as exc:
            raise ValueError(f"unreadable hub key: {exc}") from None
        return cls(issuer, key)


@dataclass(frozen=True)
class HubSigningKey:
    """The hub's attestation signing key: an Ed25519 seed of 32 bytes in a 0600 file."""

    issuer: str
    seed: bytes

    @property
    def _private(self) -> OKPKey:
        return OKPKey.import_key(Ed25519PrivateKey.from_private_bytes(self.seed))

    @property
    def public(self) -> HubPublicKey:
        return HubPublicKey(self.issuer, OKPKey.import_key(self._private.as_dict(private=False)))

    def salt_for(self, attestation_id: UUID) -> bytes:
        """The binding salt of one attestation: unpredictable without the hub's key, and the
        same on a retry, so a retried issuance signs the same credential again."""
        message = f"nrm-attestation-salt/1|{attestation_id}".encode()
        return hmac.new(self.seed, message, hashlib.sha256).digest()[:SALT_BYTES]

    def sign(self, typ: str, claims: dict[str, Any]) -> str:
        header = {"alg": ALG, "typ": typ, "kid": self.public.kid}
        payload = json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()
        return jws.serialize_compact(header, payload, self._private, algorithms=[ALG])


def read_signing_key(path: Path, issuer: str) -> HubSigningKey:
    """Raises ValueError naming what is wrong (the caller names the setting)."""
    try:
        seed = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"attestation signing key file {path} does not exist") from None
    if len(seed) != 32:
        raise ValueError(f"attestation signing key file {path} must hold exactly 32 bytes")
    return HubSigningKey(issuer, seed)


# --- the credential -----------------------------------------------------------------------


@dataclass(frozen=True)
class Attestation:
    """What a credential says, and all it says."""

    attestation_id: UUID
    issuer: str
    country: str  # ISO 3166-1 alpha-2 of the NRM, e.g. KG
    victim_status: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    status_index: int
    status_uri: str
    binding: Binding | None

    def claims(self) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "iat": _epoch(self.issued_at),
            "exp": _epoch(self.expires_at),
            "jti": str(self.attestation_id),
            "vct": VCT,
            "victim_status": self.victim_status,
            "nrm_country": self.country,
            "status": {"status_list": {"idx": self.status_index, "uri": self.status_uri}},
        }
        if self.binding is not None:
            claims["doc_binding"] = self.binding.claim()
        return claims

    @classmethod
    def from_claims(cls, claims: Any) -> Attestation:
        if not isinstance(claims, dict) or claims.get("vct") != VCT:
            raise ValueError("not a victim-status attestation")
        try:
            reference = claims["status"]["status_list"]
            binding = claims.get("doc_binding")
            index = reference["idx"]
            if not isinstance(index, int) or index < 0:
                raise ValueError("status index")
            return cls(
                attestation_id=UUID(str(claims["jti"])),
                issuer=str(claims["iss"]),
                country=str(claims["nrm_country"]),
                victim_status=str(claims["victim_status"]),
                issued_at=_moment(int(claims["iat"])),
                expires_at=_moment(int(claims["exp"])),
                status_index=index,
                status_uri=str(reference["uri"]),
                binding=None if binding is None else Binding.from_claim(binding),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"an attestation claim is missing or malformed: {exc}") from None

    def sign(self, key: HubSigningKey) -> str:
        """The credential text: the signed JWT and the SD-JWT separator (no disclosures)."""
        return key.sign(CREDENTIAL_TYP, self.claims()) + "~"


# --- the status list ----------------------------------------------------------------------


@dataclass(frozen=True)
class StatusList:
    """One bit per attestation, by its status index: 1 = revoked (Token Status List, bits 1;
    bit i is bit i % 8, least significant first, of byte i // 8)."""

    size: int
    revoked: frozenset[int]

    @classmethod
    def of(cls, issued: int, revoked: frozenset[int]) -> StatusList:
        size = max(MIN_LIST_SIZE, -(-issued // 8) * 8)
        return cls(size, revoked)

    def encode(self) -> str:
        bits = bytearray(self.size // 8)
        for index in self.revoked:
            bits[index // 8] |= 1 << (index % 8)
        return _b64url(zlib.compress(bytes(bits), 9))

    @classmethod
    def decode(cls, lst: str) -> StatusList:
        raw = zlib.decompressobj()
        bits = raw.decompress(_unb64url(lst), 1 << 24)  # 16 MiB: 134M entries at most
        if raw.unconsumed_tail:
            raise ValueError("status list too large")
        revoked = frozenset(
            i * 8 + b for i, byte in enumerate(bits) if byte for b in range(8) if byte >> b & 1
        )
        return cls(len(bits) * 8, revoked)

    def is_revoked(self, index: int) -> bool:
        if index >= self.size:
            raise IndexError(index)
        return index in self.revoked

    def sign(self, key: HubSigningKey, uri: str, issued_at: dt.datetime) -> str:
        claims = {
            "iss": key.issuer,
            "sub": uri,
            "iat": _epoch(issued_at),
            "exp": _epoch(issued_at + STATUS_LIST_VALIDITY),
            "ttl": int(STATUS_LIST_TTL.total_seconds()),
            "status_list": {"bits": 1, "lst": self.encode()},
        }
        return key.sign(STATUS_LIST_TYP, claims)


# --- verifying, offline --------------------------------------------------------------------


class Verdict(IntEnum):
    """The result of a check, and `nrm attest verify`'s exit code."""

    VALID = 0
    UNREADABLE = 2  # not an attestation, or not a readable file or key
    TAMPERED = 3  # the signature does not match: changed, or forged
    EXPIRED = 4  # past its validity (or not yet valid at the date asked)
    REVOKED = 5  # the hub's status list says revoked
    WRONG_ISSUER = 6  # signed by another hub's key than the one given
    BINDING_MISMATCH = 7  # the document number given is not the one it was issued for
    STATUS_LIST_UNUSABLE = 8  # the status list is out of date, another hub's, or not intact


@dataclass(frozen=True)
class Verification:
    verdict: Verdict
    reason: str
    attestation: Attestation | None = None
    binding_checked: bool = False


@dataclass(frozen=True)
class _Signed:
    header: dict[str, Any]
    compact: bytes


def _parse(text: str, typ: str) -> _Signed:
    text = text.strip()
    if len(text) > MAX_TEXT[typ]:
        raise ValueError("too long")
    if typ == CREDENTIAL_TYP:
        text = text.removesuffix("~")
    compact = text.encode("ascii", errors="strict")
    if compact.count(b".") != 2:
        raise ValueError("not a compact JWS")
    header = json.loads(_unb64url(compact.split(b".")[0].decode()))
    if not isinstance(header, dict) or header.get("typ") != typ or header.get("alg") != ALG:
        raise ValueError(f"not a {typ} signed with {ALG}")
    return _Signed(header, compact)


def _verified_claims(signed: _Signed, key: HubPublicKey) -> dict[str, Any]:
    """Raises BadSignatureError when the signature does not match."""
    payload = jws.deserialize_compact(signed.compact, key.key, algorithms=[ALG]).payload
    claims = json.loads(payload)
    if not isinstance(claims, dict):
        raise ValueError("the payload is not a JSON object")
    return claims


def verify(
    credential: str,
    key: HubPublicKey,
    status_list: str,
    at: dt.datetime,
    document_number: str | None = None,
) -> Verification:
    """Check a credential with nothing but the hub's public key and its status list."""
    try:
        signed = _parse(credential, CREDENTIAL_TYP)
    except (ValueError, UnicodeError):
        return Verification(Verdict.UNREADABLE, "this is not an NRM attestation")
    if signed.header.get("kid") != key.kid:
        return Verification(Verdict.WRONG_ISSUER, "not signed with this hub's key")
    try:
        claims = _verified_claims(signed, key)
    except BadSignatureError:
        return Verification(Verdict.TAMPERED, "the signature does not match: altered or forged")
    except (ValueError, JoseError):
        return Verification(Verdict.TAMPERED, "the signed content does not decode: altered")
    try:
        attestation = Attestation.from_claims(claims)
    except ValueError:
        return Verification(Verdict.UNREADABLE, "signed by the hub but not an attestation")
    if attestation.issuer != key.issuer:
        return Verification(Verdict.WRONG_ISSUER, "issued by another hub than this key's")
    if at < attestation.issued_at - dt.timedelta(minutes=5):
        return Verification(Verdict.EXPIRED, "not yet valid at that date", attestation)
    if at >= attestation.expires_at:
        return Verification(Verdict.EXPIRED, "expired", attestation)
    unusable = _status_list_problem(status_list, key, attestation, at)
    if isinstance(unusable, str):
        return Verification(Verdict.STATUS_LIST_UNUSABLE, unusable, attestation)
    if unusable.is_revoked(attestation.status_index):
        return Verification(Verdict.REVOKED, "revoked by the hub", attestation)
    if document_number is None:
        return Verification(Verdict.VALID, "valid", attestation)
    if attestation.binding is None:
        return Verification(
            Verdict.BINDING_MISMATCH, "this attestation is bound to no document", attestation
        )
    if not attestation.binding.matches(document_number):
        return Verification(
            Verdict.BINDING_MISMATCH, "issued for another document number", attestation
        )
    return Verification(Verdict.VALID, "valid", attestation, binding_checked=True)


def _status_list_problem(
    text: str, key: HubPublicKey, attestation: Attestation, at: dt.datetime
) -> StatusList | str:
    """The status list if it can be relied on for this credential, else why not."""
    try:
        signed = _parse(text, STATUS_LIST_TYP)
    except (ValueError, UnicodeError):
        return "the status list file is not a status list"
    if signed.header.get("kid") != key.kid:
        return "the status list is not signed with this hub's key"
    try:
        claims = _verified_claims(signed, key)
    except (ValueError, JoseError):
        return "the status list's signature does not match: altered"
    try:
        if claims.get("sub") != attestation.status_uri or claims.get("iss") != key.issuer:
            return "the status list is not the one this attestation points to"
        if at >= _moment(int(claims["exp"])):
            return "the status list is out of date: get a fresh one from the hub"
        reference = claims["status_list"]
        if reference.get("bits") != 1:
            return "the status list uses an unknown status size"
        status = StatusList.decode(str(reference["lst"]))
        status.is_revoked(attestation.status_index)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, zlib.error):
        return "the status list is malformed or does not cover this attestation"
    return status


def read_status_list_claims(text: str, key: HubPublicKey) -> dict[str, Any]:
    """A status list's verified claims (for `nrm attest status-list` to report on)."""
    return _verified_claims(_parse(text, STATUS_LIST_TYP), key)
