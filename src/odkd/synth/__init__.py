"""SynthPose: odkd's embedded synthetic multi-person pose dataset (COCO person_keypoints).

``generate_split(out_dir, split, num_images, seed)`` writes one split; see
:mod:`odkd.synth.generate`. Modules: ``body`` (3D skeleton and pose priors), ``render``
(depth-ordered OpenCV drawing), ``scene`` (backgrounds, clutter, layout, occluders),
``generate`` (annotations, files), ``preview`` (contact sheet), ``bench`` (throughput).
"""
import cv2

from odkd.synth.generate import GENERATOR_VERSION, generate_split, render_image
from odkd.synth.scene import SPLITS

# As in odkd.data (see its __init__): OpenCV's own thread pool fights torch's threads and the
# generator's worker processes for the same cores, so OpenCV stays single-threaded.
cv2.setNumThreads(1)

__all__ = ["GENERATOR_VERSION", "SPLITS", "generate_split", "render_image"]
