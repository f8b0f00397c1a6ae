"""Slot layouts: where each element of a tensor sits in the slot vectors of its ciphertexts.

A layout gives every tensor axis a *field*: a run of ``width`` bits of the slot index starting at
bit ``shift`` (so the axis has a power-of-two stride ``2**shift`` and is padded to ``2**width``).
Fields of one layout never overlap, so a slot index is the bitwise sum of the axes' indices.  An axis
larger than what fits is *tiled*: ``block`` indices per ciphertext, ``ceil(size / block)`` tiles, and
the ciphertexts of a tensor are numbered row-major over the tiled axes.

Bits of the slot index that belong to no field are *dead*: data lives where they are 0.  After an
encrypted sum the dead bits of the summed field may hold partial sums ("junk"); decryption reads only
the canonical slots, so junk is harmless until a later step needs zeros there (then it is masked).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from einc.errors import FheError


def width_of(extent: int) -> int:
    """Bits needed for ``extent`` indices (0 for an extent of 1)."""
    return max(0, (int(extent) - 1).bit_length())


@dataclass(frozen=True)
class Axis:
    """One tensor axis in a layout: ``size`` indices, ``block`` of them per ciphertext, field at ``shift``."""

    size: int
    block: int
    shift: int

    @property
    def width(self) -> int:
        return width_of(self.block)

    @property
    def stride(self) -> int:
        return 1 << self.shift

    @property
    def tiles(self) -> int:
        return -(-self.size // self.block) if self.size else 1

    @property
    def bits(self) -> int:
        """The slot-index bits of the field, as a mask."""
        return ((1 << self.width) - 1) << self.shift

    def extent(self, tile: int) -> int:
        """How many indices tile ``tile`` holds (the last tile may hold fewer)."""
        return max(0, min(self.block, self.size - tile * self.block))

    def to_json(self) -> dict:
        return {"size": self.size, "block": self.block, "shift": self.shift}


@dataclass(frozen=True)
class Layout:
    """The slot layout of a tensor: one ``Axis`` per dimension, in the tensor's dimension order."""

    slots: int
    axes: tuple[Axis, ...]

    def __post_init__(self):
        if self.slots <= 0 or self.slots & (self.slots - 1):
            raise FheError(f"slot count {self.slots} is not a power of two")
        used = 0
        for k, ax in enumerate(self.axes):
            if ax.size < 1 or ax.block < 1 or ax.block > max(1, ax.size) or ax.shift < 0:
                raise FheError(f"layout axis {k}: bad size/block/shift {ax.size}/{ax.block}/{ax.shift}")
            if ax.bits >= self.slots and ax.width:
                raise FheError(f"layout axis {k}: field bits {ax.shift}..{ax.shift + ax.width - 1} "
                               f"exceed the {self.slots} slots ({width_of(self.slots)} bits)")
            if used & ax.bits:
                raise FheError(f"layout axis {k}: field overlaps another axis' field")
            used |= ax.bits

    # ------------------------------------------------------------------ shape
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(ax.size for ax in self.axes)

    @property
    def tile_shape(self) -> tuple[int, ...]:
        return tuple(ax.tiles for ax in self.axes)

    @property
    def ntiles(self) -> int:
        return math.prod(self.tile_shape)

    @property
    def used_bits(self) -> int:
        m = 0
        for ax in self.axes:
            m |= ax.bits
        return m

    def tile_index(self, tiles: tuple[int, ...]) -> int:
        """Flat ciphertext number of the tile with per-axis tile indices ``tiles``."""
        return int(np.ravel_multi_index(tiles, self.tile_shape)) if self.axes else 0

    # ------------------------------------------------------------------ constructors
    @classmethod
    def row_major(cls, shape, slots: int) -> "Layout":
        """Compact row-major packing (last axis at bit 0), tiling the largest axes when it does not fit."""
        shape = tuple(int(s) for s in shape)
        if any(s < 1 for s in shape):
            raise FheError(f"cannot encrypt an empty tensor of shape {shape}")
        blocks = list(shape)
        budget = width_of(slots)
        while sum(width_of(b) for b in blocks) > budget:
            k = max(range(len(blocks)), key=lambda i: (width_of(blocks[i]), i))
            blocks[k] = 1 << (width_of(blocks[k]) - 1)
        axes, shift = [], 0
        for size, block in reversed(list(zip(shape, blocks))):
            axes.append(Axis(size, block, shift))
            shift += width_of(block)
        return cls(slots, tuple(reversed(axes)))

    # ------------------------------------------------------------------ packing
    def pack(self, array) -> np.ndarray:
        """The slot vectors (``ntiles x slots``) holding ``array``; zero outside canonical slots."""
        a = np.asarray(array, dtype=np.float64)
        if a.shape != self.shape:
            raise FheError(f"array of shape {a.shape} does not match layout shape {self.shape}")
        out = np.zeros((self.ntiles, self.slots))
        for t, tiles in enumerate(itertools.product(*(range(n) for n in self.tile_shape))):
            pos, idx = _grids(self.axes, tiles)
            out[t][pos] = a[idx]
        return out

    def unpack(self, vectors) -> np.ndarray:
        """The tensor read from the canonical slots of ``vectors`` (junk elsewhere is ignored)."""
        v = np.asarray(vectors)
        out = np.zeros(self.shape, dtype=v.dtype)
        for t, tiles in enumerate(itertools.product(*(range(n) for n in self.tile_shape))):
            pos, idx = _grids(self.axes, tiles)
            out[idx] = v[t][pos]
        return out

    # ------------------------------------------------------------------ text
    def picture(self, labels=None) -> str:
        """The slot-index bits, high to low, each marked with the label of the field it belongs to.

        ``labels``: one label per axis (a string of letters, or a sequence such as ``("i", "i'")``).  A label
        repeated in one operand (a diagonal, ``ii``) is shown primed: its field's bits are marked ``'``."""
        nb = width_of(self.slots)
        labels = list(labels) if labels else [chr(ord("a") + k) for k in range(len(self.axes))]
        seen: dict = {}
        names = []
        for lab in labels:
            base = lab.rstrip("'") or lab
            names.append(base + "'" * seen.get(base, 0))
            seen[base] = seen.get(base, 0) + 1
        marks = ["."] * nb
        for name, ax in zip(names, self.axes):
            for b in range(ax.shift, ax.shift + ax.width):
                marks[b] = name if len(name) == 1 else "'"
        bits = "".join(reversed(marks))
        parts = []
        for name, ax in zip(names, self.axes):
            tiled = f" x{ax.tiles} ciphertexts" if ax.tiles > 1 else ""
            parts.append(f"{name}:{ax.size}@{ax.stride}{tiled}")
        return f"[{bits}]  " + " ".join(parts)

    def to_json(self) -> dict:
        return {"slots": self.slots, "axes": [ax.to_json() for ax in self.axes]}

    @classmethod
    def from_json(cls, d: dict) -> "Layout":
        return cls(int(d["slots"]), tuple(Axis(int(a["size"]), int(a["block"]), int(a["shift"])) for a in d["axes"]))


def _grids(axes, tiles):
    """Slot positions and numpy index of one tile: ``vec[pos] <-> array[idx]``."""
    n = len(axes)
    pos = np.zeros((), dtype=np.int64)
    idx = []
    for k, (ax, t) in enumerate(zip(axes, tiles)):
        ext = ax.extent(t)
        shape = [1] * n
        shape[k] = ext
        pos = pos + (np.arange(ext, dtype=np.int64) << ax.shift).reshape(shape)
        idx.append(np.arange(t * ax.block, t * ax.block + ext).reshape(shape))
    return pos, tuple(idx)


def fill(slots: int, entries, values) -> np.ndarray:
    """One slot vector: ``entries`` is a tuple of ``(size, block, shift, tile)`` per label and
    ``values(global_index_grids, inner_index_grids)`` returns an array broadcastable to the tile."""
    n = len(entries)
    pos = np.zeros((), dtype=np.int64)
    gl, inner = [], []
    for k, (size, block, shift, tile) in enumerate(entries):
        ext = max(0, min(block, size - tile * block))
        shape = [1] * n
        shape[k] = ext
        i = np.arange(ext, dtype=np.int64).reshape(shape)
        inner.append(i)
        gl.append(i + tile * block)
        pos = pos + (i << shift)
    vec = np.zeros(slots)
    vals = np.broadcast_to(np.asarray(values(gl, inner), dtype=np.float64), np.broadcast(pos, *gl).shape if gl else ())
    vec[np.broadcast_to(pos, vals.shape)] = vals
    return vec
