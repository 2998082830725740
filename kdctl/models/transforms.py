"""Data transforms kdctl registers into mmdet.

Aerial images have no up or left: a tree crown seen from above is still a tree crown
when the image is turned by 90 degrees. ``RandomTranspose`` swaps the image's axes (and
the boxes' x and y); together with horizontal and vertical flips it gives all eight
right-angle rotations and mirror images.
"""

from __future__ import annotations

import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS


@TRANSFORMS.register_module()
class RandomTranspose(BaseTransform):
    """Swap height and width of the image and its boxes with probability ``prob``."""

    def __init__(self, prob: float = 0.5) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"RandomTranspose prob must be in [0, 1], got {prob}")
        self.prob = prob

    def transform(self, results: dict) -> dict:
        if np.random.rand() >= self.prob:
            return results
        img = results["img"]
        results["img"] = np.ascontiguousarray(img.swapaxes(0, 1))
        results["img_shape"] = results["img"].shape[:2]
        boxes = results.get("gt_bboxes")
        if boxes is not None and len(boxes) > 0:
            # x1, y1, x2, y2 -> y1, x1, y2, x2; the box type keeps its class
            results["gt_bboxes"] = type(boxes)(boxes.tensor[:, [1, 0, 3, 2]])
        return results

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(prob={self.prob})"
