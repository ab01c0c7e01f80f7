"""Browser tests: Playwright driving Debian's Chromium against pytest-django's live server.

Needs /usr/bin/chromium (`make chromium`) and axe-core in node_modules (`make node`); never
`playwright install`: Playwright's own browser builds cannot be downloaded here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

# Playwright's sync API runs an event loop in this thread; the live server's database access
# from the test body is synchronous and safe (pytest-django's documented workaround).
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
AXE_JS = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def _missing(message: str) -> None:
    """A missing tool fails CI (the Makefile installs it) but only skips on a developer's box."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Debian's Chromium, headless, with no background traffic to the outside."""
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is missing: run `make chromium` (apt-get install chromium)")
    args = list(browser_type_launch_args.get("args", []))
    args += [a for a in CHROMIUM_ARGS if a not in args]
    return {
        "headless": True,
        **browser_type_launch_args,
        "executable_path": str(CHROMIUM),
        "args": args,
    }


@pytest.fixture(scope="session")
def axe_js() -> Path:
    if not AXE_JS.exists():
        _missing(f"{AXE_JS} is missing: run `make node` (npm ci)")
    return AXE_JS


@pytest.fixture
def assert_accessible(axe_js: Path):
    """assert_accessible(page, where): axe-core finds no serious or critical violation."""

    def check(page, where: str) -> list[dict[str, Any]]:
        page.add_script_tag(path=str(axe_js))
        result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
        violations = result["violations"]
        bad = [v for v in violations if v.get("impact") in ("serious", "critical")]
        assert not bad, f"axe-core, {where} ({page.url}):\n" + _describe(bad)
        return violations

    return check


def _describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        lines.append(f"- [{v['impact']}] {v['id']}: {v['help']} ({v['helpUrl']})")
        for node in v["nodes"][:5]:
            lines.append(f"    at {' '.join(map(str, node['target']))}: {node['html'][:160]}")
            summary = (node.get("failureSummary") or "").replace("\n", "\n      ")
            if summary:
                lines.append(f"      {summary}")
    return "\n".join(lines)


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    return SCREENSHOT_DIR
