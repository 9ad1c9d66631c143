#!/usr/bin/env python3
"""Exports scikit-learn's 8x8 handwritten digits (1,797 images) to inference/data/digits.bin.

Run once (the output is committed):  pip install scikit-learn && python3 scripts/export_digits.py

Format (little-endian), read by `vichain_inference::DigitsDataset`:
  magic  b"VDIGITS\\0" (8 bytes)
  u32    number of samples n
  u32    pixels per sample (64)
  n * (64 pixel bytes, each 0..=16, row-major 8x8; then 1 label byte 0..=9)
Samples keep scikit-learn's order; the train/test split is done in Rust (index % 5 == 0 is test).
"""
import hashlib
import pathlib
import struct

from sklearn.datasets import load_digits

out = pathlib.Path(__file__).resolve().parent.parent / "inference" / "data" / "digits.bin"
digits = load_digits()
buf = bytearray(b"VDIGITS\0")
buf += struct.pack("<II", len(digits.target), digits.data.shape[1])
for pixels, label in zip(digits.data, digits.target):
    assert all(0 <= p <= 16 and p == int(p) for p in pixels)
    buf += bytes(int(p) for p in pixels)
    buf.append(int(label))
out.write_bytes(bytes(buf))
print(f"{out}: {len(buf)} bytes, sha256 {hashlib.sha256(buf).hexdigest()}")
