"""Data path: COCO json -> records -> crops, targets (CPU) or decoded images (device path)."""
import cv2

# OpenCV's own thread pool fights torch's OpenMP threads for the same cores: interleaving
# cv2.warpAffine with conv layers in one process made CPU training >10x slower here. Data
# parallelism comes from DataLoader workers instead, so OpenCV stays single-threaded.
cv2.setNumThreads(1)
