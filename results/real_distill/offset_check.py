"""MoveNet Lightning's shipped weights, decoded as odkd heatmaps at several
``data.heatmap_offset`` values and input sizes: LSP 1001-2000 PCK@0.2, one crop, no flip
(docs/method.md, "MoveNet's heatmaps"; docs/results.md, "What we do not know yet").

    odkd convert ~/.cache/odkd/teachers/movenet-lightning.json ml.pt --model movenet_lightning
    python results/real_distill/offset_check.py ml.pt lsp_test.json

Each variant is the converted checkpoint with its stored config edited (input size, DARK
decoding, offset), evaluated by ``odkd eval --checkpoint V --metric pck --no-flip``.
Measured (2-core Intel Xeon, commit 786f272): 192 offset 0 quarter 0.827, 0 dark 0.833,
0.25 dark 0.846, 0.375 dark 0.852, 0.5 dark 0.853; 160 offset 0 dark 0.811, 0.375 dark 0.832.
"""
import copy
import subprocess
import sys
import tempfile

import torch

src, ann = sys.argv[1:3]
ck = torch.load(src, weights_only=True, map_location="cpu")
variants = [(192, 0.0, "quarter"), (192, 0.0, "dark"), (192, 0.25, "dark"),
            (192, 0.375, "dark"), (192, 0.5, "dark"), (160, 0.0, "dark"), (160, 0.375, "dark")]
with tempfile.TemporaryDirectory() as d:
    for size, off, dec in variants:
        c = copy.deepcopy(ck)
        c["config"].setdefault("data", {}).update(input_size=[size, size],
                                                   heatmap_offset=[off, off])
        c["config"].setdefault("eval", {})["decode"] = dec
        path = f"{d}/v.pt"
        torch.save(c, path)
        out = subprocess.run(["odkd", "eval", "--checkpoint", path, "--metric", "pck", "--ann",
                              ann, "--no-flip", "--threads", "1"], capture_output=True,
                             text=True).stdout
        line = [ln for ln in out.splitlines() if "PCK@0.2" in ln][0]
        print(f"input {size}, offset {off}, {dec}: {line.split(': ', 1)[1]}")
