"""The CDAN network: official layout, shapes, ranges, fast == reference, gradients, checkpoints."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import cdan
from cdan.config import get_config
from cdan.errors import CdanError
from cdan.models import build_model
from cdan.models.blocks import attention_fast, attention_reference, sea_extend_fast, sea_extend_reference
from cdan.models.checkpoint import convert_official, read_metadata, save_model


def _paper_model():
    torch.manual_seed(0)
    return build_model("paper")


@pytest.fixture(scope="module")
def paper():
    return _paper_model()


def test_paper_state_dict_matches_official_reference_list(reference_dir, paper):
    rows = (reference_dir / "official_cdan_state_dict.tsv").read_text().strip().splitlines()[1:]
    expected = {}
    for row in rows:
        name, shape, dtype = row.split("\t")
        expected[name] = (tuple(int(s) for s in shape.split("x")), dtype)
    assert len(expected) == 390
    ours = {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in paper.state_dict().items()}
    assert ours == expected


def test_paper_parameter_counts(paper):
    g = sum(p.numel() for p in paper.generator_parameters())
    d = sum(p.numel() for p in paper.feature_dis.parameters())
    assert 100e6 < g < 110e6  # DESIGN: G about 105 M
    assert 40e6 < d < 50e6  # each D about 45 M


@pytest.mark.parametrize("preset", ["tiny", "small", "paper"])
def test_forward_shapes_ranges_and_dual_output(preset, paper):
    model = paper if preset == "paper" else build_model(preset)
    r = model.config.resolution
    x = torch.rand(2 if preset != "paper" else 1, 3, r, r, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(x)
    n = x.shape[0]
    assert out.xrec.shape == (n, 3, r, r) and out.color_map.shape == (n, 3, r, r)
    assert out.mask_map.shape == (n, 1, r, r)
    assert out.mask_input.shape == out.mask_color.shape == (n, 3, r, r)
    m, c = out.mask_map, out.color_map
    assert m.min() >= 0 and m.max() <= 1
    assert c.min() >= -1 and c.max() <= 1
    assert torch.equal(out.mask_input, m * x)
    assert torch.equal(out.mask_color, (1 - m) * c)
    assert torch.equal(out.xrec, m * x + (1 - m) * c)
    with torch.no_grad():
        assert model.feature_dis(x).shape[:2] == (n, 1)
        assert model.AU_dis(x).shape == (n, len(model.config.aus))


def test_wrong_input_shape_is_rejected():
    model = build_model("tiny")
    with pytest.raises(AssertionError, match="expected"):
        model(torch.rand(1, 3, 32, 32))


@pytest.mark.parametrize("shape,b", [((2, 5, 14, 14), 7), ((3, 4, 7, 21), 7), ((1, 2, 12, 12), 4)])
def test_sea_fast_matches_reference_with_gradients(shape, b):
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    y1, y2 = sea_extend_fast(x1, b), sea_extend_reference(x2, b)
    assert torch.allclose(y1, y2, atol=1e-5)
    w = torch.randn(y1.shape, generator=g, dtype=torch.float64)
    (y1 * w).sum().backward()
    (y2 * w).sum().backward()
    assert torch.allclose(x1.grad, x2.grad, atol=1e-5)


def test_sea_block_values():
    x = torch.arange(2 * 14 * 14, dtype=torch.float32).reshape(1, 2, 14, 14)
    y = sea_extend_fast(x, 7)
    mean_map = x.mean(1)[0]
    assert y[0, 0, 0, 0] == mean_map[:7, :7].mean()
    assert y[0, 1, 13, 13] == x.amax(1)[0, 7:, 7:].max()
    assert torch.all(y[0, 0, :7, :7] == y[0, 0, 0, 0])


@pytest.mark.parametrize("shape", [(2, 8, 7, 7), (1, 16, 14, 14), (3, 4, 5, 3)])
def test_attention_fast_matches_reference_with_gradients(shape):
    g = torch.Generator().manual_seed(0)
    qkv1 = [torch.randn(*shape, generator=g, requires_grad=True) for _ in range(3)]
    qkv2 = [t.detach().clone().requires_grad_(True) for t in qkv1]
    y1, y2 = attention_fast(*qkv1), attention_reference(*qkv2)
    assert torch.allclose(y1, y2, atol=1e-5)
    w = torch.randn(y1.shape, generator=g)
    (y1 * w).sum().backward()
    (y2 * w).sum().backward()
    for a, b in zip(qkv1, qkv2):
        assert torch.allclose(a.grad, b.grad, atol=1e-5)


def test_whole_model_fast_matches_reference():
    torch.manual_seed(0)
    fast = build_model("tiny")
    ref = build_model("tiny", fast=False)
    ref.load_state_dict(fast.state_dict())
    x = torch.rand(2, 3, 56, 56)
    with torch.no_grad():
        a, b = fast(x), ref(x)
    for t1, t2 in zip(a, b):
        assert torch.allclose(t1, t2, atol=1e-5)


def test_gradients_reach_every_trainable_parameter():
    torch.manual_seed(0)
    model = build_model("tiny")
    x = torch.rand(2, 3, 56, 56)
    out = model(x)
    g_loss = (
        sum(t.mean() for t in out) + model.feature_dis(out.xrec).mean() + model.AU_dis(out.mask_input).mean()
    )
    d_loss = model.feature_dis(x).mean() + model.AU_dis(x).mean()
    (g_loss + d_loss).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert no_grad == []


def test_unused_official_parameters_exist_only_with_extras():
    names = set(build_model("tiny", official_extras=True).state_dict())
    assert "decoder2.color_out.0.weight" in names and "decoder1.l1_up.conv1.weight" in names
    names = set(build_model("tiny").state_dict())
    assert not any(n.endswith("conv1.weight") and "_up" in n for n in names)


def test_small_preset_is_at_most_a_tenth_of_paper_flops():
    def gflops(preset):
        model = build_model(preset).eval()
        r = model.config.resolution
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.rand(1, 3, r, r))
        return counter.get_total_flops() / 1e9

    paper, small = gflops("paper"), gflops("small")
    assert 120 < paper < 160  # DESIGN: about 140 GFLOP per 112 px image
    assert small <= paper / 10


def test_our_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_model("tiny", aus=["AU01", "AU12"])
    path = save_model(model, tmp_path / "m.safetensors")
    meta = read_metadata(path)
    assert '"AU01"' in meta["aus"]
    loaded = cdan.load_model(path)
    assert loaded.config.aus == ("AU01", "AU12") and loaded.run_config.preset == "tiny"
    x = torch.rand(1, 3, 56, 56)
    with torch.no_grad():
        assert torch.equal(model.eval()(x).xrec, loaded(x).xrec)


def test_official_checkpoint_converts_and_loads_exactly(tmp_path, paper):
    # A random state dict in the official layout, with the frozen LPIPS entries a real CDAN.pth carries.
    torch.manual_seed(3)
    sd = {
        k: torch.randn_like(v) * 0.02 if v.is_floating_point() else v for k, v in paper.state_dict().items()
    }
    sd["perceptual_loss.net.slice1.0.weight"] = torch.randn(64, 3, 3, 3)
    sd["perceptual_loss.lin0.model.1.weight"] = torch.randn(1, 64, 1, 1)
    src = tmp_path / "CDAN.pth"
    torch.save(sd, src)
    ref = build_model("paper").eval()
    ref.load_state_dict({k: v for k, v in sd.items() if not k.startswith("perceptual_loss.")})
    x = torch.rand(1, 3, 112, 112)
    with torch.no_grad():
        want = ref(x)
        got_pth = cdan.load_model(src)(x)
        dst = convert_official(src, tmp_path / "cdan.safetensors")
        got_st = cdan.load_model(dst)(x)
    for a, b, c in zip(want, got_pth, got_st):
        assert torch.equal(a, b) and torch.equal(a, c)
    del sd


def test_official_mismatch_names_the_keys(tmp_path):
    sd = {"encoder.conv_in.weight": torch.zeros(128, 3, 3, 3), "bogus.weight": torch.zeros(1)}
    sd["decoder2.attn.conv1.weight"] = torch.zeros(1, 2, 3, 3)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(CdanError) as e:
        cdan.load_model(tmp_path / "bad.pth")
    msg = str(e.value)
    assert "missing" in msg and "unexpected: bogus.weight" in msg and "decoder2.attn.conv1.weight" in msg
    assert "\n" not in msg


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/cdan_pwned_marker",))


def test_malicious_pth_is_refused_without_running(tmp_path):
    import os

    marker = "/tmp/cdan_pwned_marker"
    if os.path.exists(marker):
        os.unlink(marker)
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"encoder.conv_in.weight": _Evil()}, f)
    with pytest.raises(CdanError, match="weights-only"):
        cdan.load_model(path)
    assert not os.path.exists(marker)


def test_config_unknown_keys_and_types():
    with pytest.raises(CdanError, match="unknown config key 'model.chh'"):
        get_config("tiny", {"model": {"chh": 3}})
    with pytest.raises(CdanError, match="expected an integer"):
        get_config("tiny", {"model": {"ch": "wide"}})
    with pytest.raises(CdanError, match="unknown preset"):
        get_config("huge")
    cfg = get_config("tiny", {"train": {"lr": "1e-4"}, "model": {"aus": "AU01,AU12"}})
    assert cfg.train.lr == 1e-4 and cfg.model.aus == ("AU01", "AU12")
    with pytest.raises(CdanError, match="divisible"):
        get_config("tiny", {"model": {"resolution": 64}})


def test_inference_layout_matches_default_layout():
    from cdan.models.layout import inference_layout

    torch.manual_seed(0)
    model = build_model("small").eval()
    x = torch.rand(2, 3, 112, 112)
    with torch.no_grad():
        want = model(x)
        got = inference_layout(model)(x)
    assert model.encoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    # ~60 conv layers in float32: a different summation order, not different maths
    for a, b in zip(want, got):
        assert torch.allclose(a, b, atol=1e-4)
