"""Store an exported engine's large weights as fp16, computed in fp32: half the file, the same arithmetic.

Dynamic int8 quantisation was tried first and refused: ONNX Runtime quantises each MatMul's input with one
scale per tensor, so a window's scores would depend on the other windows in its batch (measured: logits
moved by up to 0.33 when another stream's loud window shared the batch), and the daemon batches across
streams. Here each large float initialiser is kept as fp16 and cast back to fp32 by a ``Cast`` node, which
ONNX Runtime folds into a constant when the session opens; everything is then computed in fp32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MIN_COMPACTED = 4096  # smaller tensors (biases, norms, the heads' biases) stay fp32


def compact_weights(src: Path, dst: Path) -> int:
    """Write ``src`` with its large fp32 initialisers stored as fp16 to ``dst``; returns how many."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    kept, casts, count = [], [], 0
    for init in graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.size >= MIN_COMPACTED:
            half = numpy_helper.from_array(arr.astype(np.float16), name=f"{init.name}__fp16")
            kept.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT))
            count += 1
        else:
            kept.append(init)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return count
