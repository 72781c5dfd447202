"""Rebuild the PneumoniaMNIST (MedMNIST v2, 28x28) split composition from two
public partial copies.  Inputs (byte copies of repository files):
  pm_aksu.npz  = aksufatih/snn-medmnist@5df79ab2ac7bf898a8c7bf39830053619defa2f7:pneumoniamnist.npz
                 (balanced undersample: keeps ALL normal images of each split)
  pm_varun.npz = varun19424/pneumonia_mnist@9361a718d67e8a40f1ef8929db8c5682add8bd70:data/pneumoniamnist.npz
                 (Kaggle mirror: ALL pneumonia images of each split, complete val/test,
                  but only 388 of 1214 train normals)
Output: train = aksu train normals (label 0) + varun train pneumonia (label 1);
        val/test = varun val/test unchanged.  Row order differs from the official file.
"""

import sys

import numpy as np

aksu, varun, out = sys.argv[1:4]
a, v = np.load(aksu), np.load(varun)
res = {}
ai, al = a["train_images"], a["train_labels"]
vi, vl = v["train_images"], v["train_labels"]
m0, m1 = al.ravel() == 0, vl.ravel() == 1
res["train_images"] = np.concatenate([ai[m0], vi[m1]])
res["train_labels"] = np.concatenate([al[m0], vl[m1]])
for s in ("val", "test"):
    res[f"{s}_images"], res[f"{s}_labels"] = v[f"{s}_images"], v[f"{s}_labels"]
np.savez_compressed(out, **res)
for k, x in res.items():
    print(k, x.shape, x.dtype, np.bincount(x.ravel()) if "labels" in k else "")
