"""SynthPose: odkd's embedded synthetic multi-person pose dataset (COCO person_keypoints).

``generate_split(out_dir, split, num_images, seed)`` writes one split; see
:mod:`odkd.synth.generate`. Modules: ``body`` (3D skeleton and pose priors), ``render``
(depth-ordered OpenCV drawing), ``scene`` (backgrounds, clutter, layout, occluders),
``generate`` (annotations, files), ``preview`` (contact sheet), ``bench`` (throughput).
"""
from odkd.synth.generate import GENERATOR_VERSION, generate_split, render_image
from odkd.synth.scene import SPLITS

__all__ = ["GENERATOR_VERSION", "SPLITS", "generate_split", "render_image"]
