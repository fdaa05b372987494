"""Shared fixtures. ``neo4j_driver``: a driver for the real Neo4j server that ``make test`` starts.

Connection settings come from the ``LINKAGE_NEO4J_*`` environment, else from ``.neo4j/env`` and
``.neo4j/password`` written by ``scripts/neo4j.sh start``. When the server cannot be reached:
with ``LINKAGE_NEO4J_REQUIRED=1`` (``make test``, CI) the test fails and shows the end of the server
log (it keeps retrying for ``LINKAGE_NEO4J_WAIT`` seconds first, default 90, in case the server is
restarting); otherwise it is skipped with the reason. Tests that use it are marked
``@pytest.mark.neo4j``.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STATE = REPO / ".neo4j"


def neo4j_env() -> dict[str, str]:
    """LINKAGE_NEO4J_* settings: the environment first, then ``.neo4j/env``, then ``.neo4j/password``."""
    values: dict[str, str] = {}
    env_file = STATE / "env"
    if env_file.exists():
        for line in env_file.read_text(encoding="utf-8").splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip().startswith("LINKAGE_NEO4J_"):
                values[key.strip()] = value.strip()
    if "LINKAGE_NEO4J_PASSWORD_FILE" not in values and (STATE / "password").exists():
        values["LINKAGE_NEO4J_PASSWORD_FILE"] = str(STATE / "password")
    values.update({k: v for k, v in os.environ.items() if k.startswith("LINKAGE_NEO4J_")})
    return values


def _server_log(lines: int = 80) -> str:
    order = {"neo4j.log": 0, "console.log": 1}  # the server's own log first, the JVM's output next
    logs = sorted((STATE / "logs").glob("*.log"), key=lambda p: (order.get(p.name, 2), p.name)) \
        if (STATE / "logs").is_dir() else []
    if not logs:
        return f"(no server log in {STATE / 'logs'}: was 'bash scripts/neo4j.sh start' run?)"
    parts = []
    for log in logs:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        parts.append(f"---- last {len(tail)} lines of {log.relative_to(REPO)} ----\n" + "\n".join(tail))
    return "\n".join(parts)


@pytest.fixture(scope="session")
def neo4j_driver():
    """An open, verified driver (its ``linkage_env`` attribute holds the settings used)."""
    from linkage.errors import LinkageError
    from linkage.store.neo4j import Neo4jConfig, connect

    required = os.environ.get("LINKAGE_NEO4J_REQUIRED") == "1"
    env = neo4j_env()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # only while the config is read; restored right below
    try:
        config = Neo4jConfig.from_env()
    except LinkageError as exc:
        config, problem = None, str(exc)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    driver = None
    if config is not None:
        # The server may be (re)starting: with REQUIRED keep trying for a while, else try once.
        deadline = time.monotonic() + (float(os.environ.get("LINKAGE_NEO4J_WAIT", "90")) if required else 0)
        while True:
            try:
                driver = connect(config)
                break
            except LinkageError as exc:
                problem = str(exc)
                if time.monotonic() >= deadline:
                    break
                time.sleep(3)
    if driver is None:
        if required:
            pytest.fail(f"Neo4j is required (LINKAGE_NEO4J_REQUIRED=1) but unavailable: {problem}\n{_server_log()}",
                        pytrace=False)
        pytest.skip(f"Neo4j server not available ({problem}); 'make test' starts one")
    driver.linkage_env = env
    yield driver
    driver.close()
