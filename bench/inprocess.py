"""``make profile``: where a request's time goes, measured in process (no sockets, no load generator).

The app is called as uvicorn calls it (one ASGI call per request) in a loop, one request at a
time, on the repository's current model. Each case is timed with the full middleware stack and
with each middleware left out, in interleaved rounds: the differences are each middleware's cost
per request. ``--cprofile`` adds cProfile's breakdown of the full stack (worker-thread work runs
inline there, so it is counted).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import ONE, batch, v2_binary, v2_json  # noqa: E402
from devtools.asgi import http_scope  # noqa: E402
from inference.app import create_app  # noqa: E402
from inference.config import Settings  # noqa: E402
from inference.rest.protocol import BODY_COMPLETE  # noqa: E402

Case = tuple[str, str, bytes, list[tuple[bytes, bytes]]]
JSON_HEADERS = [(b"content-type", b"application/json")]
INFER = "/v2/models/diamond_price/infer"
GUARDS = ("MetricsMiddleware", "BodyLimits")
"""The middleware whose cost is measured, each left out in turn."""


def cases() -> dict[str, Case]:
    binary, head = v2_binary(1000)
    return {
        "live": ("GET", "/health/live", b"", []),
        "json-1row": ("POST", "/diamond_price", json.dumps(ONE).encode(), JSON_HEADERS),
        "json-1000rows": ("POST", "/diamond_prices", json.dumps(batch(1000)).encode(), JSON_HEADERS),
        "v2-json-1row": ("POST", INFER, v2_json(1), JSON_HEADERS),
        "v2-json-1000rows": ("POST", INFER, v2_json(1000), JSON_HEADERS),
        "v2-binary-1000rows": (
            "POST",
            INFER,
            binary,
            [(b"content-type", b"application/octet-stream"), (b"inference-header-content-length", str(head).encode())],
        ),
    }


def scope_of(case: Case) -> dict[str, Any]:
    method, path, body, headers = case
    length = (b"content-length", str(len(body)).encode())
    # BODY_COMPLETE: as the service's protocol marks a request whose body has arrived
    return http_scope(method, path, [length, *headers], **{BODY_COMPLETE: True})


async def call(app: Any, case: Case) -> int:
    """One request through the ASGI app; its status (asserted 200 by the caller)."""
    body = case[2]
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope_of(case), receive, send)
    return status


def build(leave_out: tuple[str, ...] = ()) -> Any:
    """The app with its model loaded (as its lifespan would) and the named middleware left out."""
    app = create_app(Settings.from_env())
    app.user_middleware = [m for m in app.user_middleware if m.cls.__name__ not in leave_out]
    holder = app.state.holder
    holder.swap(holder.load())
    return app


def inline_threads() -> None:
    """Run worker-thread calls inline, so cProfile (which sees one thread) counts them."""
    import anyio.to_thread

    async def run_sync(func: Callable[..., Any], *args: Any, **_: Any) -> Any:
        return func(*args)

    anyio.to_thread.run_sync = run_sync  # type: ignore[assignment]


async def per_request_us(app: Any, case: Case, n: int) -> float:
    for _ in range(min(n, 50)):
        assert await call(app, case) == 200, case[1]
    started = time.process_time()
    for _ in range(n):
        await call(app, case)
    return (time.process_time() - started) / n * 1e6


async def middleware_us(app: Any, n: int) -> dict[str, float]:
    """Each middleware's own cost: it alone around an app that reads the body and answers 200."""

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}"})

    stacks: dict[str, Any] = {"bare app": inner}
    for m in app.user_middleware:
        if m.cls.__name__ in GUARDS:  # HotRoutes routes rather than guards: it has no cost of its own here
            stacks[m.cls.__name__] = m.cls(inner, *m.args, **m.kwargs)
    case = cases()["json-1row"]
    best: dict[str, float] = {}
    for _ in range(5):
        for name, stack in stacks.items():
            started = time.process_time()
            for _ in range(n):
                await call(stack, case)
            best[name] = min(best.get(name, 1e9), (time.process_time() - started) / n * 1e6)
    return best


async def main_async(args: argparse.Namespace) -> None:
    variants = {
        "full": build(),
        "no MetricsMiddleware": build(("MetricsMiddleware",)),
        "no BodyLimits": build(("BodyLimits",)),
        "no middleware": build(GUARDS),
    }
    gc.collect()
    gc.freeze()
    alone = await middleware_us(variants["full"], args.n * 5)
    print("CPU us per request (process time), a middleware alone around an app that answers at once (best of 5):")
    for name, us in alone.items():
        extra = "" if name == "bare app" else f"  (+{us - alone['bare app']:.1f})"
        print(f"  {name:<20} {us:7.1f}{extra}")
    if args.middleware_only:
        return
    chosen = {k: v for k, v in cases().items() if not args.cases or k in args.cases}
    results: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for name, case in chosen.items():
            n = args.n if "1000" not in name else max(args.n // 20, 20)
            for variant, app in variants.items():
                results.setdefault((name, variant), []).append(await per_request_us(app, case, n))
    print(f"CPU us per request (process time), in process, one at a time, best of {args.rounds} interleaved rounds")
    print(f"{'case':<20}" + "".join(f"{v:>22}" for v in variants) + f"{'Metrics':>10}{'BodyLimits':>12}")
    for name in chosen:
        med = {v: min(results[(name, v)]) for v in variants}
        metrics = med["full"] - med["no MetricsMiddleware"]
        limits = med["full"] - med["no BodyLimits"]
        print(f"{name:<20}" + "".join(f"{med[v]:>22.1f}" for v in variants) + f"{metrics:>10.1f}{limits:>12.1f}")
    if args.cprofile:
        inline_threads()
        for name, case in chosen.items():
            n = args.n if "1000" not in name else max(args.n // 20, 20)
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(n):
                await call(variants["full"], case)
            profiler.disable()
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats(args.sort).print_stats(args.top)
            print(f"\n==== cProfile {name}: {n} requests (per-request = cumtime / {n}) ====")
            print(out.getvalue().split("\n", 6)[-1] if "ncalls" in out.getvalue() else out.getvalue())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="*", help="cases to run (default: all)")
    parser.add_argument("-n", type=int, default=2000, help="requests per timing (1,000-row cases: n/20)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cprofile", action="store_true", help="also print cProfile's breakdown of the full stack")
    parser.add_argument("--middleware-only", action="store_true", help="only each middleware's own cost")
    parser.add_argument("--sort", default="cumulative")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
