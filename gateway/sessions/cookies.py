"""Cookie header reading, stripping our cookies before forwarding, and Set-Cookie values."""

from __future__ import annotations

Headers = list[tuple[bytes, bytes]]


def cookie_values(headers: Headers, name: str) -> list[str]:
    """Every value of cookie ``name`` across the request's Cookie headers (in order)."""
    out = []
    key = name.encode("latin-1")
    for k, v in headers:
        if k.lower() != b"cookie":
            continue
        for part in v.split(b";"):
            n, sep, val = part.strip().partition(b"=")
            if sep and n == key:
                out.append(val.strip().strip(b'"').decode("latin-1"))
    return out


def without_cookies(headers: Headers, names: frozenset[bytes]) -> Headers:
    """``headers`` with the named cookies removed; other cookies pass byte-for-byte, a Cookie
    header left empty is dropped. Returns the same list when there is nothing to remove."""
    if not any(k.lower() == b"cookie" and any(n in v for n in names) for k, v in headers):
        return headers
    out: Headers = []
    for k, v in headers:
        if k.lower() != b"cookie":
            out.append((k, v))
            continue
        kept = [p for p in v.split(b";") if p.strip().partition(b"=")[0] not in names]
        value = b";".join(kept).strip()
        if value:
            out.append((k, value))
    return out


def set_cookie(name: str, value: str, *, same_site: str, max_age: int | None = None) -> bytes:
    """``__Host-`` rules: Secure, Path=/, no Domain; always HttpOnly."""
    parts = [f"{name}={value}", "Path=/", "Secure", "HttpOnly",
             f"SameSite={same_site.capitalize()}"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    return "; ".join(parts).encode("latin-1")


def clear_cookie(name: str, *, same_site: str) -> bytes:
    return set_cookie(name, "", same_site=same_site, max_age=0)
