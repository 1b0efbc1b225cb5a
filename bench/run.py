"""``make bench``: load-test the service as a real process and print the figures.

The server runs as ``python -m inference`` with one worker, access log off, on the
repository's current model. Load comes from wrk (Debian's package; this script
installs it with apt when it can). Each figure is the median of ``--repeats`` runs
taken in this one invocation, so ratios compare like with like on a noisy machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools.server import running_server  # noqa: E402

ONE = {"carat": 0.7, "cut": "Ideal", "color": "G", "clarity": "VS2"}


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True)
        subprocess.run(["apt-get", "update", "-q"], check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        sys.exit("wrk is required: install Debian's 'wrk' package (apt-get install wrk)")
    return found


def batch(rows: int) -> dict[str, object]:
    grades = [("Ideal", "G", "VS2"), ("Premium", "E", "SI1"), ("Good", "J", "I1"), ("Very Good", "D", "IF")]
    return {
        "diamonds": [
            {"carat": round(0.2 + (i % 300) / 100, 2), "cut": c, "color": k, "clarity": q}
            for i in range(rows)
            for c, k, q in [grades[i % len(grades)]]
        ]
    }


def v2_json(rows: int) -> bytes:
    """A V2 inference request for ``rows`` diamonds, its tensors in JSON."""
    diamonds = batch(rows)["diamonds"]
    assert isinstance(diamonds, list)
    dtypes = {n: "FP32" if n == "carat" else "BYTES" for n in ONE}
    inputs = [{"name": n, "shape": [rows, 1], "datatype": dtypes[n], "data": [d[n] for d in diamonds]} for n in ONE]
    return json.dumps({"inputs": inputs}).encode()


def v2_binary(rows: int) -> tuple[bytes, int]:
    """A V2 request with binary tensor data (inputs and outputs), and the length of its JSON head."""
    diamonds = batch(rows)["diamonds"]
    assert isinstance(diamonds, list)
    inputs, blobs = [], []
    for n in ONE:
        if n == "carat":
            blob = struct.pack(f"<{rows}f", *(d[n] for d in diamonds))
        else:
            blob = b"".join(struct.pack("<I", len(d[n])) + d[n].encode() for d in diamonds)
        dtype = "FP32" if n == "carat" else "BYTES"
        inputs.append({"name": n, "shape": [rows, 1], "datatype": dtype, "parameters": {"binary_data_size": len(blob)}})
        blobs.append(blob)
    head = json.dumps({"inputs": inputs, "parameters": {"binary_data_output": True}}).encode()
    return head + b"".join(blobs), len(head)


def lua_bytes(data: bytes) -> str:
    """``data`` as a Lua string literal (binary-safe: every other byte as a 3-digit escape)."""
    safe = set(range(0x20, 0x7F)) - {ord('"'), ord("\\")}
    return '"' + "".join(chr(b) if b in safe else f"\\{b:03d}" for b in data) + '"'


def lua_request(body: bytes, path: Path, headers: dict[str, str] | None = None) -> Path:
    """A wrk script that POSTs ``body`` with ``headers`` (JSON by default)."""
    lines = ['wrk.method = "POST"']
    for name, value in (headers or {"Content-Type": "application/json"}).items():
        lines.append(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}")
    path.write_text("\n".join([*lines, f"wrk.body = {lua_bytes(body)}", ""]))
    return path


def lua_post(body: dict[str, object], path: Path) -> Path:
    return lua_request(json.dumps(body).encode(), path)


def to_ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", value)
    assert m, value
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def wrk(exe: str, url: str, conns: int, seconds: int, script: Path | None = None) -> dict[str, float]:
    cmd = [exe, "-t1", f"-c{conns}", f"-d{seconds}s", "--latency"]
    if script:
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    if non2xx or errors:
        sys.exit(f"wrk saw failures on {url}:\n{out}")
    return {"rps": rps, "p50": p50, "p99": p99}


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def cold_start(env: dict[str, str], repeats: int) -> float:
    """Seconds from spawning the process to its first 200 on /."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        with running_server(env) as (base, _):
            times.append(time.perf_counter() - started)
            assert httpx.get(base + "/").status_code == 200
    return statistics.median(times)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


FIGURES = {
    "floor": ("GET /health/live (HTTP floor)", 16),
    "one_c1": ("POST /diamond_price", 1),
    "one_c16": ("POST /diamond_price", 16),
    "batch": ("POST /diamond_prices (1,000 rows)", 2),
    "v2_one": ("POST V2 infer, JSON, 1 row", 16),
    "v2_binary": ("POST V2 infer, binary, 1,000 rows", 2),
}
INFER = "/v2/models/diamond_price/infer"


def onnxruntime_rows_per_second(seconds: float = 2.0) -> float:
    """onnxruntime alone on this checkout's model: 1,000-row feeds already built, one intra-op
    thread as the service opens it, in this process (the ceiling the V2 binary path is held to)."""
    import numpy as np
    import onnxruntime as ort

    settings = json.loads((ROOT / "modelsettings.json").read_text())
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(ROOT / settings["path"]), options, providers=["CPUExecutionProvider"])
    diamonds = batch(1000)["diamonds"]
    assert isinstance(diamonds, list)
    feeds = {"carat": np.array([[d["carat"]] for d in diamonds], dtype=np.float32)}
    feeds |= {n: np.array([[d[n]] for d in diamonds], dtype=object) for n in ("cut", "color", "clarity")}
    outputs = [o.name for o in session.get_outputs()]
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        session.run(outputs, feeds)
        calls += 1
    return calls * 1000 / (time.perf_counter() - started)


def measure(exe: str, base: str, figure: str, seconds: int, scripts: dict[str, Path]) -> dict[str, float]:
    conns = FIGURES[figure][1]
    if figure == "floor":
        return wrk(exe, base + "/health/live", conns, seconds)
    if figure == "batch":
        return wrk(exe, base + "/diamond_prices", conns, seconds, scripts["thousand"])
    if figure in ("v2_one", "v2_binary"):
        return wrk(exe, base + INFER, conns, seconds, scripts[figure])
    return wrk(exe, base + "/diamond_price", conns, seconds, scripts["one"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="duration of each wrk run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (the median is printed)")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout (e.g. `git worktree add /tmp/base <commit>`): its server runs beside this one on "
        "the same model, every run interleaved with this one's, and the ratios are printed",
    )
    args = parser.parse_args()
    exe = ensure_wrk()
    env = {"MODEL_AUTO_RELOAD": "1", "ACCESS_LOG": "0", "LOG_LEVEL": "warning"}
    # Both servers serve this checkout's model, so only the code differs.
    model_env = {
        **env,
        "MODEL_SETTINGS": str(ROOT / "modelsettings.json"),
        "MODEL_REGISTRY": str(ROOT / "model_registry"),
    }
    roots = {"this": ROOT, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        binary, head = v2_binary(1000)
        binary_headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(head)}
        scripts = {
            "one": lua_post(ONE, Path(tmp) / "one.lua"),
            "thousand": lua_post(batch(1000), Path(tmp) / "k.lua"),
            "v2_one": lua_request(v2_json(1), Path(tmp) / "v2one.lua"),
            "v2_binary": lua_request(binary, Path(tmp) / "v2bin.lua", binary_headers),
        }
        bases: dict[str, str] = {}
        procs: dict[str, subprocess.Popen[bytes]] = {}
        for name, root in roots.items():
            bases[name], procs[name] = stack.enter_context(running_server(model_env, root=root))
            assert httpx.post(bases[name] + "/diamond_price", json=ONE).status_code == 200
            assert httpx.post(bases[name] + "/diamond_prices", json=batch(1000)).status_code == 200
            for figure in FIGURES:  # warm-up
                measure(exe, bases[name], figure, 1, scripts)
        results: dict[tuple[str, str], list[dict[str, float]]] = {}
        ort_runs: list[float] = []
        for repeat in range(args.repeats):  # interleaved, so drift hits every figure and both servers alike
            for figure in FIGURES:
                order = list(roots) if repeat % 2 == 0 else list(reversed(roots))  # neither always goes first
                for name in order:
                    results.setdefault((name, figure), []).append(
                        measure(exe, bases[name], figure, args.seconds, scripts)
                    )
            ort_runs.append(onnxruntime_rows_per_second())  # each round, while the servers idle
        rss = {name: rss_mb(proc.pid) for name, proc in procs.items()}
    cold = cold_start(model_env, max(args.repeats, 5))
    m = {key: median_of(runs) for key, runs in results.items()}
    ort_rows = statistics.median(ort_runs)
    print(f"diamond-price benchmark: 1 worker, wrk -t1, {args.seconds}s per run, median of {args.repeats} runs")
    print(f"{'route':<42} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for figure, (label, conns) in FIGURES.items():
        r = m[("this", figure)]
        print(f"{label:<42} {conns:>5} {r['rps']:>9.0f} {r['p50']:>8.2f} {r['p99']:>8.2f}")
    ratio = m[("this", "one_c16")]["rps"] / m[("this", "floor")]["rps"]
    print(f"/diamond_price at 16 conns vs floor: {ratio:.0%}  (target >= 80%)")
    print(f"/diamond_prices throughput: {m[('this', 'batch')]['rps'] * 1000:,.0f} rows/s  (target >= 250,000)")
    v2_rows = m[("this", "v2_binary")]["rps"] * 1000
    print(
        f"V2 binary 1,000 rows: {v2_rows:,.0f} rows/s, {v2_rows / ort_rows:.0%} of onnxruntime in process "
        f"({ort_rows:,.0f} rows/s, 1,000-row feeds, median of one run per round)  (target >= 50%)"
    )
    print(f"cold start (spawn to first 200 on /), median: {cold:.2f} s  (target <= 1 s)")
    print(f"RSS after load (one worker): {rss['this']:.0f} MB  (target <= 120 MB)")
    if args.baseline:
        print(f"\nagainst the baseline {args.baseline} (same model, runs interleaved)")
        print(f"{'route':<42} {'conns':>5} {'req/s':>9} {'base':>9} {'ratio':>7} {'p99 ms':>8} {'base':>8}")
        for figure, (label, conns) in FIGURES.items():
            this, base = m[("this", figure)], m[("baseline", figure)]
            ratio = this["rps"] / base["rps"]
            print(
                f"{label:<42} {conns:>5} {this['rps']:>9.0f} {base['rps']:>9.0f} {ratio:>6.2f}x "
                f"{this['p99']:>8.2f} {base['p99']:>8.2f}"
            )
        print(f"RSS: {rss['this']:.0f} MB vs {rss['baseline']:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
