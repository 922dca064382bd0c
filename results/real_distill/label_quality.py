"""PCK@0.2 of the cached teacher labels on LSP 1-1000 (the training images, whose joints odkd
never trains on) against LSP's ground truth: how good are the targets the student imitates?

    python results/real_distill/label_quality.py train.json CACHE lsp_train.json

A detector box that is not the labelled person counts as wrong; unconfident joints count
where the teacher put them.
"""
import json
import os
import sys

import numpy as np

from odkd.config import load_config
from odkd.distill.real import teacher_view_set
from odkd.eval.pck import LIMB_IDS, pck
from odkd.geometry import affine_points, flip_keypoints, get_affine_transform
from odkd.keypoints import COCO_KEYPOINTS, flip_pairs_from_names

train_json, cache, gt_json = sys.argv[1:4]
cfg = load_config('real_distill', [f'data.train_ann={train_json}', f'distill.cache={cache}'])
ds = teacher_view_set(cfg, progress=False, log=lambda s: None)
n_views = cfg.distill.views
gt = json.load(open(gt_json))
ims = {im['id']: im for im in gt['images']}
gt_by_name = {os.path.basename(ims[a['image_id']]['file_name']):
              np.array(a['keypoints'], np.float64).reshape(17, 3) for a in gt['annotations']}
pairs = flip_pairs_from_names(list(COCO_KEYPOINTS))
v = ds.views


def labelled_views(t):
    """(view index, the teacher's keypoints in image pixels, LSP's joints) of every LSP view."""
    for i in range(len(v['person'])):
        rec = ds.records[int(v['person'][i])]
        g = gt_by_name.get(os.path.basename(rec.file_name)) if '/lsp/' in rec.file_name else None
        if g is None:
            continue
        kp = v[f'{t}_keypoints'][i].astype(np.float64)
        inv = get_affine_transform(v['center'][i], v['scale'][i], float(v['rotation'][i]),
                                   ds.heatmap_size, inv=True)
        img = kp.copy()
        img[:, :2] = affine_points(kp[:, :2], inv)
        if v['flipped'][i]:
            img = flip_keypoints(img, rec.width, pairs)
        yield i, img, g


a, b = COCO_KEYPOINTS.index('right_shoulder'), COCO_KEYPOINTS.index('left_hip')
for t in ds.teachers:
    items = list(labelled_views(t))
    for view0 in (True, False):
        sel = [(img, g) for i, img, g in items if not view0 or i % n_views == 0]
        r = pck(np.array([s[0] for s in sel]), np.array([s[1] for s in sel]))
        print(f"{t} {'view 0' if view0 else 'all views'}: PCK@0.2 {r.pck:.3f} over {len(sel)} "
              "person-views (one detector box may not be the labelled person)")
    # per joint: correct against confidence, and by view kind
    rows = []
    for i, img, g in items:
        norm = np.linalg.norm(g[a, :2] - g[b, :2])
        for j in LIMB_IDS:
            if g[j, 2] > 0 and norm > 0:
                rows.append((img[j, 2], np.linalg.norm(img[j, :2] - g[j, :2]) <= 0.2 * norm,
                             i % n_views == 0, abs(float(v['rotation'][i])) > 0))
    r = np.array(rows, dtype=np.float64)
    for thr in (0.0, 0.2, 0.3, 0.4, 0.5, 0.6):
        k = r[:, 0] >= thr
        print(f"{t} conf>={thr}: kept {k.mean():.2f}, correct among kept {r[k, 1].mean():.3f} "
              f"(view0 {r[k & (r[:, 2] == 1), 1].mean():.3f}, rotated "
              f"{r[k & (r[:, 3] == 1), 1].mean():.3f})")
