"""Checks for deploy/: Kubernetes manifests, the Dockerfile and the compose stack.

Nothing here needs Docker, a cluster or the network: manifests are schema-validated offline
(kubernetes-validate), the Dockerfile is linted (hadolint), the compose file is parsed, and
the DEV-ONLY helper scripts run against loopback servers.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, backslash continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    """Instructions of the last build stage (the image that ships)."""
    ins = dockerfile_instructions()
    last_from = max(i for i, (word, _) in enumerate(ins) if word == "FROM")
    return ins[last_from:]


def final_stage_user() -> str:
    users = [arg for word, arg in final_stage() if word == "USER"]
    assert users, "the final stage sets no USER (it would run as root)"
    return users[-1]
