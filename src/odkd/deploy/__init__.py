"""Using a trained model: ONNX export, an onnxruntime backend, inference with overlays, and the
latency benchmark.

``spec``        PoseSpec: what a deployed model needs besides weights (input size, joints, flips)
``onnx_export`` export an odkd model to ONNX (dynamic batch, metadata) and verify it
``ort_model``   OrtPoseModel: an onnxruntime model with the call interface of an odkd model
``loader``      load_pose / load_torch_model: a checkpoint or ONNX file -> model, spec, config
``visualize``   skeleton / mask overlays drawn with OpenCV
``infer``       batched top-down inference over images, folders and videos
``bench``       params, GFLOPs, latency and throughput for PyTorch eager and onnxruntime
"""
