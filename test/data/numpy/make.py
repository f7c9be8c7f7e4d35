# Made these fixtures once, with NumPy 2.4 (python3 make.py); test/data/formats.test.ts reads them and
# checks every pixel and label against the same formulas.
import numpy as np

n, h, w = 6, 4, 5
i, y_, x_, c_ = np.meshgrid(np.arange(n), np.arange(h), np.arange(w), np.arange(3), indexing="ij")
rgb = ((i * 37 + y_ * 11 + x_ * 7 + c_ * 59) % 256).astype(np.uint8)  # N x H x W x 3
labels = np.array([0, 1, 2, 0, 1, 2], dtype=np.int64)
np.savez_compressed("rgb_nhwc.npz", x=rgb, y=labels, classes=np.array(["cat", "dog", "emu"]))
np.savez("float_nchw.npz", images=(rgb.transpose(0, 3, 1, 2) / 255.0).astype(np.float32), labels=labels.astype(np.int32))
np.save("x.npy", rgb[..., 0])  # grey N x H x W
np.save("y.npy", labels.astype(">i2"))  # big-endian labels
