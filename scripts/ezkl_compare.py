#!/usr/bin/env python3
"""EZKL (Halo2) on the same digits MLP weights that vichain proves with Groth16.

Reads inference/data/digits-mlp.vqmlp (int8 weights, i32 biases, a right shift per layer)
and the bundled 8x8 digits test split (every fifth image), builds an ONNX graph computing
relu((W x + b) / 2^shift) per layer (the last without relu) on the same int8 inputs, and
runs EZKL's whole flow on it: settings, calibration, compilation, a locally generated SRS
(no download), setup, witness, prove, verify. Prints proving/verifying times, key sizes,
and the accuracy of EZKL's (quantized) outputs against the labels, next to the integer
model's own accuracy. vichain's figures for the same model are in BENCHMARKS.md.

    pip install ezkl onnx numpy
    python3 scripts/ezkl_compare.py [--proofs 3] [--accuracy-images 360]
"""

import argparse
import asyncio
import inspect
import json
import os
import struct
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import ezkl

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def call(f, *args, **kwargs):
    r = f(*args, **kwargs)
    return asyncio.run(r) if inspect.isawaitable(r) else r


def load_model(path):
    b = open(path, "rb").read()
    assert b[:6] == b"VQMLP\0", "not a VQMLP file"
    version, n = struct.unpack_from("<HH", b, 6)
    pos, layers = 10, []
    for _ in range(n):
        in_dim, out_dim = struct.unpack_from("<II", b, pos)
        pos += 8
        shift = b[pos]
        pos += 1
        w = np.frombuffer(b, dtype=np.int8, count=in_dim * out_dim, offset=pos).reshape(out_dim, in_dim)
        pos += in_dim * out_dim
        bias = np.frombuffer(b, dtype="<i4", count=out_dim, offset=pos)
        pos += 4 * out_dim
        layers.append((w.astype(np.int64), bias.astype(np.int64), shift))
    return layers


def load_test_set(path):
    b = open(path, "rb").read()
    assert b[:8] == b"VDIGITS\0"
    n, pixels = struct.unpack_from("<II", b, 8)
    recs = np.frombuffer(b, dtype=np.uint8, offset=16).reshape(n, pixels + 1)
    test = recs[::5]
    x = np.minimum(test[:, :pixels].astype(np.int64) * 8, 127)
    return x, test[:, pixels].astype(np.int64)


def integer_forward(layers, x):
    for i, (w, b, s) in enumerate(layers):
        acc = x @ w.T + b
        q = acc >> s
        x = q if i == len(layers) - 1 else np.clip(q, 0, 127)
    return x


def build_onnx(layers, path):
    nodes, inits = [], []
    prev = "input"
    for i, (w, b, s) in enumerate(layers):
        inits.append(numpy_helper.from_array(w.T.astype(np.float32), f"w{i}"))
        inits.append(numpy_helper.from_array(b.astype(np.float32), f"b{i}"))
        inits.append(numpy_helper.from_array(np.array(1.0 / (1 << s), np.float32), f"s{i}"))
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]))
        nodes.append(helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"]))
        out = "output" if i == len(layers) - 1 else f"q{i}"
        if i == len(layers) - 1:
            nodes.append(helper.make_node("Mul", [f"a{i}", f"s{i}"], [out]))
        else:
            nodes.append(helper.make_node("Mul", [f"a{i}", f"s{i}"], [f"d{i}"]))
            nodes.append(helper.make_node("Relu", [f"d{i}"], [out]))
        prev = out
    in_dim = layers[0][0].shape[1]
    out_dim = layers[-1][0].shape[0]
    graph = helper.make_graph(
        nodes,
        "digits",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, in_dim])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, out_dim])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--proofs", type=int, default=3)
    ap.add_argument("--accuracy-images", type=int, default=360)
    args = ap.parse_args()

    layers = load_model(os.path.join(ROOT, "inference/data/digits-mlp.vqmlp"))
    x, y = load_test_set(os.path.join(ROOT, "inference/data/digits.bin"))
    int_acc = float((integer_forward(layers, x).argmax(1) == y).mean())

    d = tempfile.mkdtemp(prefix="ezkl-")
    p = lambda n: os.path.join(d, n)
    build_onnx(layers, p("model.onnx"))
    json.dump({"input_data": [x[0].astype(float).tolist()]}, open(p("input.json"), "w"))
    cal = {"input_data": [x[: min(len(x), 50)].astype(float).reshape(-1).tolist()]}
    json.dump(cal, open(p("cal.json"), "w"))

    run_args = ezkl.PyRunArgs()
    run_args.input_visibility = "private"
    run_args.output_visibility = "public"
    run_args.param_visibility = "fixed"
    t = time.time()
    call(ezkl.gen_settings, p("model.onnx"), p("settings.json"), py_run_args=run_args)
    try:
        call(ezkl.calibrate_settings, p("cal.json"), p("model.onnx"), p("settings.json"), "resources")
    except Exception as e:  # calibration is an optimization; the defaults still prove
        print(f"calibration skipped: {e}")
    call(ezkl.compile_circuit, p("model.onnx"), p("model.compiled"), p("settings.json"))
    settings = json.load(open(p("settings.json")))
    logrows = settings["run_args"]["logrows"]
    call(ezkl.gen_srs, p("kzg.srs"), logrows)
    prep = time.time() - t
    t = time.time()
    call(ezkl.setup, p("model.compiled"), p("vk.key"), p("pk.key"), p("kzg.srs"))
    setup = time.time() - t

    prove_times, verify_times = [], []
    for i in range(args.proofs):
        json.dump({"input_data": [x[i].astype(float).tolist()]}, open(p("input.json"), "w"))
        call(ezkl.gen_witness, p("input.json"), p("model.compiled"), p("witness.json"))
        t = time.time()
        call(ezkl.prove, p("witness.json"), p("model.compiled"), p("pk.key"), p("proof.json"), p("kzg.srs"))
        prove_times.append(time.time() - t)
        t = time.time()
        ok = call(ezkl.verify, p("proof.json"), p("settings.json"), p("vk.key"), p("kzg.srs"))
        verify_times.append(time.time() - t)
        assert ok, "EZKL proof did not verify"

    n = min(args.accuracy_images, len(x))
    correct, failed = 0, 0
    for i in range(n):
        json.dump({"input_data": [x[i].astype(float).tolist()]}, open(p("input.json"), "w"))
        try:
            call(ezkl.gen_witness, p("input.json"), p("model.compiled"), p("witness.json"))
        except RuntimeError:
            failed += 1  # outside the calibrated ranges: no witness, counted as wrong
            continue
        w = json.load(open(p("witness.json")))
        out = np.array(w["pretty_elements"]["rescaled_outputs"][0], dtype=float)
        correct += int(out.argmax() == y[i])

    print(f"ezkl {getattr(ezkl, '__version__', '?')}, logrows {logrows}, "
          f"settings+calibration+compile+srs {prep:.1f} s, setup {setup:.1f} s")
    print(f"prove: median {sorted(prove_times)[len(prove_times)//2]:.2f} s over {len(prove_times)} "
          f"({', '.join(f'{t:.2f}' for t in prove_times)})")
    print(f"verify: median {sorted(verify_times)[len(verify_times)//2]*1000:.0f} ms")
    print(f"proof {os.path.getsize(p('proof.json'))} B (JSON), pk {os.path.getsize(p('pk.key'))} B, "
          f"vk {os.path.getsize(p('vk.key'))} B")
    print(f"accuracy on the {n} test images: EZKL {correct / n:.4f} ({failed} without a witness); the integer model vichain proves "
          f"{int_acc:.4f} (on all {len(x)})")


if __name__ == "__main__":
    main()
