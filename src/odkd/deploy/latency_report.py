"""The latency table's report: accuracies beside its rows, the markdown table and the
accuracy-against-latency plot (:mod:`odkd.deploy.latency` times the rows)."""
from __future__ import annotations

import json

import numpy as np

TEACHER_RUNTIME_NAMES = {"tflite": "TFLite (LiteRT, XNNPACK)", "onnx": "onnxruntime"}


# ----------------------------------------------------------------------------- accuracy

def read_accuracy(path: str) -> tuple[str, dict[str, float]]:
    """``{"metric": NAME, "values": {KEY: number}}`` -> (metric, values). A KEY names a model
    (``movenet-lightning``), a model at a size (``litehrnet_18@96x128``) or that and a runtime
    (``litehrnet_18@96x128/onnxruntime-int8``); the most specific key that matches a row
    wins."""
    from odkd.errors import DataError

    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as e:
        raise DataError(f"--accuracy: {path}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise DataError(f"--accuracy: {path}: not JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("values"), dict):
        raise DataError(f"--accuracy: {path}: field 'values' must be an object "
                        "{model key: number}")
    bad = [k for k, v in data["values"].items()
           if isinstance(v, bool) or not isinstance(v, (int, float))]
    if bad:
        raise DataError(f"--accuracy: {path}: field values.{bad[0]} is not a number")
    return str(data.get("metric", "accuracy")), {k: float(v) for k, v in data["values"].items()}


def accuracy_for(row: dict, values: dict[str, float]) -> float | None:
    w, h = row["input_size"]
    for key in (f"{row['model']}@{w}x{h}/{row['runtime']}", f"{row['model']}@{w}x{h}",
                row["model"]):
        if key in values:
            return values[key]
    return None


# ------------------------------------------------------------------------------- tables

def _label(row: dict) -> tuple:
    return (row["model"], tuple(row["input_size"]), row["runtime"])


def table_rows(rows: list[dict]) -> list[dict]:
    """Rows merged over thread counts: ``model_ms`` per thread count; pre and post from the
    run at the most threads (they are single-threaded numpy / OpenCV code)."""
    merged: dict[tuple, dict] = {}
    for r in rows:
        m = merged.setdefault(_label(r), {"model": r["model"], "runtime": r["runtime"],
                                          "input_size": r["input_size"], "model_ms": {},
                                          "accuracy": r.get("accuracy")})
        m["model_ms"][r["threads"]] = r["model_ms"]
        if r["threads"] >= max(m.get("_t", 0), r["threads"]):
            m["_t"] = r["threads"]
            m["pre_ms"], m["post_ms"] = r["pre_ms"], r["post_ms"]
    return list(merged.values())


def markdown_table(report: dict) -> str:
    threads = report["settings"]["threads"]
    metric = report.get("accuracy_metric")
    head = ["model", "runtime", "input (W x H)"] + [f"model, {t} thr (ms)" for t in threads] \
        + [f"pre (ms)", "post (ms)"] + ([metric] if metric else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in table_rows(report["rows"]):
        w, h = m["input_size"]
        cells = [m["model"], m["runtime"], f"{w}x{h}"]
        cells += [f"{m['model_ms'][t]:.2f}" if t in m["model_ms"] else "" for t in threads]
        cells += [f"{m['pre_ms']:.2f}", f"{m['post_ms']:.2f}"]
        if metric:
            cells.append("" if m["accuracy"] is None else f"{m['accuracy']:g}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(report: dict, path: str) -> None:
    """Accuracy against model latency (most threads) where accuracies were given; otherwise a
    bar chart of pre + model + post per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from odkd.utils import atomic_write_bytes

    t = max(report["settings"]["threads"])
    rows = table_rows(report["rows"])
    with_acc = [r for r in rows if r["accuracy"] is not None and t in r["model_ms"]]
    if with_acc:
        # the fast, accurate corner is where models crowd: a second panel zooms into it, and
        # points carry numbers listed under the plot so that no two labels overlap
        best = max(r["accuracy"] for r in with_acc)
        near = [r for r in with_acc if r["accuracy"] >= best - 0.05]
        zoom = 2 <= len(near) < len(with_acc)
        fig, axes = plt.subplots(1, 2 if zoom else 1, squeeze=False,
                                 figsize=(11 if zoom else 8, 5 + 0.14 * len(with_acc)))
        handles = []
        for ax, subset in zip(axes[0], [with_acc, near] if zoom else [with_acc]):
            for r in subset:
                i = with_acc.index(r) + 1
                w, h = r["input_size"]
                teacher = r["runtime"] in TEACHER_RUNTIME_NAMES
                dot = ax.scatter(r["model_ms"][t], r["accuracy"], marker="s" if teacher else "o",
                                 color="tab:red" if teacher else "tab:blue",
                                 label=f"{i}: {r['model']} {w}x{h} {r['runtime']} "
                                       f"({r['accuracy']:.3f}, {r['model_ms'][t]:.2f} ms)")
                if ax is axes[0][0]:
                    handles.append(dot)
                ax.annotate(str(i), (r["model_ms"][t], r["accuracy"]), fontsize=8,
                            xytext=(4, 3), textcoords="offset points")
            ax.set_xlabel(f"model latency per crop, batch 1, {t} threads (ms)")
            ax.set_ylabel(report["accuracy_metric"])
            ax.grid(alpha=0.3)
        if zoom:
            axes[0][1].set_title(f"within 0.05 of the best ({best:.3f})", fontsize=9)
        fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=7, frameon=False)
        fig.suptitle(f"{report['machine'].get('cpu', '')}: one interleaved run; red: the real "
                     "teachers in their own runtimes", fontsize=9)
        fig.tight_layout(rect=(0, 0.04 + 0.022 * ((len(with_acc) + 1) // 2), 1, 0.96))
    else:
        fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1.5))
        labels, pre, mod, post = [], [], [], []
        for r in rows:
            if t not in r["model_ms"]:
                continue
            w, h = r["input_size"]
            labels.append(f"{r['model']} {w}x{h} {r['runtime']}")
            pre.append(r["pre_ms"])
            mod.append(r["model_ms"][t])
            post.append(r["post_ms"])
        y = np.arange(len(labels))[::-1]
        ax.barh(y, mod, color="tab:blue", label="model")
        ax.barh(y, pre, left=mod, color="tab:gray", label="pre (crop + normalise)")
        ax.barh(y, post, left=np.add(mod, pre), color="tab:orange", label="post (decode)")
        ax.set_yticks(y, labels, fontsize=7)
        ax.set_xlabel(f"latency per crop, batch 1, {t} threads (ms), medians")
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(f"{report['machine'].get('cpu', '')}: one interleaved run", fontsize=9)
        fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
