"""int8 dynamic quantisation of an exported Whisper engine: the encoder's large MatMuls only.

The front end (DFT basis, mel filters), the convolutions, the attention products and the small heads stay
fp32: they are cheap and the front end's precision matters. The encoder's linear layers carry nearly all
weights and time; int8 there quarters the file and nearly halves the CPU cost per window.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MIN_QUANTISED_WEIGHTS = 100_000  # the heads (1024 x 4) and mel filters (80 x 201) stay below this


def quantise_encoder(src: Path, dst: Path) -> list[str]:
    """Write the quantised copy of ``src`` to ``dst``; returns the names of the nodes kept in fp32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src))
    sizes = {init.name: int(np.prod(init.dims)) for init in model.graph.initializer}
    keep_fp32 = [
        node.name
        for node in model.graph.node
        if node.op_type in ("MatMul", "Gemm")
        and max((sizes.get(i, 0) for i in node.input), default=0) < MIN_QUANTISED_WEIGHTS
    ]
    quantize_dynamic(
        str(src),
        str(dst),
        weight_type=QuantType.QInt8,
        nodes_to_exclude=keep_fp32,
        op_types_to_quantize=["MatMul", "Gemm"],
    )
    return keep_fp32
