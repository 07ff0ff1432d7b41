"""How many paths fit in memory at once: a conservative estimate of one path's saved activations."""

from __future__ import annotations

import torch

from scarlet.blocks import MBConv


def activation_elements_per_image(model) -> int:
    """Elements autograd keeps for one path and one image, averaged over each layer's choices, plus the
    gathers and concatenations of the batched executor."""
    total = 0
    for layer, shape in zip(model.layers, model.shapes):
        hi, ho = shape.in_size ** 2, shape.out_size ** 2
        per_choice = []
        for block in layer:
            if isinstance(block, MBConv):
                n = shape.in_channels * hi + 3 * block.hidden * hi + 3 * block.hidden * ho
                n += (2 * block.hidden * ho if block.se is not None else 0) + 3 * shape.out_channels * ho
            else:
                n = shape.in_channels * hi + shape.out_channels * ho
            per_choice.append(n)
        total += sum(per_choice) // len(per_choice) + shape.in_channels * hi + shape.out_channels * ho
    last = model.shapes[-1]
    total += 3 * model.head.conv.out_channels * last.out_size ** 2
    return total


def default_paths_in_flight(model, images: torch.Tensor, num_paths: int, autocast_dtype=None,
                            fraction: float = 0.6) -> int:
    """All paths on a CPU; on a GPU as many as fit in ``fraction`` of the free memory (at least one)."""
    if images.device.type != "cuda":
        return num_paths
    free, _ = torch.cuda.mem_get_info(images.device)
    itemsize = 2 if autocast_dtype in (torch.bfloat16, torch.float16) else images.element_size()
    per_path = activation_elements_per_image(model) * images.shape[0] * itemsize * 1.5
    return max(1, min(num_paths, int(fraction * free // max(per_path, 1))))
