#!/usr/bin/env python3
"""Development TLS material for a secured NRM hub: a CA, one certificate per NATS node and for
the HTTPS gateway (`nodes/gateway.pem`), and one client certificate per NATS user (services,
operators, agencies, cross-border peers); the agencies' again in `agencies/`, for the gateway.

    python deploy/scripts/dev-certs.py OUT_DIR [--country kg]
        [--nodes nats-1,nats-2,nats-3,gateway] [--users identifier,referral,...]

Everything is generated fresh: no key, password or certificate is committed. The hub maps a
client certificate to its NATS user by the certificate's e-mail SAN (`verify_and_map`), so a
user's only secret is its private key. Private keys are written mode 0600. For production use
your own CA and issue certificates with the same SANs (see deploy/README.md).

Needs only `cryptography` (a dependency of the hub, so the hub's venv runs it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Who needs a client certificate; agencies come from the registry (see nats_users()).
SERVICES = ("identifier", "referral", "shelter", "audit", "custody")
OPERATORS = ("admin", "auditor")
VALID_DAYS = 90


def user_email(user: str, country: str) -> str:
    """The e-mail SAN that names a NATS user; must match services/runtime/permissions.py."""
    return f"{user}@{country}.nrm-hub"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _builder(subject: x509.Name, issuer: x509.Name, public_key: object) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
    )


def _name(common_name: str, country: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"NRM Hub {country.upper()} (dev)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_ca(out: Path, country: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    name = _name(f"NRM Hub {country.upper()} development CA", country)
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write_cert(out / "ca.pem", cert)
    _write_key(out / "ca-key.pem", key)
    return cert, key


def _leaf(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    common_name: str,
    country: str,
    sans: list[x509.GeneralName],
    usages: list[x509.ObjectIdentifier],
    path: Path,
) -> None:
    ca_cert, ca_key = ca
    key = _key()
    cert = (
        _builder(_name(common_name, country), ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_cert(path.with_suffix(".pem"), cert)
    _write_key(path.with_name(path.name + "-key.pem"), key)


def make_node(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], out: Path, node: str, country: str
) -> None:
    """A node serves clients and peers, and dials its peers' routes: server and client auth."""
    sans: list[x509.GeneralName] = [
        x509.DNSName(node),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    _leaf(ca, node, country, sans, usages, out / "nodes" / node)


def make_user(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], out: Path, user: str, country: str
) -> None:
    sans: list[x509.GeneralName] = [x509.RFC822Name(user_email(user, country))]
    _leaf(ca, user, country, sans, [ExtendedKeyUsageOID.CLIENT_AUTH], out / "users" / user)


def _registry(registry: Path | None) -> dict[str, list[dict[str, str]]]:
    import json

    if registry is None:
        registry = Path(__file__).resolve().parents[2] / "services" / "agencies" / "kg.json"
    loaded: dict[str, list[dict[str, str]]] = json.loads(registry.read_text("utf-8"))
    return loaded


def agency_ids(registry: Path | None) -> list[str]:
    return [agency["id"] for agency in _registry(registry)["agencies"]]


def peer_countries(registry: Path | None) -> list[str]:
    """The registry's cross-border partners: each gets a leaf certificate."""
    return [peer["country"] for peer in _registry(registry).get("peers", [])]


def generate(
    out: Path, country: str, nodes: list[str], users: list[str], agencies: list[str]
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ca = make_ca(out, country)
    for node in nodes:
        make_node(ca, out, node, country)
    for user in users:
        make_user(ca, out, user, country)
    share_with_gateway(out, [user for user in users if user in agencies])


def share_with_gateway(out: Path, agencies: list[str]) -> None:
    """The agencies' certificates again, alone in `agencies/`: the directory the HTTPS
    gateway is given (NRM_GATEWAY_AGENCY_CERTS), so it holds no service's or operator's key.
    In production it holds only the agencies that use HTTPS."""
    shared = out / "agencies"
    shared.mkdir(exist_ok=True)
    for agency in agencies:
        for name, mode in ((f"{agency}.pem", 0o644), (f"{agency}-key.pem", 0o600)):
            fd = os.open(shared / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "wb") as handle:
                handle.write((out / "users" / name).read_bytes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="directory to write into (created)")
    parser.add_argument("--country", default="kg")
    # The gateway's server certificate beside the nodes': the name compose gives it.
    parser.add_argument("--nodes", default="nats-1,nats-2,nats-3,gateway")
    parser.add_argument("--registry", type=Path, help="agency registry (default: packaged kg)")
    parser.add_argument(
        "--peers",
        help="cross-border peer countries (leaf certs leaf-<country>; default: the registry's)",
    )
    parser.add_argument(
        "--users", help="only these users (default: every service, operator, agency and peer)"
    )
    args = parser.parse_args(argv)
    if args.users:
        users = [u for u in args.users.split(",") if u]
    else:
        countries = peer_countries(args.registry) if args.peers is None else args.peers.split(",")
        peers = [f"leaf-{p}" for p in countries if p]
        users = [*SERVICES, *OPERATORS, *agency_ids(args.registry), *peers]
    nodes = [n for n in args.nodes.split(",") if n]
    generate(args.out, args.country, nodes, users, agency_ids(args.registry))
    print(
        f"wrote CA, {len(args.nodes.split(','))} node and {len(users)} user certificates "
        f"to {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
