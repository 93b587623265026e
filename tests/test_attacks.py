"""Tests for backdoor triggers and the BadNets attack (Gu et al. 2017; Chen et al. 2017)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mithridate.attacks import BadNets, Blend, Poisoning, Trigger, blend_trigger, patch_trigger
from mithridate.data import Dataset
from mithridate.errors import ConfigError, DataError

H, W = 6, 10  # non-square on purpose: rows and columns must not be swapped


def _images(n=4, c=1, h=H, w=W, seed=0):
    return np.random.default_rng(seed).random((n, c, h, w)).astype(np.float32)


# -- patch trigger -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "position, margin, r0, c0",
    [
        ("bottom-right", 0, H - 2, W - 2),
        ("bottom-left", 0, H - 2, 0),
        ("top-right", 0, 0, W - 2),
        ("top-left", 0, 0, 0),
        ("center", 0, (H - 2) // 2, (W - 2) // 2),
        ("bottom-right", 1, H - 3, W - 3),
        ("bottom-left", 1, H - 3, 1),
        ("top-right", 1, 1, W - 3),
        ("top-left", 1, 1, 1),
        ((2, 5), 0, 2, 5),
    ],
)
def test_patch_trigger_exact_pixels(position, margin, r0, c0):
    X = _images(c=3)
    t = patch_trigger((3, H, W), size=2, position=position, value=0.25, margin=margin)
    out = t.apply(X)
    inside = np.zeros((H, W), bool)
    inside[r0 : r0 + 2, c0 : c0 + 2] = True
    assert np.all(out[:, :, inside] == np.float32(0.25))
    np.testing.assert_array_equal(out[:, :, ~inside], X[:, :, ~inside])
    assert out.dtype == np.float32
    assert t.mask_l1() == 4.0
    assert t.kind == "patch"
    assert X.max() <= 1.0 and not np.shares_memory(out, X)


def test_patch_trigger_checkerboard():
    X = _images()
    t = patch_trigger((1, H, W), size=3, position="top-left", value="checkerboard", margin=1)
    out = t.apply(X)
    expected = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], np.float32)
    for i in range(len(X)):
        np.testing.assert_array_equal(out[i, 0, 1:4, 1:4], expected)
    keep = np.ones((H, W), bool)
    keep[1:4, 1:4] = False
    np.testing.assert_array_equal(out[:, :, keep], X[:, :, keep])


def test_patch_trigger_default_is_white_bottom_right():
    X = np.zeros((2, 1, 8, 8), np.float32)
    out = patch_trigger((1, 8, 8)).apply(X)
    assert out[:, 0, 5:, 5:].min() == 1.0
    assert out.sum() == 2 * 9


# -- blend trigger -------------------------------------------------------------------------------
def test_blend_trigger_formula_exact():
    X = _images(c=3)
    key = np.random.default_rng(5).random((3, H, W)).astype(np.float32)
    a = 0.3
    t = blend_trigger((3, H, W), alpha=a, pattern=key)
    out = t.apply(X)
    a32 = np.float32(a)
    expected = (np.float32(1) - a32) * X + a32 * key
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_allclose(out, (1 - a) * X.astype(np.float64) + a * key, atol=1e-6)
    assert t.kind == "blend"


def test_blend_trigger_random_key_from_random_state():
    t1 = blend_trigger((1, H, W), alpha=0.2, random_state=7)
    t2 = blend_trigger((1, H, W), alpha=0.2, random_state=7)
    t3 = blend_trigger((1, H, W), alpha=0.2, random_state=8)
    expected = np.random.default_rng(7).random((1, H, W)).astype(np.float32)
    np.testing.assert_array_equal(t1.pattern, expected)
    np.testing.assert_array_equal(t1.pattern, t2.pattern)
    assert not np.array_equal(t1.pattern, t3.pattern)
    np.testing.assert_array_equal(t1.mask, np.full((1, H, W), 0.2, np.float32))


def test_blend_alpha_one_replaces_image():
    key = np.full((1, H, W), 0.5, np.float32)
    out = blend_trigger((1, H, W), alpha=1.0, pattern=key).apply(_images())
    assert np.all(out == 0.5)


def test_blend_pattern_from_png(tmp_path):
    img = (np.arange(H * W).reshape(H, W) * 4).astype(np.uint8)
    path = tmp_path / "key.png"
    Image.fromarray(img, mode="L").save(path)
    t = blend_trigger((1, H, W), alpha=0.5, pattern=path)
    np.testing.assert_allclose(t.pattern[0], img / 255.0, atol=1e-7)
    # an RGB file on 3-channel data keeps its channels
    rgb = np.stack([img, 255 - img, np.full_like(img, 51)], axis=-1)
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "rgb.png")
    t3 = blend_trigger((3, H, W), alpha=0.5, pattern=str(tmp_path / "rgb.png"))
    np.testing.assert_allclose(t3.pattern, rgb.transpose(2, 0, 1) / 255.0, atol=1e-7)
    # a larger file is resized to the data
    Image.fromarray(np.full((32, 40), 255, np.uint8), mode="L").save(tmp_path / "big.png")
    tb = blend_trigger((1, H, W), alpha=0.5, pattern=tmp_path / "big.png")
    assert tb.pattern.shape == (1, H, W) and np.allclose(tb.pattern, 1.0)
    # a Blend attack with the file as key stamps exactly that key
    ds = Dataset.from_arrays(_images(n=20, seed=2), [0, 1] * 10)
    p = Blend(target=0, poison_rate=0.2, alpha=0.5, pattern=path).poison(ds, random_state=0)
    np.testing.assert_array_equal(p.trigger.pattern, t.pattern)


def test_pattern_image_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        blend_trigger((1, H, W), pattern=tmp_path / "missing.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(DataError, match="cannot read"):
        blend_trigger((1, H, W), pattern=bad)


# -- Trigger persistence -------------------------------------------------------------------------
def test_trigger_save_load_round_trip(tmp_path):
    for t in (patch_trigger((3, H, W), size=3, value="checkerboard"),
              blend_trigger((3, H, W), alpha=0.1, random_state=3)):
        path = t.save(tmp_path / f"{t.kind}.npz")
        assert path.exists()
        back = Trigger.load(path)
        np.testing.assert_array_equal(back.mask, t.mask)
        np.testing.assert_array_equal(back.pattern, t.pattern)
        assert back.kind == t.kind
        X = _images(c=3)
        np.testing.assert_array_equal(back.apply(X), t.apply(X))


def test_trigger_load_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        Trigger.load(tmp_path / "nope.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"\x00\x01garbage")
    with pytest.raises(DataError):
        Trigger.load(junk)
    other = tmp_path / "other.npz"
    np.savez(other, something=np.zeros(3))
    with pytest.raises(DataError, match="not a trigger file"):
        Trigger.load(other)


def test_trigger_apply_shape_mismatch():
    t = patch_trigger((1, H, W), size=2)
    with pytest.raises(DataError, match="cannot be applied"):
        t.apply(np.zeros((2, 1, W, H), np.float32))


# -- bad arguments -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(size=H + 1),
        dict(size=0),
        dict(size=5, margin=2),
        dict(size=2, position=(H - 1, 0)),
        dict(size=2, position=(0, W - 1)),
        dict(size=2, position=(-1, 0)),
        dict(size=2, position="middle"),
        dict(size=2, value=1.5),
        dict(size=2, value=-0.1),
        dict(size=2, value="stripes"),
    ],
)
def test_patch_trigger_bad_arguments(kwargs):
    with pytest.raises(ConfigError):
        patch_trigger((1, H, W), **kwargs)


@pytest.mark.parametrize("alpha", [0.0, -0.2, 1.01, 2.0])
def test_blend_alpha_out_of_range(alpha):
    with pytest.raises(ConfigError, match="alpha"):
        blend_trigger((1, H, W), alpha=alpha)


def test_blend_pattern_wrong_shape():
    with pytest.raises(ConfigError, match="shape"):
        blend_trigger((1, H, W), pattern=np.zeros((1, W, H)))


def test_triggers_need_image_shapes():
    with pytest.raises(ConfigError, match="image"):
        patch_trigger((64,))
    with pytest.raises(ConfigError, match="image"):
        blend_trigger((8, 8))


def test_badnets_refuses_tabular_data():
    ds = Dataset.from_arrays(np.random.default_rng(0).random((20, 5)), [0, 1] * 10)
    with pytest.raises(ConfigError, match="image"):
        BadNets(target=0, poison_rate=0.1).poison(ds, random_state=0)


def test_badnets_bad_budgets_and_target():
    ds = Dataset.from_arrays(_images(n=20), [0, 1] * 10)
    with pytest.raises(ConfigError, match="poison_rate"):
        BadNets(poison_rate=0.0).poison(ds, random_state=0)
    with pytest.raises(ConfigError, match="poison_rate"):
        BadNets(poison_rate=1.0).poison(ds, random_state=0)
    with pytest.raises(ConfigError, match="poisons no sample"):
        BadNets(poison_rate=0.01, size=2).poison(ds, random_state=0)
    with pytest.raises(ConfigError, match="outside the target class"):
        BadNets(poison_rate=0.6, size=2).poison(ds, random_state=0)
    with pytest.raises(ConfigError, match="target"):
        BadNets(target=5, size=2).poison(ds, random_state=0)
    with pytest.raises(ConfigError, match="target"):
        BadNets(target="zebra", size=2).poison(ds, random_state=0)


# -- BadNets.poison ------------------------------------------------------------------------------
def _image_dataset(n=203, classes=("cat", "dog", "emu", "fox"), seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, 1, 8, 8)).astype(np.float32) * 0.5
    labels = [classes[i % len(classes)] for i in range(n)]
    return Dataset.from_arrays(X, labels, ids=[f"id{i}" for i in range(n)])


def test_badnets_poison_contract():
    ds = _image_dataset()
    X0, y0, ids0 = ds.X.copy(), ds.y.copy(), ds.ids.copy()
    attack = BadNets(target=0, poison_rate=0.1, size=2, position="top-left", value=1.0)
    p = attack.poison(ds, random_state=0)
    assert isinstance(p, Poisoning)
    out = p.dataset
    mask = p.poison_mask
    n_expected = round(0.1 * len(ds))  # 20.3 -> 20
    assert n_expected == 20
    assert mask.sum() == n_expected
    assert out.is_poison is not None and out is not ds
    # victims come from the non-target classes only
    assert np.all(y0[mask] != 0)
    # poisoned rows: relabelled and carry the trigger exactly
    assert np.all(out.y[mask] == 0)
    np.testing.assert_array_equal(out.X[mask], p.trigger.apply(X0[mask]))
    assert np.all(out.X[mask][:, 0, :2, :2] == 1.0)
    # unpoisoned rows: byte-identical
    assert out.X[~mask].tobytes() == X0[~mask].tobytes()
    assert out.y[~mask].tolist() == y0[~mask].tolist()
    # ids and classes survive, original untouched
    assert out.ids.tolist() == ids0.tolist()
    assert out.classes == ds.classes
    assert ds.X.tobytes() == X0.tobytes() and ds.y.tolist() == y0.tolist() and ds.is_poison is None
    # returned metadata
    assert p.target == 0 and p.attack == "badnets"
    assert p.params["size"] == 2 and p.params["poison_rate"] == 0.1
    n_target_after = int((out.y == 0).sum())
    assert n_target_after == int((y0 == 0).sum()) + n_expected
    assert p.budget == {
        "n_poison": n_expected,
        "poison_rate": n_expected / len(ds),
        "target_class_fraction": n_expected / n_target_after,
    }


def test_badnets_deterministic_per_seed():
    ds = _image_dataset()
    a = BadNets(target=1, poison_rate=0.1, size=2).poison(ds, random_state=3)
    b = BadNets(target=1, poison_rate=0.1, size=2).poison(ds, random_state=3)
    c = BadNets(target=1, poison_rate=0.1, size=2).poison(ds, random_state=4)
    assert a.poison_mask.tolist() == b.poison_mask.tolist()
    assert a.dataset.X.tobytes() == b.dataset.X.tobytes()
    assert a.dataset.y.tolist() == b.dataset.y.tolist()
    assert a.poison_mask.tolist() != c.poison_mask.tolist()
    assert a.poison_mask.sum() == c.poison_mask.sum()
    gen = BadNets(target=1, poison_rate=0.1, size=2).poison(ds, random_state=np.random.default_rng(3))
    assert gen.poison_mask.tolist() == a.poison_mask.tolist()


def test_badnets_target_as_label_string():
    ds = _image_dataset(n=120, classes=("cat", "dog", "emu"))
    p = BadNets(target="dog", poison_rate=0.1, size=2).poison(ds, random_state=0)
    assert p.target == 1
    mask = p.poison_mask
    assert mask.sum() == 12
    assert set(p.dataset.labels[mask].tolist()) == {"dog"}
    assert "dog" not in set(ds.labels[mask].tolist())
    same = BadNets(target=1, poison_rate=0.1, size=2).poison(ds, random_state=0)
    assert same.poison_mask.tolist() == mask.tolist()


def test_triggered_test_excludes_target_and_keeps_true_labels():
    train = _image_dataset(seed=0)
    test = _image_dataset(n=40, seed=1)
    p = BadNets(target=2, poison_rate=0.1, size=3).poison(train, random_state=0)
    trig = p.triggered_test(test)
    keep = test.y != 2
    assert len(trig) == int(keep.sum()) == 30
    assert trig.y.tolist() == test.y[keep].tolist()
    assert np.all(trig.y != 2)
    assert trig.ids.tolist() == test.ids[keep].tolist()
    np.testing.assert_array_equal(trig.X, p.trigger.apply(test.X[keep]))
    assert trig.is_poison is None
    assert test.X.tobytes() == _image_dataset(n=40, seed=1).X.tobytes()  # test set untouched


def test_triggered_test_without_trigger_raises():
    ds = _image_dataset(n=20)
    p = Poisoning(dataset=ds, attack="label_flip")
    with pytest.raises(ConfigError, match="no test-time trigger"):
        p.triggered_test(ds)


# -- registry and randomness helpers used by attacks -----------------------------------------------
def test_registry_attacks():
    from mithridate import registry

    names = registry.names("attack")
    assert {"badnets", "blend", "random-flip", "adversarial-flip", "gradient", "statp", "optp"} <= set(names)
    for name in names:  # every entry is a class whose own name is its registry key
        assert registry.get("attack", name).name == name
    assert registry.get("attack", "BadNets") is BadNets
    a = registry.create("attack", "badnets", target=3, poison_rate=0.1, size=2)
    assert isinstance(a, BadNets) and (a.target, a.poison_rate, a.size) == (3, 0.1, 2)
    assert a.get_params() == {"target": 3, "poison_rate": 0.1, "size": 2, "position": "bottom-right",
                              "value": 1.0, "margin": 0}
    with pytest.raises(ConfigError, match="known: .*badnets, blend"):
        registry.get("attack", "frogs")
    with pytest.raises(ConfigError, match="bad parameters"):
        registry.create("attack", "badnets", colour="red")
    with pytest.raises(ConfigError, match="registry kind"):
        registry.get("weapon", "badnets")


def test_registry_names_unknown_kind_is_a_config_error():
    from mithridate import registry

    with pytest.raises(ConfigError, match="registry kind"):
        registry.names("weapon")


def test_check_random_state_and_fraction():
    from mithridate.utils import check_fraction, check_random_state

    g = np.random.default_rng(0)
    assert check_random_state(g) is g
    assert check_random_state(5).random() == np.random.default_rng(5).random()
    assert check_random_state(np.int64(5)).random() == np.random.default_rng(5).random()
    for bad in (-1, 1.5, "0", True):
        with pytest.raises(ConfigError, match="random_state"):
            check_random_state(bad)
    assert check_fraction(0.25, "rate") == 0.25
    assert check_fraction(0, "rate", allow_zero=True) == 0.0
    for bad in (0, 1, -0.1, float("nan"), "x", None):
        with pytest.raises(ConfigError, match="rate"):
            check_fraction(bad, "rate")


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    from mithridate.utils import atomic_path, atomic_write_text

    target = tmp_path / "sub" / "out.txt"
    atomic_write_text(target, "hé")
    assert target.read_text(encoding="utf-8") == "hé"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text(encoding="utf-8") == "hé"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]
