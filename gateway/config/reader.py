"""Reading YAML safely: typed scalars with key paths, ${ENV} interpolation, duplicate-key refusal."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Mapping as TMapping
from urllib.parse import quote, urlsplit

import yaml

from ..errors import ConfigError
from ..redact import mask_url
from .schema import _ENV, _ID

# --------------------------------------------------------------------------- reading

_MISSING: Any = object()


class _EnvStr(str):
    """A string that came from a whole-scalar ``${NAME}``: may become a number or bool."""


class _Unset:
    """A scalar whose ``${NAME}`` is unset or empty: an optional key reads it as absent (its
    default applies, with one warning naming NAME); a required key is a config error naming
    the key and the variable. ``defaulted`` collects the key paths that fell back."""

    __slots__ = ("names", "empty", "path", "defaulted")

    def __init__(self, names: list[str], empty: bool, path: str) -> None:
        self.names, self.empty, self.path = names, empty, path
        self.defaulted: list[str] = []

    def message(self) -> str:
        return " and ".join(f"${{{n}}}" for n in self.names) + \
            (" is empty" if self.empty else " is not set")


def _unset_error(v: _Unset, path: str) -> ConfigError:
    return ConfigError(path, f"{v.message()} (set it in the environment, or write "
                             f"${{{v.names[0]}:-default}})")


class _Node:
    """A mapping being read; tracks the key path and refuses unknown keys."""

    def __init__(self, data: Any, path: str) -> None:
        if isinstance(data, _Unset):
            raise _unset_error(data, path)
        if not isinstance(data, dict):
            raise ConfigError(path, f"expected a mapping, got {_kind(data)}")
        for k in data:
            if not isinstance(k, str):
                raise ConfigError(path, f"keys must be strings, got {k!r}")
        self.data: dict[str, Any] = data
        self.path = path
        self.seen: set[str] = set()

    def sub(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        self.seen.add(key)
        value = self.data.get(key)
        if isinstance(value, _Unset):
            if default is _MISSING:
                raise _unset_error(value, self.sub(key))
            if self.sub(key) not in value.defaulted:
                value.defaulted.append(self.sub(key))
            return default
        if key not in self.data or self.data[key] is None and default is not _MISSING:
            if default is _MISSING:
                raise ConfigError(self.sub(key), "is required")
            return default
        return self.data[key]

    def node(self, key: str, *, required: bool = False) -> "_Node":
        value = self.raw(key, _MISSING if required else {})
        return _Node(value, self.sub(key))

    def str(self, key: str, default: Any = _MISSING, *, choices: tuple[str, ...] | None = None,
            nonempty: bool = True) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        return _as_str(value, self.sub(key), choices=choices, nonempty=nonempty)

    def int(self, key: str, default: Any = _MISSING, *, lo: int | None = None,
            hi: int | None = None) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        return _as_int(value, self.sub(key), lo, hi)

    def num(self, key: str, default: Any = _MISSING, *, lo: float | None = None,
            hi: float | None = None) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        return _as_num(value, self.sub(key), lo, hi)

    def bool(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        return _as_bool(value, self.sub(key))

    def strs(self, key: str, default: Any = _MISSING, *, nonempty: bool = False,
             choices: tuple[str, ...] | None = None) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        path = self.sub(key)
        if not isinstance(value, list):
            raise ConfigError(path, f"expected a list of strings, got {_kind(value)}")
        if nonempty and not value:
            raise ConfigError(path, "must not be empty")
        return tuple(_as_str(v, f"{path}[{i}]", choices=choices) for i, v in enumerate(value))

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            known = ", ".join(sorted(self.seen)) or "none"
            raise ConfigError(self.sub(unknown[0]), f"unknown key (known keys here: {known})")


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, _Unset):
        return v.message()
    return {bool: "a bool", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(v), type(v).__name__)


def _as_str(v: Any, path: str, *, choices: tuple[str, ...] | None = None,
            nonempty: bool = True) -> str:
    if isinstance(v, _Unset):
        raise _unset_error(v, path)
    if not isinstance(v, str):
        raise ConfigError(path, f"expected a string, got {_kind(v)}")
    if nonempty and not v:
        raise ConfigError(path, "must not be empty")
    if choices is not None and v not in choices:
        raise ConfigError(path, f"must be one of {', '.join(choices)} (got {v!r})")
    return str(v)


def _as_int(v: Any, path: str, lo: int | None, hi: int | None) -> int:
    if isinstance(v, _Unset):
        raise _unset_error(v, path)
    if isinstance(v, _EnvStr):
        try:
            v = int(v)
        except ValueError:
            raise ConfigError(path, f"expected an integer from the environment, got {str(v)!r}")
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(path, f"expected an integer, got {_kind(v)}")
    if lo is not None and v < lo or hi is not None and v > hi:
        raise ConfigError(path, f"must be between {lo} and {hi} (got {v})")
    return v


def _as_num(v: Any, path: str, lo: float | None, hi: float | None) -> float:
    if isinstance(v, _Unset):
        raise _unset_error(v, path)
    if isinstance(v, _EnvStr):
        try:
            v = float(v)
        except ValueError:
            raise ConfigError(path, f"expected a number from the environment, got {str(v)!r}")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
        raise ConfigError(path, f"expected a number, got {_kind(v)}")
    if lo is not None and v < lo or hi is not None and v > hi:
        raise ConfigError(path, f"must be between {lo} and {hi} (got {v})")
    return float(v)


def _as_bool(v: Any, path: str) -> bool:
    if isinstance(v, _Unset):
        raise _unset_error(v, path)
    if isinstance(v, _EnvStr) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    if not isinstance(v, bool):
        raise ConfigError(path, f"expected true or false, got {_kind(v)}")
    return v


def _check_id(value: str, path: str) -> str:
    if not _ID.match(value):
        raise ConfigError(path, f"{value!r} is not a valid id (letters, digits, _ . : -)")
    return value


def is_loopback(host: str | None) -> bool:
    """localhost or a loopback address: where plain http is acceptable for key fetches."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def quote_userinfo(url: str) -> str:
    """Percent-encode what would break URL parsing in the credentials of ``url`` (``/``,
    ``@``, ``?``, ``#``...), taking everything up to the LAST ``@`` as credentials: a Redis
    password holding ``@`` or ``/`` then reaches the server intact instead of being read as a
    host (which put part of it in connection errors). ``%xx`` already written is kept."""
    scheme, sep, rest = url.partition("://")
    at = rest.rfind("@")
    if not sep or at < 0:
        return url
    user, colon, password = rest[:at].partition(":")
    safe = "%!$&'()*+,;=-._~"
    enc = quote(user, safe=safe) + colon + quote(password, safe=safe)
    return f"{scheme}{sep}{enc}@{rest[at + 1:]}"


def _check_url(url: str, path: str, *, allow_http: bool, what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(path, f"{what} must be an absolute http(s) URL (got "
                                f"{mask_url(url)!r})")
    if parts.scheme == "http" and not allow_http and not is_loopback(parts.hostname):
        raise ConfigError(path, f"{what} must use https (http is accepted only for loopback "
                                "hosts, or with allow_insecure_http: true for local stacks)")
    return url


# --------------------------------------------------------------------------- env interpolation

def _interpolate(tree: Any, env: TMapping[str, str], missing: list[_Unset],
                 path: str = "") -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in string scalars (after YAML parsing).

    A scalar with an unset or empty NAME (and no default) becomes an ``_Unset`` marker,
    whatever else it holds: half a URL is never a value worth starting with.
    """
    if isinstance(tree, dict):
        return {k: _interpolate(v, env, missing, f"{path}.{k}" if path else str(k))
                for k, v in tree.items()}
    if isinstance(tree, list):
        return [_interpolate(v, env, missing, f"{path}[{i}]") for i, v in enumerate(tree)]
    if isinstance(tree, str) and "${" in tree:
        unset: list[str] = []
        empty = True

        def repl(m: re.Match[str]) -> str:
            nonlocal empty
            name, default = m.group(1), m.group(2)
            value = env.get(name)
            if value:
                return value
            if default is not None:
                return default
            unset.append(name)
            empty = empty and name in env
            return ""

        out = _ENV.sub(repl, tree)
        if unset:
            marker = _Unset(list(dict.fromkeys(unset)), empty, path)
            missing.append(marker)
            return marker
        if _ENV.fullmatch(tree):
            return _EnvStr(out)
        return out
    return tree


def env_warnings(markers: list[_Unset]) -> list[str]:
    """One warning per variable name: which optional keys fell back to their default."""
    by_name: dict[str, list[str]] = {}
    for m in markers:
        for name in m.names:
            paths = by_name.setdefault(name, [])
            for p in m.defaulted or [m.path]:
                if p not in paths:
                    paths.append(p)
    return [f"environment variable {name} is not set (or empty): {', '.join(paths)} "
            f"{'is' if len(paths) == 1 else 'are'} left out and the default applies"
            for name, paths in by_name.items()]


def _pairs(n: _Node, key: str) -> tuple[tuple[str, str], ...]:
    sub = n.node(key)
    out = tuple((k, sub.str(k)) for k in sub.data)
    sub.done()
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (a silently shadowed key is a config bug)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    keys: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in keys:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}",
                                                    key_node.start_mark)
        keys.add(key)
    loader.flatten_mapping(node)
    return dict(loader.construct_pairs(node, deep=deep))


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

