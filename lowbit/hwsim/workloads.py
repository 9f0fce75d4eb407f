"""Built-in workloads: the layer shapes of well-known networks (no weights), batch 1.

Shapes follow the reference implementations (torchvision for ResNet, MobileNetV2 and
ViT-B/16; Hugging Face ``BertLayer`` for BERT), with PyTorch's output-size convention
(floor). Layer names are the PyTorch module names where a module exists; layers that are
functional calls in PyTorch (residual adds, attention matmuls, softmax) get a descriptive
name under their parent module (``layer1.0.add``, ``...self_attention.scores``).

Inference-time fusions are applied, as every deployment flow does: BatchNorm is folded
into the preceding convolution and ReLU/ReLU6 run in the convolution's output stage, so
neither appears as a layer. What stays as memory-only layers: max/avg pooling, residual
adds, LayerNorm, softmax and GELU (which need their own pass over the tensor).

Higher layers (the model zoo, the CLI) add their own workloads with
:func:`register_workload`.

Example:
    >>> from lowbit.hwsim.workloads import builtin_workload
    >>> round(builtin_workload("resnet18").macs / 1e9, 2)
    1.81
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import WorkloadError
from .workload import Conv2d, Elementwise, Layer, Linear, MatMul, Pool, Workload

__all__ = ["BUILTIN_WORKLOADS", "builtin_workload", "register_workload", "workload_names"]


class _Net:
    """Accumulates layers while tracking the current activation shape (H, W, C)."""

    def __init__(self, h: int, w: int, c: int) -> None:
        self.h, self.w, self.c = h, w, c
        self.layers: list[Layer] = []

    def conv(
        self, name: str, out_c: int, k: int, *, stride: int = 1, padding: int = 0, groups: int = 1
    ) -> None:
        out_h = Conv2d.out_size(self.h, k, stride, padding)
        out_w = Conv2d.out_size(self.w, k, stride, padding)
        self.layers.append(
            Conv2d(
                name=name,
                in_h=self.h,
                in_w=self.w,
                in_c=self.c,
                out_c=out_c,
                k_h=k,
                k_w=k,
                stride=stride,
                out_h=out_h,
                out_w=out_w,
                groups=groups,
            )
        )
        self.h, self.w, self.c = out_h, out_w, out_c

    def pool(self, name: str, k: int, *, stride: int, padding: int = 0) -> None:
        out_h = Conv2d.out_size(self.h, k, stride, padding)
        out_w = Conv2d.out_size(self.w, k, stride, padding)
        self.layers.append(
            Pool(
                name=name,
                in_elements=self.elements,
                out_elements=out_h * out_w * self.c,
                kind="maxpool",
            )
        )
        self.h, self.w = out_h, out_w

    def global_pool(self, name: str) -> None:
        self.layers.append(
            Pool(name=name, in_elements=self.elements, out_elements=self.c, kind="avgpool")
        )
        self.h = self.w = 1

    def add(self, name: str) -> None:
        """Residual add of two tensors of the current shape."""
        self.layers.append(Elementwise(name=name, elements=self.elements, inputs=2, kind="add"))

    def linear(self, name: str, out_features: int) -> None:
        self.layers.append(Linear(name=name, in_features=self.c, out_features=out_features))
        self.c = out_features

    @property
    def elements(self) -> int:
        return self.h * self.w * self.c


# --- ResNet (torchvision resnet.py; v1.5: the stride sits on the 3x3 conv) ----------------


def _resnet(name: str, *, bottleneck: bool, blocks: tuple[int, ...]) -> Workload:
    net = _Net(224, 224, 3)
    net.conv("conv1", 64, 7, stride=2, padding=3)
    net.pool("maxpool", 3, stride=2, padding=1)
    expansion = 4 if bottleneck else 1
    for stage, (width, count) in enumerate(zip((64, 128, 256, 512), blocks, strict=True), 1):
        for index in range(count):
            stride = 2 if stage > 1 and index == 0 else 1
            prefix = f"layer{stage}.{index}"
            in_h, in_w, in_c = net.h, net.w, net.c
            if bottleneck:
                net.conv(f"{prefix}.conv1", width, 1)
                net.conv(f"{prefix}.conv2", width, 3, stride=stride, padding=1)
                net.conv(f"{prefix}.conv3", width * expansion, 1)
            else:
                net.conv(f"{prefix}.conv1", width, 3, stride=stride, padding=1)
                net.conv(f"{prefix}.conv2", width, 3, padding=1)
            if stride != 1 or in_c != width * expansion:
                out = (net.h, net.w, net.c)
                net.h, net.w, net.c = in_h, in_w, in_c
                net.conv(f"{prefix}.downsample.0", width * expansion, 1, stride=stride)
                if (net.h, net.w, net.c) != out:
                    raise RuntimeError(f"{name}: shortcut shape mismatch in {prefix}")
            net.add(f"{prefix}.add")
    net.global_pool("avgpool")
    net.linear("fc", 1000)
    return Workload(name, tuple(net.layers))


def resnet18() -> Workload:
    """torchvision ResNet-18 at 224x224: 1.81 GMACs (torchvision lists 1.81 "GFLOPS")."""
    return _resnet("resnet18", bottleneck=False, blocks=(2, 2, 2, 2))


def resnet50() -> Workload:
    """torchvision ResNet-50 (v1.5) at 224x224: 4.09 GMACs."""
    return _resnet("resnet50", bottleneck=True, blocks=(3, 4, 6, 3))


# --- MobileNetV2 (torchvision mobilenetv2.py, width 1.0) ----------------------------------

#: (expand ratio t, output channels c, repeats n, first stride s), Sandler et al. 2018, Table 2
_MBV2_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def mobilenetv2() -> Workload:
    """torchvision MobileNetV2 at 224x224: 0.30 GMACs. Depthwise convs have groups=in_c."""
    net = _Net(224, 224, 3)
    net.conv("features.0.0", 32, 3, stride=2, padding=1)
    block = 1
    for t, c, n, s in _MBV2_SETTINGS:
        for index in range(n):
            stride = s if index == 0 else 1
            prefix = f"features.{block}.conv"
            in_c = net.c
            hidden = in_c * t
            part = 0
            if t != 1:
                net.conv(f"{prefix}.0.0", hidden, 1)
                part = 1
            net.conv(f"{prefix}.{part}.0", hidden, 3, stride=stride, padding=1, groups=hidden)
            net.conv(f"{prefix}.{part + 1}", c, 1)
            if stride == 1 and in_c == c:
                net.add(f"features.{block}.add")
            block += 1
    net.conv(f"features.{block}.0", 1280, 1)
    net.global_pool("avgpool")
    net.linear("classifier.1", 1000)
    return Workload("mobilenetv2", tuple(net.layers))


# --- Transformer encoder layers ------------------------------------------------------------


#: kind of each memory-only role of an encoder layer
_KINDS = {
    "softmax": "softmax",
    "add1": "add",
    "add2": "add",
    "gelu": "gelu",
    "ln1": "layernorm",
    "ln2": "layernorm",
}


def _encoder_layer(
    prefix: str, *, seq: int, hidden: int, heads: int, ffn: int, names: dict[str, str]
) -> list[Layer]:
    """One post- or pre-norm encoder layer; ``names`` maps roles to module names."""
    head_dim = hidden // heads

    def linear(role: str, in_f: int, out_f: int) -> Linear:
        return Linear(name=prefix + names[role], in_features=in_f, out_features=out_f, tokens=seq)

    def elementwise(role: str, elements: int, inputs: int = 1, rows: int = 0) -> Elementwise:
        return Elementwise(
            name=prefix + names[role],
            elements=elements,
            inputs=inputs,
            kind=_KINDS[role],
            rows=rows,
        )

    attention = [
        linear("q", hidden, hidden),
        linear("k", hidden, hidden),
        linear("v", hidden, hidden),
        # QK^T per head: (seq x head_dim) . (head_dim x seq)
        MatMul(name=prefix + names["scores"], M=seq, N=seq, K=head_dim, heads=heads),
        elementwise("softmax", heads * seq * seq, rows=heads * seq),
        # AV per head: (seq x seq) . (seq x head_dim)
        MatMul(name=prefix + names["context"], M=seq, N=head_dim, K=seq, heads=heads),
        linear("o", hidden, hidden),
        elementwise("add1", seq * hidden, 2),
    ]
    mlp = [
        linear("ffn1", hidden, ffn),
        elementwise("gelu", seq * ffn),
        linear("ffn2", ffn, hidden),
        elementwise("add2", seq * hidden, 2),
    ]
    ln1 = elementwise("ln1", seq * hidden, rows=seq)
    ln2 = elementwise("ln2", seq * hidden, rows=seq)
    if names["norm"] == "pre":  # ViT: x + attn(ln_1(x)); x + mlp(ln_2(x))
        return [ln1, *attention, ln2, *mlp]
    return [*attention, ln1, *mlp, ln2]  # BERT: ln(x + attn(x)); ln(x + ffn(x))


#: Hugging Face BertLayer module names (post-norm)
_BERT_NAMES = {
    "norm": "post",
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "scores": "attention.self.scores",
    "softmax": "attention.self.softmax",
    "context": "attention.self.context",
    "o": "attention.output.dense",
    "add1": "attention.output.add",
    "ln1": "attention.output.LayerNorm",
    "ffn1": "intermediate.dense",
    "gelu": "intermediate.gelu",
    "ffn2": "output.dense",
    "add2": "output.add",
    "ln2": "output.LayerNorm",
}

#: torchvision EncoderBlock module names (pre-norm). torchvision packs q/k/v into one
#: ``in_proj``; they are listed separately here so a plan can compress each.
_VIT_NAMES = {
    "norm": "pre",
    "ln1": "ln_1",
    "q": "self_attention.q_proj",
    "k": "self_attention.k_proj",
    "v": "self_attention.v_proj",
    "scores": "self_attention.scores",
    "softmax": "self_attention.softmax",
    "context": "self_attention.context",
    "o": "self_attention.out_proj",
    "add1": "add_1",
    "ln2": "ln_2",
    "ffn1": "mlp.0",
    "gelu": "mlp.1",
    "ffn2": "mlp.3",
    "add2": "add_2",
}


def bert_base() -> Workload:
    """One BERT-base encoder layer: seq 128, hidden 768, 12 heads, FFN 3072 (0.93 GMACs)."""
    layers = _encoder_layer(
        "encoder.layer.0.", seq=128, hidden=768, heads=12, ffn=3072, names=_BERT_NAMES
    )
    return Workload("bert-base", tuple(layers))


def vit_b16() -> Workload:
    """torchvision ViT-B/16 at 224x224: 196 patches + class token, 12 layers, 17.56 GMACs."""
    hidden, seq = 768, 197
    net = _Net(224, 224, 3)
    net.conv("conv_proj", hidden, 16, stride=16)
    layers = list(net.layers)
    # class token concatenated, then the position embedding added (one pass over seq x hidden)
    layers.append(
        Elementwise(name="encoder.pos_embedding", elements=seq * hidden, inputs=2, kind="embedding")
    )
    for i in range(12):
        layers += _encoder_layer(
            f"encoder.layers.encoder_layer_{i}.",
            seq=seq,
            hidden=hidden,
            heads=12,
            ffn=3072,
            names=_VIT_NAMES,
        )
    layers.append(Elementwise(name="encoder.ln", elements=seq * hidden, kind="layernorm", rows=seq))
    layers.append(Linear(name="heads.head", in_features=hidden, out_features=1000))  # cls token
    return Workload("vit-b16", tuple(layers))


# --- registry ------------------------------------------------------------------------------

BUILTIN_WORKLOADS: dict[str, Callable[[], Workload]] = {
    "resnet18": resnet18,
    "resnet50": resnet50,
    "mobilenetv2": mobilenetv2,
    "bert-base": bert_base,
    "vit-b16": vit_b16,
}


def workload_names() -> list[str]:
    """Every registered workload name, sorted."""
    return sorted(BUILTIN_WORKLOADS)


def builtin_workload(name: str) -> Workload:
    """Build the registered workload ``name``.

    Raises:
        WorkloadError: ``name`` is not registered (the message lists the valid names).
    """
    factory = BUILTIN_WORKLOADS.get(name)
    if factory is None:
        raise WorkloadError(
            f"unknown workload {name!r}; valid names: {', '.join(workload_names())}"
        )
    return factory()


def register_workload(name: str, factory: Callable[[], Workload], *, replace: bool = False) -> None:
    """Add a workload factory under ``name`` (the model zoo registers its networks here).

    Raises:
        ValueError: ``name`` is already registered and ``replace`` is false, or ``factory``
            is not callable.
    """
    if not callable(factory):
        raise ValueError(f"workload factory for {name!r} is not callable: {factory!r}")
    if name in BUILTIN_WORKLOADS and not replace:
        raise ValueError(f"workload {name!r} is already registered (pass replace=True)")
    BUILTIN_WORKLOADS[name] = factory
