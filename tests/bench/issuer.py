"""The benchmark's own identity source: an RSA-2048 key, RS256 tokens and a tiny JWKS server.

Signing 10,000 RS256 tokens costs several seconds, so the key and the minted tokens are kept
in a cache directory (system temp dir) and reused while they stay valid for at least an hour.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ISSUER = "https://bench.example/"
AUDIENCE = "bench"
KID = "bench-rs256"
TOKEN_LIFETIME = 6 * 3600           # minted tokens live this long
MIN_REMAINING = 3600                 # reuse cached tokens only with this much life left
CACHE_DIR = Path(os.environ.get("POOLGATE_BENCH_CACHE",
                                Path(tempfile.gettempdir()) / "poolgate-bench-cache"))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _uint(n: int) -> str:
    return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


@dataclass
class BenchKey:
    private_pem: bytes

    def __post_init__(self) -> None:
        self.key = serialization.load_pem_private_key(self.private_pem, password=None)
        self.public = self.key.public_key()

    @classmethod
    def generate(cls) -> "BenchKey":
        k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))

    def public_pem(self) -> bytes:
        return self.public.public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)

    def jwks(self) -> dict:
        nums = self.public.public_numbers()
        return {"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": KID,
                          "n": _uint(nums.n), "e": _uint(nums.e)}]}

    def mint(self, i: int, now: int | None = None, lifetime: int = TOKEN_LIFETIME) -> str:
        now = int(time.time()) if now is None else now
        header = {"alg": "RS256", "typ": "JWT", "kid": KID}
        claims = {"iss": ISSUER, "sub": f"user-{i:05d}", "aud": AUDIENCE,
                  "jti": str(uuid.uuid4()), "iat": now - 5, "exp": now + lifetime,
                  "scope": "orders:read orders:write", "cognito:groups": ["members"],
                  "custom:tenant_id": f"t{i % 100}"}
        signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                         + b64url(json.dumps(claims, separators=(",", ":")).encode()))
        sig = self.key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + b64url(sig)


def _mint_range(args: tuple[bytes, int, int, int]) -> list[str]:
    pem, start, stop, now = args
    key = BenchKey(pem)
    return [key.mint(i, now) for i in range(start, stop)]


def load_or_create(n_tokens: int, cache_dir: Path = CACHE_DIR) -> tuple[BenchKey, list[str]]:
    """Return the bench key and ``n_tokens`` distinct valid tokens (cached across runs)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    key_file, meta_file, tok_file = (cache_dir / "key.pem", cache_dir / "tokens.json",
                                     cache_dir / "tokens.txt")
    now = int(time.time())
    if key_file.exists():
        key = BenchKey(key_file.read_bytes())
    else:
        key = BenchKey.generate()
        key_file.write_bytes(key.private_pem)
        os.chmod(key_file, 0o600)
    try:
        meta = json.loads(meta_file.read_text())
        tokens = tok_file.read_text().split()
        if meta["exp"] - now >= MIN_REMAINING and len(tokens) >= n_tokens:
            return key, tokens[:n_tokens]
    except (OSError, ValueError, KeyError):
        pass
    workers = max(1, min(os.cpu_count() or 1, 4))
    step = -(-n_tokens // workers)
    chunks = [(key.private_pem, s, min(s + step, n_tokens), now)
              for s in range(0, n_tokens, step)]
    if n_tokens >= 500 and workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            tokens = [t for part in pool.map(_mint_range, chunks) for t in part]
    else:
        tokens = [t for c in chunks for t in _mint_range(c)]
    tok_file.write_text("\n".join(tokens) + "\n")
    meta_file.write_text(json.dumps({"exp": now + TOKEN_LIFETIME, "count": len(tokens)}))
    return key, tokens


class JwksServer:
    """Serves ``/jwks.json`` on 127.0.0.1 from a daemon thread (hit only at gateway start-up)."""

    def __init__(self, jwks: dict) -> None:
        body = json.dumps(jwks).encode()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                if self.path.split("?")[0] in ("/jwks.json", "/.well-known/jwks.json"):
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("Cache-Control", "max-age=300")
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self.send_error(404)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, name="jwks",
                                       daemon=True)

    def __enter__(self) -> "JwksServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
