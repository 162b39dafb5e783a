"""The NATS users of the hub `nrm up` starts: one nkey per role, secure by default.

The same accounts and per-user permissions as the secured deployment (permissions.py), but a
user proves who it is with an Ed25519 nkey instead of a client certificate: the server keeps
only public keys, each role's seed stays in `DATA_DIR/credentials/<role>.nk` (mode 0600), and
`connect_options` signs the server's challenge with it. An agency's user may publish commands
only on subjects ending in its own id, so the hub learns the sender from the server's
permission check, never from the command body.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from pathlib import Path

import nkeys

from services.runtime.connection import credential_file
from services.runtime.permissions import ANONYMOUS_USER, HubAuth, User, render_accounts


def ensure_seeds(directory: Path, roles: Iterable[str]) -> dict[str, str]:
    """Each role's public nkey, creating a seed for a role that has none. Existing seeds are
    kept, so clients holding them keep working across restarts."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    public: dict[str, str] = {}
    for role in roles:
        path = credential_file(directory, role)
        if not path.exists():
            seed = nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(seed + b"\n")
        keypair = nkeys.from_seed(bytearray(path.read_bytes().strip()))
        public[role] = keypair.public_key.decode()
        keypair.wipe()
    return public


def nkey_accounts(auth: HubAuth, directory: Path) -> str:
    """The nats-server `accounts { ... }` block with every user identified by its nkey."""
    public = ensure_seeds(directory, [user.name for user in auth.users])

    def by_nkey(user: User) -> str:
        return f'nkey: "{public[user.name]}"'

    # A client without credentials is admitted as a user with no rights at all, rather than
    # refused: some clients (nats-py with max_reconnect_attempts=0) retry a refused
    # handshake forever, while a powerless session fails each request at once.
    nobody = secrets.token_urlsafe(24)
    accounts = render_accounts(auth, by_nkey, anonymous=nobody)
    return f"{accounts}no_auth_user: {ANONYMOUS_USER}\n"
