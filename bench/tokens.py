"""Join-token minting in process (issue 4): our provider adapters against the bare libraries.

- LiveKit: ``LiveKitProvider.mint`` (grants per role, secret read at use, join URL, expiry)
  against livekit-api's ``AccessToken(...).with_identity().with_name().with_grants().with_ttl()
  .to_jwt()`` with the same grants; target ≥ 0.8× its tokens per second.
- Jitsi: ``JitsiProvider.mint`` against a bare PyJWT ``jwt.encode`` of the same claims and
  header; target ≥ 0.8×.

Both sides run in alternating rounds so that drift of the machine (frequency, other load) falls
on both alike; each figure is the median round. No database: the backends are unsaved rows.
Prints a table and writes var/bench/tokens.json.

    .venv/bin/python bench/tokens.py [--rounds 15] [--per-round 2000] [--strict]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "visio_broker.settings")
os.environ["DEBUG"] = "false"
KEY_VARIABLE = "VB_BENCH_SIGNING_KEY"
os.environ[KEY_VARIABLE] = "bench-only-secret-0123456789abcdef0123456789"

TARGET = 0.8
OUT = ROOT / "var" / "bench" / "tokens.json"
TTL = timedelta(minutes=5)
ROOM = "vb-0123456789abcdef0123456789abcdef"


def rounds_of(
    pairs: dict[str, Callable[[], object]], rounds: int, per_round: int
) -> dict[str, list[float]]:
    """Microseconds per call of each function, one figure per round, rounds interleaved."""
    found: dict[str, list[float]] = {name: [] for name in pairs}
    for call in pairs.values():  # warm up
        for _ in range(per_round // 10):
            call()
    for _ in range(rounds):
        for name, call in pairs.items():
            began = time.perf_counter()
            for _ in range(per_round):
                call()
            found[name].append((time.perf_counter() - began) / per_round * 1e6)
    return found


def measure(rounds: int, per_round: int) -> dict[str, Any]:
    import django

    django.setup()
    import jwt
    from livekit.api import AccessToken, VideoGrants

    from rooms.models import BackendKind, MediaBackend
    from rooms.providers import JoinRole, provider_for

    secret = os.environ[KEY_VARIABLE]
    livekit = MediaBackend(
        name="bench-livekit",
        kind=BackendKind.LIVEKIT,
        base_url="wss://livekit.bench.example",
        frontend_url="https://meet.bench.example",
        api_key="APIbench",
        secret_env=KEY_VARIABLE,
    )
    jitsi = MediaBackend(
        name="bench-jitsi",
        kind=BackendKind.JITSI,
        base_url="https://jitsi.bench.example",
        api_key="bench-app",
        secret_env=KEY_VARIABLE,
        jitsi_sub="meet.jitsi",
    )
    livekit_provider, jitsi_provider = provider_for("livekit"), provider_for("jitsi")
    person = {"identity": "user-42", "name": "Amélie Dupont", "email": "amelie@bench.example"}

    def ours_livekit() -> object:
        return livekit_provider.mint(
            backend=livekit, room_name=ROOM, role=JoinRole.PARTICIPANT, ttl=TTL, **person
        )

    def bare_livekit() -> object:
        return (
            AccessToken("APIbench", secret)
            .with_identity("user-42")
            .with_name("Amélie Dupont")
            .with_grants(
                VideoGrants(
                    room_join=True,
                    room=ROOM,
                    can_publish=True,
                    can_subscribe=True,
                    can_publish_data=True,
                    room_admin=False,
                    hidden=False,
                )
            )
            .with_ttl(TTL)
            .to_jwt()
        )

    def ours_jitsi() -> object:
        return jitsi_provider.mint(
            backend=jitsi, room_name=ROOM, role=JoinRole.PARTICIPANT, ttl=TTL, **person
        )

    def bare_jitsi() -> object:
        now = int(time.time())
        claims = {
            "iss": "bench-app",
            "aud": "bench-app",
            "sub": "meet.jitsi",
            "room": ROOM,
            "iat": now,
            "nbf": now - 30,
            "exp": now + 300,
            "context": {
                "user": {
                    "id": "user-42",
                    "name": "Amélie Dupont",
                    "email": "amelie@bench.example",
                    "avatar": "",
                    "affiliation": "member",
                }
            },
        }
        return jwt.encode(claims, secret, algorithm="HS256", headers={"typ": "JWT"})

    # The two sides mint the same token (apart from the second it was made in).
    ticket = ours_livekit()
    ours_claims = jwt.decode(ticket.token, options={"verify_signature": False})
    bare_claims = jwt.decode(bare_livekit(), options={"verify_signature": False})
    assert ours_claims["video"] == bare_claims["video"], "LiveKit grants differ"  # noqa: S101
    timings = rounds_of(
        {
            "livekit_ours": ours_livekit,
            "livekit_bare": bare_livekit,
            "jitsi_ours": ours_jitsi,
            "jitsi_bare": bare_jitsi,
        },
        rounds,
        per_round,
    )
    results: dict[str, Any] = {}
    for name, values in timings.items():
        median = statistics.median(values)
        results[name] = {
            "us_per_token": median,
            "tokens_per_s": 1e6 / median,
            "rounds_us": [round(v, 2) for v in values],
        }
    for kind in ("livekit", "jitsi"):
        ratio = results[f"{kind}_bare"]["us_per_token"] / results[f"{kind}_ours"]["us_per_token"]
        results[f"{kind}_ratio"] = ratio
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--per-round", type=int, default=2000)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    results = measure(args.rounds, args.per_round)

    print("Join tokens, in process (median of interleaved rounds)")
    print(f"{'':<40} {'µs/token':>9} {'tokens/s':>10} {'ratio':>7}  target")
    missed = []
    for kind, label in (("livekit", "LiveKit"), ("jitsi", "Jitsi")):
        ours, bare = results[f"{kind}_ours"], results[f"{kind}_bare"]
        ratio = results[f"{kind}_ratio"]
        met = ratio >= TARGET
        if not met:
            missed.append(kind)
        bare_label = "livekit-api AccessToken" if kind == "livekit" else "PyJWT jwt.encode"
        print(
            f"{label + ': bare ' + bare_label:<40} {bare['us_per_token']:>9.1f} "
            f"{bare['tokens_per_s']:>10.0f}"
        )
        print(
            f"{label + ': our adapter':<40} {ours['us_per_token']:>9.1f} "
            f"{ours['tokens_per_s']:>10.0f} {ratio:>6.2f}×  ≥ {TARGET}×: "
            f"{'met' if met else 'MISSED'}"
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "generated_at": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "target_ratio": TARGET,
        "rounds": args.rounds,
        "per_round": args.per_round,
        "results": results,
    }
    OUT.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"bench: results written to {OUT.relative_to(ROOT)}")
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
