"""Vision Transformers: ``digits-vit`` (8×8 digits) and ``fashion-vit`` (28×28 Fashion-MNIST).

Patches of 2×2 pixels become 16 tokens (a strided ``patch_embed`` Conv2d, as in ViT), a
class token and position embeddings are added (``embed``), then pre-norm encoder blocks
(Dosovitskiy et al. 2021, eq. 2-3): ``x = add1(x, attn(ln1(x)))``,
``x = add2(x, mlp(ln2(x)))``. Attention uses separate ``q``/``k``/``v``/``proj`` Linear
layers and :class:`~lowbit.models.graph.MatMulSite` products ``qk`` and ``av`` so a plan can
quantize each and the simulator sees every GEMM. The logits come from the class token
after a final LayerNorm.
"""

from __future__ import annotations

import torch
from torch import nn

from lowbit.models.graph import MatMulSite, PruneGroup

from ._base import Add, TokenEmbedding, ZooModel

__all__ = ["Attention", "EncoderBlock", "FeedForward", "ViT", "digits_vit", "fashion_vit"]


class Attention(nn.Module):
    """Multi-head self-attention: softmax(q kᵀ / √d) v per head, then ``proj``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}")
        self.heads = heads
        self.head_dim = dim // heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.qk = MatMulSite()
        self.softmax = nn.Softmax(dim=-1)
        self.av = MatMulSite()
        self.proj = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, dim) -> (B, heads, T, head_dim)."""
        b, t, _ = x.shape
        return x.reshape(b, t, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, dim = x.shape
        q = self._split(self.q(x)) * self.head_dim**-0.5
        k = self._split(self.k(x))
        v = self._split(self.v(x))
        attn = self.softmax(self.qk(q, k.transpose(-2, -1)))
        out = self.av(attn, v).transpose(1, 2).reshape(b, t, dim)
        return self.proj(out)


class FeedForward(nn.Module):
    """``fc1`` → GELU (``act``) → ``fc2``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class EncoderBlock(nn.Module):
    """Pre-norm transformer encoder block with residual :class:`Add` modules."""

    def __init__(self, dim: int, heads: int, mlp_hidden: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.add1 = Add()
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, mlp_hidden)
        self.add2 = Add()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.add1(x, self.attn(self.ln1(x)))
        return self.add2(x, self.mlp(self.ln2(x)))


class ViT(ZooModel):
    """Patch embedding, class token, ``depth`` encoder blocks, LayerNorm, linear ``head``.

    Args:
        dataset: dataset name (sets the contract attribute).
        input_shape: ``(C, H, W)``; H and W divisible by ``patch``.
        patch: square patch size (the embedding conv's kernel and stride).
        dim: token width. heads: attention heads. depth: encoder blocks.
        mlp_hidden: width of each block's ``mlp.fc1``.
        num_classes: logits of ``head``.
    """

    def __init__(
        self,
        *,
        dataset: str,
        input_shape: tuple[int, int, int],
        patch: int,
        dim: int,
        heads: int,
        depth: int,
        mlp_hidden: int,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        channels, height, width = input_shape
        if height % patch or width % patch:
            raise ValueError(
                f"input {height}x{width} is not divisible into {patch}x{patch} patches"
            )
        self.dataset = dataset
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.patch_embed = nn.Conv2d(channels, dim, patch, stride=patch)
        self.embed = TokenEmbedding((height // patch) * (width // patch), dim)
        self.blocks = nn.ModuleList(EncoderBlock(dim, heads, mlp_hidden) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(self.patch_embed(x).flatten(2).transpose(1, 2))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])

    def prune_groups(self) -> tuple[PruneGroup, ...]:
        return tuple(
            PruneGroup(f"blocks.{i}.mlp.fc1", (f"blocks.{i}.mlp.fc2",))
            for i in range(len(self.blocks))
        )


def digits_vit() -> ViT:
    """8×8 digits as 16 patches of 2×2: width 32, 4 heads, 2 blocks, MLP 64 (~18k params)."""
    return ViT(
        dataset="digits", input_shape=(1, 8, 8), patch=2, dim=32, heads=4, depth=2, mlp_hidden=64
    )


def fashion_vit() -> ViT:
    """Fashion-MNIST 28×28 as 49 patches of 4×4: width 64, 4 heads, 4 blocks, MLP 128
    (~8 MMAC, ~140k params)."""
    return ViT(
        dataset="fashion-mnist",
        input_shape=(1, 28, 28),
        patch=4,
        dim=64,
        heads=4,
        depth=4,
        mlp_hidden=128,
    )
