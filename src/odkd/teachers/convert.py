"""Set-up conversion of TensorFlow graphs shipped in packages (MoveNet's TF.js graphs, the SSD
person detector's frozen graph) to ONNX models in the teacher cache.

Converting needs TensorFlow and tf2onnx, which odkd does not: they live in their own virtual
environment beside the cache (``$ODKD_CACHE/convert-env``), created once with the versions in
``CONVERT_PINS`` and reused; it runs :mod:`odkd.teachers.tf_to_onnx` as a script. odkd reads
and patches the TF.js graph here (numpy only), the script builds the TensorFlow graph, runs it
on fixed inputs and converts it, and odkd runs the ONNX model in its own onnxruntime on the same
inputs: the largest difference is printed and a model above its tolerance is refused.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Callable

import numpy as np

from odkd.errors import OdkdError
from odkd.utils import atomic_write_text

# tensorflow-cpu 2.15.1 + tf2onnx 1.16.1 convert both MoveNet graphs and the SSD graph on
# Python 3.11 (2.15 is the last TensorFlow whose protobuf range tf2onnx 1.16.1 accepts); the
# rest pins what pip resolves for them, so a fresh set-up gets the same environment
CONVERT_PINS = ("tensorflow-cpu==2.15.1", "tf2onnx==1.16.1", "onnx==1.17.0", "numpy==1.26.4",
                "protobuf==3.20.3")
ENV_STAMP = ".odkd-pins"
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tf_to_onnx.py")

# TF.js writes fused ops with T and num_args only; TensorFlow's op definitions of these need
# TArgs (one dtype per extra argument) as well
TARGS_OPS = ("_FusedConv2D", "_FusedMatMul")
# TF.js's name for TensorFlow's _FusedDepthwiseConv2dNative (tf2onnx's own TF.js reader renames
# it the same way); that op has no explicit_paddings attribute
RENAMED_OPS = {"FusedDepthwiseConv2dNative": "_FusedDepthwiseConv2dNative"}


class ConvertError(OdkdError):
    """The conversion environment or a conversion failed, or its result is not faithful."""


def env_dir(teachers_dir: str) -> str:
    """The conversion environment: ``convert-env`` beside the ``teachers`` cache folder."""
    return os.path.join(os.path.dirname(os.path.abspath(teachers_dir)), "convert-env")


def env_python(teachers_dir: str) -> str:
    return os.path.join(env_dir(teachers_dir), "bin", "python")


def env_ready(teachers_dir: str) -> bool:
    """Whether the environment exists with the pinned versions (its stamp is written last)."""
    stamp = os.path.join(env_dir(teachers_dir), ENV_STAMP)
    try:
        with open(stamp) as f:
            return f.read().split() == list(CONVERT_PINS) and \
                os.path.isfile(env_python(teachers_dir))
    except OSError:
        return False


def _run(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    except FileNotFoundError:
        raise ConvertError(f"{what}: {cmd[0]} not found") from None
    if r.returncode != 0:
        lines = [ln for ln in (r.stderr or r.stdout or "").splitlines()
                 if ln.strip() and not ln.startswith("WARNING:")]   # pip's notices
        raise ConvertError(f"{what} failed (exit {r.returncode}): "
                           f"{lines[-1].strip() if lines else 'no output'}")
    return r


def ensure_env(teachers_dir: str, log: Callable[[str], None] = print) -> str:
    """The conversion environment's python, creating the environment when it is missing or has
    other versions (a half-made one, without its stamp, is made again)."""
    py = env_python(teachers_dir)
    if env_ready(teachers_dir):
        return py
    d = env_dir(teachers_dir)
    if os.path.exists(d):
        shutil.rmtree(d)
    log(f"creating the conversion environment {d} ({' '.join(CONVERT_PINS)}) ...")
    t0 = time.perf_counter()
    # the interpreter odkd runs on; a venv's python makes a venv of its base interpreter
    _run([sys.executable, "-m", "venv", d], "creating the conversion environment")
    _run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *CONVERT_PINS],
         f"pip install {' '.join(CONVERT_PINS)} into {d}")
    atomic_write_text(os.path.join(d, ENV_STAMP), "\n".join(CONVERT_PINS) + "\n")
    log(f"conversion environment ready in {time.perf_counter() - t0:.0f} s")
    return py


# ------------------------------------------------------------------ TF.js: read and patch
def patch_fused_ops(nodes: list[dict]) -> int:
    """Make TF.js's fused nodes (model.json ``node`` dicts, changed in place) valid TensorFlow:
    add ``TArgs`` (T x num_args) where the op needs it, rename TF.js-only op names. How many
    nodes changed."""
    changed = 0
    for n in nodes:
        attr = n.setdefault("attr", {})
        if n["op"] in RENAMED_OPS:
            n["op"] = RENAMED_OPS[n["op"]]
            if attr.pop("explicit_paddings", {}).get("list", {}).get("i"):
                raise ConvertError(f"node {n['name']}: explicit paddings in a fused depthwise "
                                   "convolution are not supported")
            changed += 1
        if n["op"] in TARGS_OPS and "TArgs" not in attr:
            num = int(attr.get("num_args", {}).get("i", 0))
            attr["TArgs"] = {"list": {"type": [attr["T"]["type"]] * num}}
            changed += 1
    return changed


def fix_input_shapes(nodes: list[dict], signature: dict) -> int:
    """Give placeholders with free dimensions (MoveNet MultiPose: (1, -1, -1, 3)) the fixed
    shape the model's signature states, so the conversion can run it on fixed inputs and
    onnxruntime gets static shapes; how many changed."""
    shapes = {v.get("name", "").split(":")[0]: v.get("tensorShape", {}).get("dim")
              for v in signature.get("inputs", {}).values()}
    changed = 0
    for n in nodes:
        dims = shapes.get(n["name"])
        if n["op"] != "Placeholder" or not dims or any(int(d["size"]) < 0 for d in dims):
            continue
        cur = n.get("attr", {}).get("shape", {}).get("shape", {}).get("dim", [])
        if any(int(d.get("size", -1)) < 0 for d in cur):
            n["attr"]["shape"] = {"shape": {"dim": [{"size": str(d["size"])} for d in dims]}}
            changed += 1
    return changed


def prepare_tfjs(model_json: str, workdir: str) -> list[str]:
    """Read a TF.js graph model (odkd.models.tfjs: one-line CheckpointError for a missing or
    short weight file), patch its fused ops and write what the script needs into ``workdir``:
    ``[graph.json, weights.npz]``."""
    from odkd.models.tfjs import read_model_json, read_weights

    model = read_model_json(model_json)
    topo = model.get("modelTopology") or {}
    if not isinstance(topo.get("node"), list):
        raise ConvertError(f"{model_json}: field modelTopology.node: absent; not a TF.js graph "
                           "model")
    weights = read_weights(model_json, model)
    nodes = topo["node"]
    patch_fused_ops(nodes)
    fix_input_shapes(nodes, model.get("signature") or {})
    names = sorted(weights)
    graph = os.path.join(workdir, "graph.json")
    npz = os.path.join(workdir, "weights.npz")
    with open(graph, "w") as f:
        json.dump({"node": nodes, "versions": topo.get("versions", {}),
                   "signature": model.get("signature", {}), "weight_names": names}, f)
    np.savez(npz, **{f"w{i}": weights[n] for i, n in enumerate(names)})
    return [graph, npz]


# ------------------------------------------------------------------ convert and check
def check_onnx(onnx_path: str, reference: str) -> float:
    """The largest |ONNX - TensorFlow| over every output and fixed input in ``reference``,
    the ONNX model run by odkd's onnxruntime runner."""
    from odkd.teachers.runtime import OnnxRunner

    runner = OnnxRunner(onnx_path, num_threads=1)
    with np.load(reference) as z:
        inputs = [z[f"input_{i}"] for i in range(len(runner.input_details))]
        expected = [z[f"output_{i}"] for i in range(len(runner.output_details))]
    worst = 0.0
    for k in range(len(inputs[0])):
        got = runner.run([x[k] for x in inputs])
        for g, e in zip(got, expected):
            if g.shape != e[k].shape:
                raise ConvertError(f"{onnx_path}: output shape {g.shape}, TensorFlow gives "
                                   f"{e[k].shape}")
            worst = max(worst, float(np.abs(g.astype(np.float64) - e[k]).max()))
    return worst


def convert(kind: str, source: str, tolerance: float, teachers_dir: str,
            log: Callable[[str], None] = print, name: str = "") -> tuple[bytes, dict]:
    """Convert ``source`` (a TF.js ``model.json`` with its weights beside it, or an SSD frozen
    graph ``.pb``) to ONNX in the conversion environment; ``(ONNX bytes, info)`` once the ONNX
    model matches TensorFlow within ``tolerance`` on the fixed inputs."""
    label = name or os.path.basename(source)
    py = ensure_env(teachers_dir, log)
    with tempfile.TemporaryDirectory(prefix="odkd-convert-") as tmp:
        sources = prepare_tfjs(source, tmp) if kind == "tfjs" else [source]
        out, ref = os.path.join(tmp, "model.onnx"), os.path.join(tmp, "reference.npz")
        t0 = time.perf_counter()
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
        r = _run([py, SCRIPT, kind, *sources, out, ref], f"converting {label}", env=env)
        seconds = time.perf_counter() - t0
        diff = check_onnx(out, ref)
        tail = (r.stdout.strip().splitlines() or ["{}"])[-1]
        info = {"converted_by": " ".join(CONVERT_PINS[:2]), "max_abs_diff": diff,
                "tolerance": tolerance, "seconds": round(seconds, 1), **json.loads(tail)}
        log(f"{label}: converted to ONNX in {seconds:.0f} s; max |ONNX - TensorFlow| = "
            f"{diff:.3g} on 2 fixed inputs (tolerance {tolerance:g})")
        if not diff <= tolerance:
            raise ConvertError(f"{label}: ONNX differs from TensorFlow by {diff:.3g} (tolerance "
                               f"{tolerance:g}); not stored")
        with open(out, "rb") as f:
            return f.read(), info
