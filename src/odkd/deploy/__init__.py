"""Using a trained model: ONNX export, an onnxruntime backend, inference with overlays, and the
latency benchmark. PoseSpec (what a deployed model needs besides weights) and OrtPoseModel
(an ``odkd export`` file called like an odkd model) sit lower, in :mod:`odkd.spec` and
:mod:`odkd.onnxrt`, so that evaluation and the checkpoint teacher can run exports too.

``onnx_export`` export an odkd model to ONNX (dynamic batch, metadata) and verify it
``loader``      load_pose / load_torch_model: a checkpoint or ONNX file -> model, spec, config
``visualize``   skeleton / mask overlays drawn with OpenCV
``infer``       batched top-down inference over images, folders and videos
``bench``       params, GFLOPs, latency and throughput for PyTorch eager and onnxruntime
"""
