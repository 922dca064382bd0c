"""odkd.deploy.latency / `odkd bench latency`: interleaving and aggregation on fake models with
a fake clock (no timing is asserted), the table, accuracy matching, the plot, the CLI."""
from __future__ import annotations

import json

import pytest

from odkd.cli import main
from odkd.deploy.latency import Candidate, aggregate, interleaved_times, parse_student
from odkd.deploy.latency_report import accuracy_for, markdown_table, plot, read_accuracy
from odkd.errors import OdkdError


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _fake(name: str, clock: FakeClock, pre: float, model: float, post: float, calls: list,
          threads: int = 1, drift=None) -> Candidate:
    """A candidate whose stages take the given seconds on ``clock`` (the model stage scaled by
    ``drift(round)`` when given) and that logs its calls."""
    def step(stage, dt):
        def fn(*_):
            calls.append((name, threads, stage))
            scale = drift(sum(1 for c in calls if c[2] == "model")) if drift and \
                stage == "model" else 1.0
            clock.now += dt * scale
            return stage
        return fn

    return Candidate(name, "fake", (32, 32), threads, step("pre", pre), step("model", model),
                     step("post", post), setup=lambda: calls.append((name, threads, "setup")))


def test_every_round_runs_each_candidate_once_in_shuffled_orders():
    clock, calls = FakeClock(), []
    cands = [_fake(n, clock, 0.001, 0.01 * (i + 1), 0.002, calls) for i, n in
             enumerate("abcde")]
    times = interleaved_times(cands, iters=20, warmup=3, seed=0, clock=clock)
    setups = [c[0] for c in calls if c[2] == "setup"]
    rounds = [setups[i:i + 5] for i in range(0, len(setups), 5)]
    assert len(rounds) == 23 and all(sorted(r) == list("abcde") for r in rounds)
    assert len({tuple(r) for r in rounds}) > 10            # orders differ between rounds
    # no candidate always runs right after the same one
    followers = {n: {r[r.index(n) + 1] for r in rounds if r.index(n) < 4} for n in "abcde"}
    assert all(len(f) > 1 for f in followers.values())
    # setup runs before pre, model, post of the same candidate, untimed
    for i, c in enumerate(calls):
        if c[2] == "setup":
            assert [x[2] for x in calls[i + 1:i + 4]] == ["pre", "model", "post"]
    rows = {r["model"]: r for r in aggregate(cands, times)}
    for i, n in enumerate("abcde"):
        r = rows[n]
        assert r["n"] == 20                                 # warmup rounds not kept
        assert r["model_ms"] == pytest.approx(10.0 * (i + 1))
        assert r["pre_ms"] == pytest.approx(1.0) and r["post_ms"] == pytest.approx(2.0)
        assert r["model_p10_ms"] == pytest.approx(r["model_ms"])


def test_a_visit_makes_untimed_switch_calls_then_timed_burst_calls():
    """The first call of a visit pays for the previous runtime (here: 1 s extra); with one
    untimed switch call, none of the three timed calls of a visit does."""
    clock, calls = FakeClock(), []
    first = {"pending": False}

    def slow_first():
        calls.append(("setup",))
        first["pending"] = True

    def run(_):
        clock.now += 0.010 + (1.0 if first.pop("pending", False) else 0.0)

    cands = [Candidate(n, "fake", (32, 32), 1, lambda: None, run, lambda y: None, slow_first)
             for n in "ab"]
    for switch, expect_max in ((0, 1010.0), (1, 10.0)):
        clock.now, calls[:] = 0.0, []
        times = interleaved_times(cands, iters=4, warmup=1, clock=clock, burst=3,
                                  switch=switch)
        assert len(calls) == 2 * 5                    # setup once per visit
        for key, t in times.items():
            assert len(t["model"]) == 12              # 4 rounds x 3 timed calls
            assert max(t["model"]) * 1e3 == pytest.approx(expect_max)
    with pytest.raises(OdkdError, match="burst must be >= 1"):
        interleaved_times(cands, iters=1, burst=0)


def test_drift_falls_on_all_candidates_alike():
    """The machine slows down steadily (the model stage x (1 + round / 10)). Interleaved, each
    candidate meets every speed once, so the ratio of medians is the ratio of costs; timed one
    after the other, the second pays the slowdown."""
    def drift(model_calls):          # two model calls per round
        return 1.0 + ((model_calls - 1) // 2) / 10.0

    clock, calls = FakeClock(), []
    cands = [_fake("fast", clock, 0, 0.004, 0, calls, drift=drift),
             _fake("slow", clock, 0, 0.010, 0, calls, drift=drift)]
    rows = {r["model"]: r for r in aggregate(cands, interleaved_times(
        cands, iters=31, warmup=0, clock=clock))}
    assert rows["slow"]["model_ms"] / rows["fast"]["model_ms"] == pytest.approx(2.5, rel=1e-9)

    clock, calls = FakeClock(), []
    seq = {}
    for c in [_fake("fast", clock, 0, 0.004, 0, calls, drift=drift),
              _fake("slow", clock, 0, 0.010, 0, calls, drift=drift)]:
        seq.update({r["model"]: r for r in aggregate([c], interleaved_times(
            [c], iters=31, warmup=0, clock=clock))})
    assert seq["slow"]["model_ms"] / seq["fast"]["model_ms"] > 3.0


def _report(rows, metric=None):
    return {"settings": {"threads": [1, 2]}, "rows": rows, "accuracy_metric": metric,
            "machine": {"cpu": "test cpu"}}


def _rows():
    clock, calls = FakeClock(), []
    cands = [_fake("m", clock, 0.001, 0.02, 0.003, calls, threads=1),
             _fake("m", clock, 0.001, 0.012, 0.003, calls, threads=2),
             _fake("t", clock, 0.0005, 0.004, 0.001, calls, threads=1),
             _fake("t", clock, 0.0005, 0.003, 0.001, calls, threads=2)]
    cands[2].runtime = cands[3].runtime = "tflite"
    cands[2].input_size = cands[3].input_size = (192, 192)
    return aggregate(cands, interleaved_times(cands, iters=3, warmup=0, clock=clock))


def test_markdown_table_merges_thread_counts():
    rows = _rows()
    for r in rows:
        r["accuracy"] = 0.5 if r["model"] == "t" else None
    text = markdown_table(_report(rows, "LSP PCK"))
    lines = text.splitlines()
    assert lines[0] == ("| model | runtime | input (W x H) | model, 1 thr (ms) | model, 2 thr "
                        "(ms) | pre (ms) | post (ms) | LSP PCK |")
    assert lines[2] == "| m | fake | 32x32 | 20.00 | 12.00 | 1.00 | 3.00 |  |"
    assert lines[3] == "| t | tflite | 192x192 | 4.00 | 3.00 | 0.50 | 1.00 | 0.5 |"


def test_accuracy_keys_most_specific_wins(tmp_path):
    row = {"model": "litehrnet_18", "input_size": [96, 128], "runtime": "onnxruntime-int8"}
    vals = {"litehrnet_18": 0.1, "litehrnet_18@96x128": 0.2}
    assert accuracy_for(row, vals) == 0.2
    vals["litehrnet_18@96x128/onnxruntime-int8"] = 0.3
    assert accuracy_for(row, vals) == 0.3
    assert accuracy_for({**row, "model": "other"}, vals) is None
    p = tmp_path / "acc.json"
    p.write_text(json.dumps({"metric": "PCK", "values": {"a": 0.5}}))
    assert read_accuracy(str(p)) == ("PCK", {"a": 0.5})
    p.write_text(json.dumps({"values": {"a": "high"}}))
    with pytest.raises(OdkdError, match="field values.a is not a number"):
        read_accuracy(str(p))
    p.write_text("{")
    with pytest.raises(OdkdError, match="acc.json: not JSON"):
        read_accuracy(str(p))


def test_plot_writes_a_png_with_and_without_accuracy(tmp_path):
    rows = _rows()
    for r in rows:
        r["accuracy"] = None
    plot(_report(rows), str(tmp_path / "bars.png"))
    for r in rows:
        r["accuracy"] = 0.4 if r["model"] == "m" else 0.6
    plot(_report(rows, "PCK"), str(tmp_path / "acc.png"))
    for name in ("bars.png", "acc.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_parse_student():
    assert parse_student("litehrnet_18@192x256,96x128") == ("litehrnet_18",
                                                           [(192, 256), (96, 128)])
    with pytest.raises(OdkdError, match="unknown model 'nope'"):
        parse_student("nope@32x32")
    with pytest.raises(OdkdError, match="size '32' is not WxH"):
        parse_student("mobilenetv2@32")


def test_bench_latency_cli_times_a_student_on_every_runtime(tmp_path, capsys):
    out = tmp_path / "lat.json"
    assert main(["bench", "latency", "--student", "mobilenetv2@32x32", "--teachers",
                 "--threads", "1", "--iters", "2", "--warmup", "0", "--burst", "2",
                 "--json", str(out),
                 "--markdown", str(tmp_path / "t.md")]) == 0
    table = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert {r["runtime"] for r in report["rows"]} == {"torch", "onnxruntime",
                                                      "onnxruntime-int8"}
    assert all(r["n"] == 4 and r["model_ms"] > 0 and r["input_size"] == [32, 32]
               for r in report["rows"])
    assert "| mobilenetv2 | onnxruntime-int8 | 32x32 |" in table
    assert (tmp_path / "t.md").read_text().strip() == table.strip()


def test_bench_latency_times_declared_fp32_layers_and_every_layer_int8_apart(tmp_path):
    """movenet_lightning declares fp32 layers: onnxruntime-int8 keeps them (as `odkd export
    --int8` does), onnxruntime-int8-all quantizes them too; both files are timed."""
    import onnx

    from odkd.deploy.latency import export_students

    paths = export_students([("movenet_lightning", [(64, 64)])],
                            ["onnxruntime-int8", "onnxruntime-int8-all"], str(tmp_path))
    p = paths[("movenet_lightning", (64, 64))]

    def float_convs(path):
        g = onnx.load(path).graph
        made = {o: n.op_type for n in g.node for o in n.output}
        return {n.name for n in g.node if n.op_type == "Conv"
                and made.get(n.input[1]) != "DequantizeLinear"}

    assert "/model/final_layer/Conv" in float_convs(p["int8"])
    assert not float_convs(p["int8all"])


def test_bench_latency_cli_errors_are_one_line(capsys):
    assert main(["bench", "latency", "--teachers"]) == 2
    assert "nothing to time" in capsys.readouterr().err
    assert main(["bench", "latency", "--teachers", "posenet"]) == 2
    assert "--teachers: unknown 'posenet'" in capsys.readouterr().err
    assert main(["bench", "latency", "--student", "mobilenetv2@30x30", "--teachers",
                 "--runtimes", "torch"]) == 2
    assert "input size 30x30" in capsys.readouterr().err
