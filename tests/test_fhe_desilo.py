"""einc.fhe on DESILO's desilofhe 1.17.0 (opt-in extra): results within CKKS noise, per-level rotation keys,
hoisted rotations, the rotation-direction check, serialization and the server side."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("desilofhe")

import einc.fhe as fhe  # noqa: E402
from einc.errors import FheError  # noqa: E402

pytestmark = pytest.mark.fhe

N = 2 ** 14          # 8192 slots: fast, and the engine still has 7 levels


def _relerr(got, ref):
    return float(np.max(np.abs(got - ref)) / max(1e-12, float(np.max(np.abs(ref)))))


@pytest.fixture(scope="module")
def ctx():
    return fhe.Context("desilo", N, depth=4)


@pytest.mark.parametrize("expr,shapes,plain", [
    ("ik,k->i", [(64, 64), (64,)], ()),               # sum after a product: rotations by powers of two
    ("ik,kj->ij", [(16, 16), (16, 32)], ()),          # row-major inputs: the plan moves a field (hoisted BSGS)
    ("ij,jk,kl->il", [(8, 4), (4, 4), (4, 8)], ()),   # three operands, depth 2, relinearization
    ("ik,k->i", [(64, 64), (64,)], (0,)),             # plaintext weights
    ("ij,jk->ik", [(8, 8), (8, 8)], (1,)),            # plaintext second operand
    ("ii->i", [(16, 16)], ()),                        # diagonal by masking
    ("i,i->", [(10000,), (10000,)], ()),              # tiled over 2 ciphertexts
])
def test_desilo_within_noise(ctx, expr, shapes, plain):
    rng = np.random.default_rng(len(expr) + len(plain))
    arrays = [rng.uniform(-1, 1, s) for s in shapes]
    ops = [a if k in plain else ctx.encrypt(a) for k, a in enumerate(arrays)]
    y = fhe.einsum(expr, *ops)
    assert _relerr(ctx.decrypt(y), np.einsum(expr, *arrays)) <= 1e-3


def test_large_plaintext_weights_are_not_garbage(ctx):
    """desilofhe 1.17.0's light plaintexts wrap values from about 2^36 on: weights of 1e12 multiplied to
    1e-4 of their value and the other slots to 1e8 noise.  Large values take full plaintexts now, and values
    no level can hold are refused instead of encoded to garbage."""
    x = ctx.encrypt(np.array([1.0, 1.0, 1.0]))
    w = np.array([1e12, 1.0, -1e12 / 3])
    got = ctx.decrypt(fhe.einsum("i,i->i", x, w))
    assert _relerr(got, w) <= 1e-6
    with pytest.raises(FheError, match="cannot encode values up to 1e\\+300"):
        fhe.einsum("i,i->i", x, np.array([1e300, 1.0, 1.0]))
    with pytest.raises(FheError, match="cannot encode values up to 1e\\+300"):
        ctx.encrypt(np.array([1e300, 1.0]))


def test_every_depth_up_to_the_engines_key_level():
    """desilofhe makes keys at most at max_level - 1: depth 3 at N = 2^14 picked the 3-special-prime engine
    (max_level 4) and died in create_relinearization_key with a bare RuntimeError.  Each depth the engines
    allow now runs; the first one they do not is an FheError before any key."""
    a = np.random.default_rng(2).uniform(-1, 1, (4, 4))
    c = fhe.Context("desilo", N, depth=3)
    y = fhe.einsum("ij,ij,ij,ij->i", *([c.encrypt(a)] * 4))
    assert _relerr(c.decrypt(y), (a ** 4).sum(1)) <= 1e-3
    with pytest.raises(FheError, match="depth 6 needs keys at engine level 7.*7 levels.*depth 5 at most"):
        fhe.Context("desilo", N, depth=6)


def test_bad_thread_count_in_the_environment(monkeypatch):
    monkeypatch.setenv("EINC_DESILO_THREADS", "many")            # used to be a bare ValueError from int()
    with pytest.raises(FheError, match="EINC_DESILO_THREADS must be a number of threads, not 'many'"):
        fhe.Context("desilo", N, depth=1)


def test_keys_exactly_the_plans_at_the_levels_used():
    """The default N = 2^15 (16384 slots), as EinHops; keys only for the plan's amounts, each no higher than
    the level it is used at, so the key set is far below a top-level one."""
    rng = np.random.default_rng(0)
    a, b = rng.uniform(-1, 1, (16, 32)), rng.uniform(-1, 1, (32, 32))
    shapes = [a.shape, b.shape]
    p = fhe.plan("ik,kj->ij", *shapes, layouts=[fhe.Layout.row_major(s, 2 ** 14) for s in shapes])
    assert p.moves and p.depth >= 2
    c = fhe.Context("desilo", plan=p)
    assert c.slots == 16384 and c.depth == p.depth
    assert c.rotation_keys == sorted(p.rotation_keys)
    levels = c.backend.rotation_key_levels()
    assert levels == p.key_levels(c.depth)
    assert min(levels.values()) < c.depth            # keys used after a level is spent are smaller
    y = fhe.einsum("ik,kj->ij", c.encrypt(a), c.encrypt(b))
    assert _relerr(c.decrypt(y), a @ b) <= 1e-3


def test_hoisted_rotations_match_single(ctx):
    rng = np.random.default_rng(1)
    v = rng.uniform(-1, 1, ctx.slots)
    ctx.keygen([1, 5, -3])
    ct = ctx.backend.encrypt(v)
    many = ctx.backend.rotate_many(ct, [1, 5, -3])
    for k, r in zip([1, 5, -3], many):
        np.testing.assert_allclose(ctx.backend.decrypt(r), np.roll(v, -k), atol=1e-4)
        np.testing.assert_allclose(ctx.backend.decrypt(ctx.backend.rotate(ct, k)), np.roll(v, -k), atol=1e-4)


def test_rotation_direction_checked(monkeypatch, ctx):
    """desilofhe 2.0 reversed Engine.rotate: a reversed library must be refused, not trusted."""
    import desilofhe

    real = desilofhe.Engine.rotate

    def reversed_rotate(self, x, *args):
        if args and isinstance(args[0], int):
            return real(self, x, -args[0], *args[1:])
        return real(self, x, *args)

    monkeypatch.setattr(desilofhe.Engine, "rotate", reversed_rotate)
    with pytest.raises(FheError, match="rotates the other way"):
        fhe.Context("desilo", N, depth=1)


def test_key_below_ciphertext_level_refused(ctx):
    ctx2 = fhe.Context("desilo", N, depth=2)
    ctx2.backend.make_rotation_keys([7], {7: 0})
    ct = ctx2.backend.encrypt(np.ones(ctx2.slots))
    with pytest.raises(FheError, match="level"):
        ctx2.backend.rotate(ct, 7)
    ctx2.keygen([7])                                  # remade at the top level
    assert ctx2.backend.rotation_key_levels()[7] == 2
    np.testing.assert_allclose(ctx2.backend.decrypt(ctx2.backend.rotate(ct, 7)), 1.0, atol=1e-4)


def test_desilo_client_server(ctx, tmp_path):
    rng = np.random.default_rng(2)
    w, v = rng.uniform(-1, 1, (32, 32)), rng.uniform(-1, 1, 32)
    ctx.keygen(ctx.plan("ik,k->i", w, ctx.encrypt(v)))
    ctx.save(tmp_path / "pub.ctx")
    ctx.encrypt(v).save(tmp_path / "v.ct")
    server = fhe.Context.load(tmp_path / "pub.ctx")
    assert server.is_public and server.backend_name == "desilo"
    y = fhe.einsum("ik,k->i", w, server.load_tensor(tmp_path / "v.ct"))
    with pytest.raises(FheError, match="cannot decrypt"):
        server.decrypt(y)
    y.save(tmp_path / "y.ct")
    assert _relerr(ctx.decrypt(ctx.load_tensor(tmp_path / "y.ct")), w @ v) <= 1e-3


def test_desilo_refuses_too_deep():
    with pytest.raises(FheError, match="levels"):
        fhe.Context("desilo", N, depth=7)            # the engine for N = 2^14 has 7 levels, einc keeps two
    c = fhe.Context("desilo", N, depth=1)
    xs = [c.encrypt(np.ones((4, 4))) for _ in range(3)]
    with pytest.raises(FheError, match="levels"):
        fhe.einsum("ij,ij,ij->ij", *xs)
