"""Sensor effects for training (mtshare_ros/training/sensor.py): shapes and ranges kept, the same images for the
same (seed, step) and any split over processes, each effect doing what it says, and the config switch."""

import pytest
import torch

from mtshare_ros.training.config import ConfigError, load_config
from mtshare_ros.training.sensor import EFFECTS, SensorEffects, apply_sensor_effects


def images(b=4, h=32, w=48):
    g = torch.Generator().manual_seed(0)
    return torch.rand(b, 3, h, w, generator=g)


ALL = SensorEffects(enabled=True, **{name: 1.0 for name in EFFECTS})


def only(name: str, **kw) -> SensorEffects:
    return SensorEffects(enabled=True, **{e: float(e == name) for e in EFFECTS}, **kw)


def test_shape_range_and_determinism():
    x = images()
    a = apply_sensor_effects(x, ALL, seed=1, step=7)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert a.min() >= 0.0 and a.max() <= 1.0
    assert torch.equal(a, apply_sensor_effects(x, ALL, seed=1, step=7))
    assert not torch.equal(a, apply_sensor_effects(x, ALL, seed=1, step=8))
    assert not torch.equal(a, x)


def test_independent_of_the_number_of_processes():
    x = images(b=4)
    whole = apply_sensor_effects(x, ALL, seed=3, step=2)
    # DistributedSampler interleaves: rank r holds global rows r, r + world, ...
    r0 = apply_sensor_effects(x[0::2], ALL, seed=3, step=2, rank=0, world_size=2)
    r1 = apply_sensor_effects(x[1::2], ALL, seed=3, step=2, rank=1, world_size=2)
    assert torch.allclose(whole[0::2], r0) and torch.allclose(whole[1::2], r1)


def test_off_is_identity():
    x = images()
    assert apply_sensor_effects(x, SensorEffects(), seed=0, step=0) is x
    assert torch.equal(apply_sensor_effects(x, SensorEffects(enabled=True, **{e: 0.0 for e in EFFECTS}), 0, 0), x)


def test_each_effect_changes_the_image_as_described():
    flat = torch.full((2, 3, 32, 48), 0.5)
    vig = apply_sensor_effects(flat, only("vignetting"), 0, 0)
    assert (vig[:, :, 0, 0] <= vig[:, :, 16, 24] + 1e-6).all()  # corners no brighter than the centre
    blur = apply_sensor_effects(images(), only("defocus"), 0, 0)
    assert blur.diff(dim=-1).abs().mean() < images().diff(dim=-1).abs().mean()  # smoother
    noisy = apply_sensor_effects(flat, only("noise", noise_max=0.05), 0, 1)
    assert 0 < (noisy - flat).std() < 0.06
    wb = apply_sensor_effects(flat, only("white_balance", wb_range=0.2), 0, 0)
    assert torch.allclose(wb[:, 1], flat[:, 1])  # green is the reference channel
    jpg = apply_sensor_effects(images(), only("jpeg"), 0, 0)
    assert (jpg - images()).abs().mean() > 0.01  # random noise does not survive JPEG


def test_config_switch_and_bad_settings():
    cfg = load_config(None, ["sensor.enabled=true", "sensor.jpeg=0.2"])
    fx = SensorEffects.from_config(cfg["sensor"])
    assert fx.enabled and fx.jpeg == 0.2 and not SensorEffects.from_config(load_config(None)["sensor"]).enabled
    with pytest.raises(ConfigError, match="sensor"):
        load_config(None, ["sensor.noise=2"])
    with pytest.raises(ConfigError, match="sensor"):
        load_config(None, ["sensor.sharpen=1"])
