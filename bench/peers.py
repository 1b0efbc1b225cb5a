"""``make bench-peers``: this service against MLServer, KServe, BentoML and the original service, side by side.

Each peer is installed into its own throw-away virtual environment under ``.bench/`` (pinned
versions from the registry; reused while the pins are unchanged) and serves this project's
current ``.onnx`` with onnxruntime, one worker, through the small servers in ``bench/peers/``.
``original`` is a stand-in of the service this project replaced, rebuilt from its description
(FastAPI, a LightGBM model trained at start-up on ``diamond.db``, a pandas DataFrame per
request): the reference for "times faster than the original", not a server users would pick.
All servers run at once; every wrk run (one thread, 16 connections) is interleaved, round by
round, so drift hits everyone alike. Prints ``peer <name> <case> ours <req/s> theirs <req/s>
ratio <x>`` per peer and case (medians), then a table, then how long the run took.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import ONE, ensure_wrk, lua_request, v2_binary, v2_json, wrk  # noqa: E402
from devtools.server import free_port, running_server, stop_group  # noqa: E402
from inference.paths import resolve_paths  # noqa: E402

VENVS = ROOT / ".bench"
PEERS_DIR = ROOT / "bench" / "peers"
ONNXRUNTIME = "onnxruntime==1.32.0"
PINS = {
    "mlserver": ["mlserver==1.7.1", ONNXRUNTIME],
    "kserve": ["kserve==0.21.0", ONNXRUNTIME],
    "bentoml": ["bentoml==1.4.40", ONNXRUNTIME],
    # scikit-learn: LightGBM's LGBMRegressor, the API the original's parameters are named in, needs it
    "original": [
        "fastapi==0.165.0",
        "uvicorn==0.55.0",
        "lightgbm==4.7.0",
        "scikit-learn==1.9.1",
        "pandas==3.1.1",
        "numpy==2.4.6",
    ],
}
REFERENCES = {"original": 55.0}
"""Stand-ins that are not servers users would pick (left out of "ours / best peer"), and the ratio
this service must reach against each."""
INFER = "/v2/models/diamond_price/infer"
CASES = ("v2-json-1row", "v2-json-1000rows", "v2-binary-1000rows", "json-1row")
SERVES = {
    "ours": CASES,
    "mlserver": ("v2-json-1row", "v2-json-1000rows"),  # no binary tensor extension over REST
    "kserve": CASES,  # json-1row: its V1 ``:predict`` with one instance
    "bentoml": ("json-1row",),  # no V2 protocol
    "original": ("json-1row",),  # POST /diamond_price only, as the original had
}


def ensure_venv(name: str) -> Path:
    """``.bench/<name>`` with the pinned packages, installed once per set of pins."""
    venv = VENVS / name
    marker = venv / ".pins"
    wanted = " ".join(PINS[name])
    if marker.exists() and marker.read_text() == wanted:
        return venv
    print(f"installing {wanted} into {venv} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *PINS[name]], check=True)
    marker.write_text(wanted)
    return venv


@contextlib.contextmanager
def peer_process(argv: list[str], env: dict[str, str], cwd: Path, ready: str, log: Path) -> Iterator[None]:
    """A peer server, started in its own session and stopped (its whole group) at the end."""
    with open(log, "wb") as out:
        full_env = {**os.environ, **env}
        proc = subprocess.Popen(argv, env=full_env, cwd=cwd, stdout=out, stderr=out, start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{argv[0]} exited with {proc.returncode}; see {log}")
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(ready, timeout=1).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{argv[0]} did not become ready; see {log}")
                time.sleep(0.2)
            yield
        finally:
            stop_group(proc)


def start_peer(name: str, model: Path, tmp: Path, stack: contextlib.ExitStack) -> str:
    """Start the named peer on a free port; its base URL."""
    venv = ensure_venv(name)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp / f"{name}.log"
    if name == "mlserver":
        folder = tmp / "mlserver"
        folder.mkdir()
        server = {"http_port": port, "grpc_port": free_port(), "metrics_port": free_port(), "host": "127.0.0.1"}
        # parallel_workers 0: inference in the server process (its default pool of workers was slower here).
        (folder / "settings.json").write_text(json.dumps({**server, "parallel_workers": 0, "debug": False}))
        runtime = {"name": "diamond_price", "implementation": "mlserver_peer.OnnxPeer"}
        runtime["parameters"] = {"uri": str(model)}
        (folder / "model-settings.json").write_text(json.dumps(runtime))
        argv = [str(venv / "bin" / "mlserver"), "start", str(folder)]
        env = {"PYTHONPATH": str(PEERS_DIR)}
        stack.enter_context(peer_process(argv, env, folder, base + "/v2/models/diamond_price/ready", log))
    elif name == "kserve":
        argv = [str(venv / "bin" / "python"), "kserve_peer.py", str(model), "--http_port", str(port)]
        stack.enter_context(peer_process(argv, {}, PEERS_DIR, base + "/v2/models/diamond_price/ready", log))
    elif name == "original":
        argv = [str(venv / "bin" / "uvicorn"), "original_peer:app", "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--workers", "1", "--no-access-log", "--log-level", "warning"]
        env = {"PEER_DB": str(resolve_paths().db)}
        stack.enter_context(peer_process(argv, env, PEERS_DIR, base + "/openapi.json", log))
    else:
        argv = [str(venv / "bin" / "bentoml"), "serve", "bentoml_peer:DiamondPeer", "--host", "127.0.0.1"]
        env = {"PEER_MODEL": str(model), "BENTOML_HOME": str(tmp / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
        stack.enter_context(peer_process([*argv, "--port", str(port)], env, PEERS_DIR, base + "/readyz", log))
    return base


def scripts(tmp: Path) -> dict[str, Path]:
    binary, head = v2_binary(1000)
    headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(head)}
    instances = json.dumps({"instances": [ONE]}).encode()
    return {
        "v2-json-1row": lua_request(v2_json(1), tmp / "v2one.lua"),
        "v2-json-1000rows": lua_request(v2_json(1000), tmp / "v2k.lua"),
        "v2-binary-1000rows": lua_request(binary, tmp / "v2bin.lua", headers),
        "json-1row": lua_request(json.dumps(ONE).encode(), tmp / "one.lua"),
        "json-1row-v1": lua_request(instances, tmp / "v1.lua"),
    }


def target(server: str, case: str, base: str, lua: dict[str, Path]) -> tuple[str, Path]:
    """(URL, wrk script) of ``case`` on ``server``."""
    if case == "json-1row":
        if server == "kserve":
            return base + "/v1/models/diamond_price:predict", lua["json-1row-v1"]
        return base + "/diamond_price", lua[case]
    return base + INFER, lua[case]


def report(med: dict[tuple[str, str], float], peers: list[str], args: argparse.Namespace) -> None:
    """The peer lines and the table; a reference's line and column carry its target ratio."""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(
        f"\nbench-peers {when}: wrk -t1 -c{args.connections} -d{args.seconds}s, 1 worker each, "
        f"median of {args.rounds} interleaved rounds"
    )
    for peer in peers:
        for case in CASES:
            if (peer, case) in med:
                ours, theirs = med[("ours", case)], med[(peer, case)]
                goal = f" (target >= {REFERENCES[peer]:.0f}x)" if peer in REFERENCES else ""
                print(f"peer {peer} {case} ours {ours:.0f} theirs {theirs:.0f} ratio {ours / theirs:.2f}{goal}")
    names = [f"{p} (stand-in)" if p in REFERENCES else p for p in peers]
    rivals = [p for p in peers if p not in REFERENCES]
    print(f"\n| case | ours | {' | '.join(names)} | ours / best peer |")
    print("|---|---|" + "---|" * len(peers) + "---|")
    for case in CASES:
        ours = med[("ours", case)]
        cells = [cell(ours, med.get((p, case)), REFERENCES.get(p)) for p in peers]
        best = max((med[(p, case)] for p in rivals if (p, case) in med), default=None)
        ratio = f"{ours / best:.1f}x" if best else "-"
        print(f"| {case} req/s | {ours:,.0f} | {' | '.join(cells)} | {ratio} |")


def cell(ours: float, theirs: float | None, goal: float | None) -> str:
    """A peer's figure; a reference's also says ours / it, beside its target."""
    if theirs is None:
        return "-"
    if goal is None:
        return f"{theirs:,.0f}"
    return f"{theirs:,.0f} (ours **{ours / theirs:.0f}x**, target >= {goal:.0f}x)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="duration of each wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (the median is printed)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--peers", nargs="*", default=list(PINS), choices=list(PINS))
    args = parser.parse_args()
    started = time.monotonic()
    exe = ensure_wrk()
    settings = json.loads((ROOT / "modelsettings.json").read_text())
    model = (ROOT / settings["path"]).resolve()
    env = {
        "MODEL_AUTO_RELOAD": "0",
        "ACCESS_LOG": "0",
        "LOG_LEVEL": "warning",
        "MODEL_SETTINGS": str(ROOT / "modelsettings.json"),
        "MODEL_REGISTRY": str(ROOT / "model_registry"),
    }
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as name, contextlib.ExitStack() as stack:
        tmp = Path(name)
        lua = scripts(tmp)
        bases = {"ours": stack.enter_context(running_server(env))[0]}
        for peer in args.peers:
            bases[peer] = start_peer(peer, model, tmp, stack)
        servers = ["ours", *args.peers]
        runs = [(s, c) for c in CASES for s in servers if c in SERVES[s]]
        for server, case in runs:  # warm-up, and a failing case stops here, not after the rounds
            url, script = target(server, case, bases[server], lua)
            wrk(exe, url, args.connections, 1, script)
        for r in range(args.rounds):
            for server, case in runs if r % 2 == 0 else list(reversed(runs)):
                url, script = target(server, case, bases[server], lua)
                rps = wrk(exe, url, args.connections, args.seconds, script)["rps"]
                results.setdefault((server, case), []).append(rps)
    report({key: statistics.median(values) for key, values in results.items()}, args.peers, args)
    minutes, seconds = divmod(round(time.monotonic() - started), 60)
    print(f"\nbench-peers took {minutes} min {seconds:02d} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
