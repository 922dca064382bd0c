"""Thin model runners with one call, ``run(inputs) -> list of arrays``, for the teachers' two
runtimes: TFLite models through ``ai_edge_litert`` and ONNX models through onnxruntime.

Both runtimes are optional dependencies (extras ``teachers`` and ``deploy``) and are imported
only when a runner is built.
"""
from __future__ import annotations


import numpy as np

from odkd.errors import CheckpointError, OdkdError


class Runner:
    """``inputs``: one array per model input (in input order). ``input_details`` /
    ``output_details``: dicts with ``name``, ``shape``, ``dtype`` per tensor."""

    input_details: list[dict]
    output_details: list[dict]

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def output(self, outs: list[np.ndarray], name: str) -> np.ndarray:
        for d, o in zip(self.output_details, outs):
            if d["name"] == name:
                return o
        raise KeyError(name)


class TFLiteRunner(Runner):
    def __init__(self, path: str, num_threads: int = 1):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise OdkdError("TFLite teachers need ai-edge-litert: pip install 'odkd[teachers]'"
                            ) from None
        try:
            self.interpreter = Interpreter(model_path=path, num_threads=int(num_threads))
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            msg = " ".join(str(e).split())[:160]
            raise CheckpointError(f"{path}: not a loadable TFLite model ({msg})") from None
        it = self.interpreter
        self.input_details = [dict(name=d["name"], shape=tuple(int(v) for v in d["shape"]),
                                   dtype=np.dtype(d["dtype"]), index=d["index"])
                              for d in it.get_input_details()]
        self.output_details = [dict(name=d["name"], shape=tuple(int(v) for v in d["shape"]),
                                    dtype=np.dtype(d["dtype"]), index=d["index"])
                               for d in it.get_output_details()]

    def run(self, inputs):
        it = self.interpreter
        for d, x in zip(self.input_details, inputs):
            it.set_tensor(d["index"], np.ascontiguousarray(x, dtype=d["dtype"]))
        it.invoke()
        # get_tensor copies, so the outputs stay valid after the next invoke
        return [it.get_tensor(d["index"]) for d in self.output_details]


_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int32)": np.int32,
               "tensor(int64)": np.int64, "tensor(float16)": np.float16}


class OnnxRunner(Runner):
    def __init__(self, path: str, num_threads: int = 1):
        from odkd.onnxrt import make_session

        # sequential execution, intra-op threads only: the same runtime settings as students
        self.session = make_session(path, threads=int(num_threads))

        def info(a):
            return dict(name=a.name, dtype=np.dtype(_ORT_DTYPES.get(a.type, np.float32)),
                        shape=tuple(v if isinstance(v, int) else -1 for v in a.shape))
        self.input_details = [info(a) for a in self.session.get_inputs()]
        self.output_details = [info(a) for a in self.session.get_outputs()]

    def run(self, inputs):
        feed = {d["name"]: np.ascontiguousarray(x, dtype=d["dtype"])
                for d, x in zip(self.input_details, inputs)}
        return list(self.session.run(None, feed))


def make_runner(path: str, runtime: str, num_threads: int = 1) -> Runner:
    if runtime == "tflite":
        return TFLiteRunner(path, num_threads)
    if runtime == "onnx":
        return OnnxRunner(path, num_threads)
    raise OdkdError(f"unknown runtime {runtime!r} (tflite or onnx)")
