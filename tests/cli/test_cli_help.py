"""`--help` names each default once, and never suggests a password on the command line."""

from __future__ import annotations

import re

import pytest
from commandline import Cli

COMMANDS = [
    [],
    ["models"],
    ["versions"],
    ["search"],
    ["aliases"],
    ["alias"],
    ["alias", "set"],
    ["alias", "delete"],
    ["approvals"],
    ["request-promotion"],
    ["approve"],
    ["reject"],
    ["audit"],
    ["lineage"],
    ["serve"],
    ["deploy"],
    ["deployments"],
    ["monitor"],
    ["check"],
    ["checks"],
    ["policy"],
    ["alerts"],
    ["alerts", "list"],
    ["alerts", "rules"],
    ["alerts", "channels"],
    ["alerts", "silence"],
    ["alerts", "ack"],
]


def _options(text: str) -> dict[str, str]:
    """Each option's entry in the help (its flags, then its help text), by first flag."""
    entries: dict[str, str] = {}
    section = text.split("\noptions:\n", 1)[1]
    current = None
    for line in section.splitlines():
        if re.match(r"^  -", line):
            current = line.split()[0].rstrip(",")
            entries[current] = line
        elif current and line.startswith("   "):
            entries[current] += " " + line.strip()
        else:
            current = None
    return entries


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "pilothouse")
def test_each_default_is_named_once(cli: Cli, command: list[str]) -> None:
    text = cli.ok(*command, "--help")
    assert text.startswith(f"usage: pilothouse {' '.join(command)}".rstrip())
    assert "(default: None)" not in text
    options = _options(text)
    assert "-h" in options
    for entry in options.values():
        assert len(re.findall(r"\bdefault\b", entry)) <= 1, entry
    if "--registry" in options:
        entry = options["--registry"]
        assert "$PGPASSWORD or ~/.pgpass" in entry and "never on the command line" in entry
        assert "default $PILOTHOUSE_URI" in entry
        assert not re.search(r"://[^\s/@]*:[^\s/@]*@", entry), entry  # no user:password@
    if command == ["serve"]:
        assert "(default 8000; 0 picks a free one)" in options["--port"]
        assert "(default 127.0.0.1" in options["--host"]
        assert "[shutdown_timeout_s]" in options["--shutdown-timeout-s"]
    if command == ["deploy"]:
        assert "(default 64)" in options["--max-batch-size"]
        assert "(default 0" in options["--max-queue-delay-us"]
    if command == []:
        for name in ("models", "versions", "aliases", "approvals", "audit", "lineage", "serve"):
            assert re.search(rf"^    {name}\s", text, re.M), name
        assert "--version" in options
