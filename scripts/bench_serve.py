"""Serving throughput and latency: `bastion server` beside Seldon's MLServer, the same ONNX
model (a scikit-learn StandardScaler + LogisticRegression pipeline on 8 features, exported
with skl2onnx), the same Open Inference Protocol JSON request (one row), the same load
generator (wrk, over loopback, on the same 2-core machine).

MLServer runs the model in a minimal custom runtime (onnxruntime.InferenceSession, its
NumpyCodec for inputs and outputs), with MLServer's default settings. Bastion serves the
imported package with authentication off (`--insecure`) and its request rate limits off, once
with every input guard off and once with all of them on (range, NaN and category checks
against the training dataset, and the Mahalanobis OOD score, flagging).

Printed: peak throughput (wrk, --connections, --seconds) and p50/p99 for each; Bastion's p99
at about half its peak (wrk paced by a per-request delay, connections calibrated to the rate); p50 at one connection with guards
off and on (three alternating rounds each, medians). Ratios are Bastion / MLServer.
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request

import numpy as np

FEATURES = [f"f{i}" for i in range(8)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not become ready")


def make_model(work, rows=20000, seed=7):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from skl2onnx import to_onnx
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, len(FEATURES))) * np.arange(1, 9) + np.arange(8)
    z = x @ rng.normal(size=len(FEATURES)) / 8
    y = (z + rng.logistic(size=rows) > 0).astype(int)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
    onx = to_onnx(pipe, x[:1].astype(np.float32), options={id(pipe.steps[-1][1]): {"zipmap": False}})
    path = os.path.join(work, "model.onnx")
    with open(path, "wb") as f:
        f.write(onx.SerializeToString())
    csv = os.path.join(work, "train.csv")
    with open(csv, "w") as f:
        f.write(",".join(FEATURES + ["y"]) + "\n")
        for row, label in zip(x, y):
            f.write(",".join(f"{v:.6f}" for v in row) + f",{label}\n")
    row = [round(float(v), 4) for v in x[0]]
    return path, csv, onx.graph.input[0].name, row


def request_body(input_name, row):
    return json.dumps({"inputs": [{"name": input_name, "shape": [1, len(row)], "datatype": "FP32", "data": row}]})


RUNTIME = textwrap.dedent('''
    import numpy as np
    import onnxruntime as ort
    from mlserver import MLModel
    from mlserver.codecs import NumpyCodec
    from mlserver.types import InferenceRequest, InferenceResponse

    class OnnxRuntime(MLModel):
        async def load(self):
            path = self.settings.parameters.uri
            self._session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            self._input = self._session.get_inputs()[0].name
            return True

        async def predict(self, payload: InferenceRequest) -> InferenceResponse:
            x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32)
            label, probabilities = self._session.run(None, {self._input: x})
            return InferenceResponse(
                model_name=self.name,
                outputs=[NumpyCodec.encode_output("label", label),
                         NumpyCodec.encode_output("probabilities", probabilities)],
            )
''')


def start_mlserver(work, venv, model):
    folder = os.path.join(work, "mlserver")
    os.makedirs(os.path.join(folder, "bench"), exist_ok=True)
    shutil.copy(model, os.path.join(folder, "bench", "model.onnx"))
    with open(os.path.join(folder, "runtime.py"), "w") as f:
        f.write(RUNTIME)
    port = free_port()
    with open(os.path.join(folder, "settings.json"), "w") as f:
        json.dump({"http_port": port, "grpc_port": free_port(), "metrics_port": free_port()}, f)
    with open(os.path.join(folder, "bench", "model-settings.json"), "w") as f:
        json.dump({"name": "bench", "implementation": "runtime.OnnxRuntime",
                   "parameters": {"uri": os.path.join(folder, "bench", "model.onnx")}}, f)
    log = open(os.path.join(work, "mlserver.log"), "wb")
    proc = subprocess.Popen([os.path.join(venv, "bin", "mlserver"), "start", folder], cwd=folder,
                            stdout=log, stderr=log, env=dict(os.environ, PYTHONPATH=folder))
    url = f"http://127.0.0.1:{port}"
    wait_ready(url + "/v2/models/bench/ready")
    return proc, url


def bastion(bin_, home, *args, env):
    p = subprocess.run([bin_, "--home", home, *args], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise SystemExit(f"bastion {args}: {p.stderr}")
    return p.stdout


def start_bastion(work, bin_, model, csv, env):
    home = os.path.join(work, "bastion-home")
    bastion(bin_, home, "data", "add", csv, "--name", "bench-train", env=env)
    bastion(bin_, home, "model", "import", model, "--name", "bench", "--features", ",".join(FEATURES), env=env)
    port = free_port()
    log = open(os.path.join(work, "bastion.log"), "wb")
    proc = subprocess.Popen([bin_, "--home", home, "server", "--port", str(port), "--insecure",
                             "--rate-limit-per-ip", "0", "--rate-limit-per-user", "0"],
                            stdout=log, stderr=log, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url + "/health")
    return proc, url, home


def guards(bin_, home, url, on, env):
    spec = "range=flag,nan=reject,category=reject,ood=flag" if on else "range=off,nan=off,category=off,ood=off"
    args = ["deploy", "bench@1", "--guard", spec, "--server", url]
    if on:
        args += ["--reference-data", "bench-train@v1"]
    bastion(bin_, home, *args, env=env)


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(url, body, connections, seconds, delay_ms=0):
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write(textwrap.dedent(f'''
        wrk.method = "POST"
        wrk.body = {json.dumps(body)}
        wrk.headers["Content-Type"] = "application/json"
        function delay() return {int(delay_ms)} end
    '''))
    script.close()
    out = subprocess.run(["wrk", "-t", str(min(2, connections)), "-c", str(connections), "-d", f"{seconds}s",
                          "--latency", "-s", script.name, url], capture_output=True, text=True).stdout
    os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    pct = {}
    for p, v, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        pct[p] = float(v) * UNITS[unit]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    socket_errors = re.search(r"Socket errors:.*", out)
    if errors or socket_errors:
        print(f"  ! {errors} non-2xx responses; {socket_errors.group(0) if socket_errors else ''}", file=sys.stderr)
    return {"rps": rps, "p50_ms": pct.get("50"), "p99_ms": pct.get("99"), "errors": errors}


def paced(url, body, target_rps, seconds, delay_ms=4):
    """wrk at about `target_rps`: each connection waits `delay_ms` between requests (wrk's
    delays are whole milliseconds), so the rate is set by the number of connections. A short
    trial measures the rate one connection reaches at this load; the count is then scaled to
    the target and the measured run must land within 10% of it (the count is corrected once
    more if not)."""
    c = max(1, round(target_rps * (delay_ms + 0.5) / 1000))
    for _ in range(3):
        trial = wrk(url, body, c, 3, delay_ms)
        if abs(trial["rps"] / target_rps - 1) <= 0.05:
            break
        c = max(1, round(c * target_rps / trial["rps"]))
    run = wrk(url, body, c, seconds, delay_ms)
    if abs(run["rps"] / target_rps - 1) > 0.10:
        c = max(1, round(c * target_rps / run["rps"]))
        run = wrk(url, body, c, seconds, delay_ms)
    run["connections"] = c
    return run


def check_answer(url, body):
    req = urllib.request.Request(url, data=body.encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        out = json.load(r)
    return {o["name"]: o["data"] for o in out["outputs"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bastion", required=True)
    ap.add_argument("--venv", required=True)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--work")
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="bench-serve-")
    os.makedirs(work, exist_ok=True)
    import onnxruntime
    lib = sorted(f for f in os.listdir(os.path.join(os.path.dirname(onnxruntime.__file__), "capi"))
                 if f.startswith("libonnxruntime.so"))[0]
    env = dict(os.environ, BASTION_ONNXRUNTIME=os.path.join(os.path.dirname(onnxruntime.__file__), "capi", lib))
    model, csv, input_name, row = make_model(work)
    body = request_body(input_name, row)
    procs = []
    try:
        mls, mls_url = start_mlserver(work, a.venv, model)
        procs.append(mls)
        bst, bst_url, home = start_bastion(work, a.bastion, model, csv, env)
        procs.append(bst)
        infer_m = mls_url + "/v2/models/bench/infer"
        infer_b = bst_url + "/v2/models/bench/infer"
        m_out, b_out = check_answer(infer_m, body), check_answer(infer_b, body)
        assert np.allclose(m_out["probabilities"], b_out["probabilities"], atol=1e-6), (m_out, b_out)

        results = {}
        wrk(infer_m, body, 4, 3)  # warm up
        results["mlserver"] = wrk(infer_m, body, a.connections, a.seconds)
        for on in (False, True):
            guards(a.bastion, home, bst_url, on, env)
            check_answer(infer_b, body)
            wrk(infer_b, body, 4, 3)
            name = "bastion, guards on" if on else "bastion, guards off"
            results[name] = wrk(infer_b, body, a.connections, a.seconds)
        # The guards' cost at one connection: off and on alternate, so that drift in the
        # machine's state falls on both; medians of the rounds.
        rounds = {False: [], True: []}
        for _ in range(3):
            for on in (False, True):
                guards(a.bastion, home, bst_url, on, env)
                rounds[on].append(wrk(infer_b, body, 1, max(3, a.seconds // 2)))
        for on, runs in rounds.items():
            name = ("bastion, guards on" if on else "bastion, guards off") + ", 1 connection"
            results[name] = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
        results["mlserver, 1 connection"] = wrk(infer_m, body, 1, a.seconds)
        peak = results["bastion, guards on"]["rps"]
        results["bastion, guards on, ~50% of peak"] = paced(infer_b, body, peak / 2, a.seconds)

        print(f"\nOne-row ONNX inference over loopback; wrk {a.connections} connections, {a.seconds} s; {os.cpu_count()} cores")
        print(f"{'server':40} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
        for k, v in results.items():
            print(f"{k:40} {v['rps']:>10.0f} {v['p50_ms']:>8.3f} {v['p99_ms']:>8.3f} {v['errors']:>7}")
        m = results["mlserver"]["rps"]
        off, on = results["bastion, guards off"], results["bastion, guards on"]
        print(f"\nthroughput vs MLServer: guards off {off['rps'] / m:.1f}x, guards on {on['rps'] / m:.1f}x")
        g0 = results["bastion, guards off, 1 connection"]["p50_ms"]
        g1 = results["bastion, guards on, 1 connection"]["p50_ms"]
        print(f"guards' cost at p50 (1 connection): {g0:.3f} -> {g1:.3f} ms ({(g1 / g0 - 1) * 100:+.0f}%)")
        half = results["bastion, guards on, ~50% of peak"]
        print(f"p99 at {half['rps']:.0f} req/s ({half['rps'] / peak * 100:.0f}% of peak, {half['connections']} connections): {half['p99_ms']:.3f} ms")
        with open(os.path.join(work, "results.json"), "w") as f:
            json.dump(results, f, indent=1)
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
