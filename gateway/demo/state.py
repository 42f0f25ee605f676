"""The demo's state directory: the dev issuer's RSA key and the credential signing key.

Keys are created once and reused, so `poolgate demo token alice` (another process) signs with
the same key the running demo's issuer publishes. Files are written atomically and 0600; a
second demo racing on the same directory reads the key the first one wrote.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ISSUER_KEY_FILE = "issuer-rs256.pem"
CREDENTIAL_KEY_FILE = "credential-es256.pem"


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/poolgate-demo``, else ``~/.local/state/poolgate-demo``."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"),
                                                            ".local", "state")
    return Path(base) / "poolgate-demo"


def state_dir(override: str | None) -> Path:
    path = Path(override).expanduser() if override else default_state_dir()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path.resolve()


def _write_once(path: Path, data: bytes) -> None:
    """Create ``path`` with ``data`` unless it already exists (then keep the existing one)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            os.link(tmp, path)          # atomic, and refuses to replace a key another run wrote
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)


def _rsa_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _es256_pem() -> bytes:
    try:
        from ..forward.credential import generate_key_pem  # noqa: PLC0415
    except ImportError:         # the gateway's own generator is the reference when present
        key = ec.generate_private_key(ec.SECP256R1())
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    return generate_key_pem("ES256")


def issuer_key_pem(directory: Path) -> bytes:
    """The dev issuer's RSA-2048 private key (PEM), created on first use."""
    path = directory / ISSUER_KEY_FILE
    if not path.exists():
        _write_once(path, _rsa_pem())
    return path.read_bytes()


def credential_key_file(directory: Path) -> Path:
    """The gateway's ES256 credential signing key file, created on first use."""
    path = directory / CREDENTIAL_KEY_FILE
    if not path.exists():
        _write_once(path, _es256_pem())
    return path
