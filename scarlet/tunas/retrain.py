"""A fixed short stand-alone recipe for comparing architectures found by search (TuNAS section 3.2, at toy scale).

Every architecture (TuNAS's and each random-search candidate) is trained from scratch with the same recipe:
TF-style RMSProp (decay 0.9, momentum 0.9, epsilon 1.0, sheet A4/A6), linear warmup then cosine learning rate,
label smoothing 0.1, weight decay on conv kernels, BN with running statistics. After training the BN statistics
are re-estimated over ``calib_batches`` training batches (a short run's momentum-0.01 averages have not
converged); accuracy is measured in eval mode. The recipe is ``Recipe``'s fields; nothing depends on which search
proposed the architecture.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from scarlet.data import BatchStream, Split, batches
from scarlet.decisions.evaluate import accuracy, recalibrate_bn
from scarlet.decisions.space import Space
from scarlet.decisions.standalone import DecisionStandaloneNet
from scarlet.optim import RMSpropTF, decay_groups
from scarlet.tunas.trainer import RMSPROP, weight_lr


@dataclass(frozen=True)
class Recipe:
    steps: int = 150
    batch_size: int = 64
    lr: float = 0.1
    lr_warmup: float = 0.025
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    seed: int = 0
    calib_batches: int = 8

    def as_dict(self) -> dict:
        return asdict(self)


def train_standalone(space: Space, arch, train: Split, num_classes: int, resolution: int,
                     recipe: Recipe) -> DecisionStandaloneNet:
    torch.manual_seed(recipe.seed)
    net = DecisionStandaloneNet(space, arch, num_classes, resolution)
    opt = RMSpropTF(decay_groups(net, recipe.weight_decay, "conv"), lr=recipe.lr, **RMSPROP)
    stream = BatchStream(train, recipe.batch_size, recipe.seed)
    schedule = {"steps": recipe.steps, "lr": recipe.lr, "lr_warmup": recipe.lr_warmup}
    net.train()
    for step in range(recipe.steps):
        for group in opt.param_groups:
            group["lr"] = weight_lr(schedule, step)
        images, labels = stream.next()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(images), labels, label_smoothing=recipe.label_smoothing).backward()
        opt.step()
    # A short run's BN running averages (momentum 0.01) are far from converged: re-estimate them.
    recalibrate_bn(net, list(batches(train, recipe.batch_size, limit=recipe.calib_batches)))
    return net.eval()


def split_accuracy(net: DecisionStandaloneNet, split: Split) -> float:
    return accuracy(net, list(batches(split, 256)))
