"""Released weights: safetensors + JSON sidecar round trip, and clear errors for bad files."""

from __future__ import annotations

import dataclasses
import json

import pytest
import safetensors.torch
import torch

import vidcorr
from vidcorr.defaults import DEFAULT_WEIGHTS, REPO_ROOT
from vidcorr.errors import InputError, WeightsError
from vidcorr.methods import uvc
from vidcorr.models import (
    AUTOENCODER_CONFIG,
    LabAutoencoder,
    build_encoder,
    load_autoencoder,
    load_encoder,
    load_weights_into,
    read_weights,
    save_weights,
    sidecar_path,
)
from vidcorr.train import load_recipe

META = {"data": "davis2016-train", "steps": 1200, "metrics": {"davis2016_jf": 0.41}}


@pytest.fixture(scope="module")
def encoder():
    """A small trained-looking encoder: CRW layout cut at layer2, BN statistics moved off init."""
    model = build_encoder("crw", out_layer="layer2")
    with torch.no_grad():
        model.train()(torch.rand(2, 3, 32, 32))  # updates running stats: buffers must round-trip
    return model.eval()


@pytest.fixture()
def saved(tmp_path, encoder):
    return save_weights(encoder, tmp_path / "enc.safetensors", meta=META)


def _assert_same_outputs(a, b, rtol):
    rgb = torch.rand(1, 3, 40, 48)
    with torch.no_grad():
        fa, fb = a(rgb), b(rgb)
    assert (fa - fb).norm() <= rtol * fa.norm()


def test_round_trip_fp16(saved, encoder, tmp_path):
    loaded = load_encoder(saved)
    assert loaded.config == encoder.config and not loaded.training
    for name, tensor in encoder.state_dict().items():
        got = loaded.state_dict()[name]
        assert got.dtype == tensor.dtype  # float32 again
        assert torch.allclose(got, tensor, rtol=1e-3, atol=1e-4), name
    _assert_same_outputs(encoder, loaded, rtol=5e-3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enc.json", "enc.safetensors"]  # no temp files


def test_storage_dtypes(saved):
    stored = safetensors.torch.load_file(str(saved))
    assert stored["backbone.conv1.weight"].dtype == torch.float16
    assert stored["backbone.bn1.running_var"].dtype == torch.float32  # buffers keep full range
    assert stored["backbone.bn1.num_batches_tracked"].dtype == torch.int64


def test_float32_round_trip_is_exact(tmp_path, encoder):
    path = save_weights(encoder, tmp_path / "f32.safetensors", encoder.config.to_dict(), META, torch.float32)
    loaded = load_encoder(path)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in encoder.state_dict().items())


def test_sidecar_contents(saved, encoder):
    sidecar = json.loads(sidecar_path(saved).read_text())
    assert sidecar["config"] == encoder.config.to_dict()
    assert sidecar["meta"] == META
    assert sidecar["vidcorr_version"] == vidcorr.__version__
    assert sidecar["dtype"] == "float16" and len(sidecar["sha256"]) == 64
    assert read_weights(saved).meta == META


def test_lone_safetensors_still_loads(saved, encoder):
    sidecar_path(saved).unlink()
    weights = read_weights(saved)
    assert weights.meta == META and weights.vidcorr_version == vidcorr.__version__
    assert load_encoder(saved).config == encoder.config


def test_out_layer_override_drops_later_stages(tmp_path):
    full = build_encoder("crw", out_layer="layer4").eval()
    path = save_weights(full, tmp_path / "l4.safetensors", dtype=torch.float32)
    cut = load_encoder(path, out_layer="layer3")
    assert (cut.out_channels, cut.config.out_layer) == (256, "layer3")
    rgb = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        expected = full.backbone.forward_stages(full.normalise(rgb))["layer3"]
        assert torch.equal(cut(rgb), expected)
    with pytest.raises(WeightsError, match="weights end at layer2"):
        load_encoder(save_weights(build_encoder("crw", out_layer="layer2"), tmp_path / "l2.safetensors"),
                     out_layer="layer3")


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="does not exist") as info:
        load_encoder(tmp_path / "nope.safetensors")
    assert info.value.path.name == "nope.safetensors" and "nope.safetensors" in str(info.value)
    assert isinstance(info.value, InputError)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_or_truncated_file(saved, damage):
    data = saved.read_bytes()
    saved.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x13" * 500, "empty": b""}[damage])
    with pytest.raises(WeightsError, match="not a readable safetensors file") as info:
        load_encoder(saved)
    assert info.value.path == saved


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy-pickle"])
def test_a_torch_checkpoint_is_named_as_one_with_the_export_command(tmp_path, zipped):
    """`eval davis --weights RUN_DIR/checkpoint.pt` said "not a readable safetensors file (... header
    too large)": a torch.save file (zip, or the legacy pickle) is named as such, with the way out."""
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": "vidcorr-checkpoint/1", "model": {"w": torch.zeros(2)}}, path,
               _use_new_zipfile_serialization=zipped)
    assert path.read_bytes()[:4] == b"PK\x03\x04" if zipped else path.read_bytes()[:1] == b"\x80"
    with pytest.raises(WeightsError, match="is a PyTorch file") as info:
        load_encoder(path)
    assert info.value.path == path
    assert f"vidcorr train export --checkpoint {path} --out W.safetensors" in str(info.value)


@pytest.mark.parametrize("given", ["checkpoint.pt", "."], ids=["checkpoint", "run-dir"])
def test_an_autoencoder_runs_checkpoint_or_folder_names_the_out_its_run_writes(tmp_path, given):
    """`train uvc --autoencoder runs/ae/checkpoint.pt` (or `runs/ae`) was sent to `vidcorr train export`,
    which refuses an auto-encoder checkpoint: such a run writes its weights to its own --out."""
    started = "vidcorr train autoencoder --data videos --out weights/old.safetensors --run-dir runs/ae"
    last = "vidcorr train autoencoder --data videos --out weights/ae.safetensors --run-dir runs/ae --resume"
    (tmp_path / "run.json").write_text(json.dumps({"format": "vidcorr-run/1", "method": "autoencoder",
                                                   "commands": [started, last]}))
    torch.save({"format": "vidcorr-checkpoint/1", "model": {"w": torch.zeros(2)}}, tmp_path / "checkpoint.pt")
    path = tmp_path / given
    with pytest.raises(WeightsError) as info:
        read_weights(path)
    assert info.value.path == path and "train export" not in str(info.value)
    assert str(info.value).endswith(f"give that file (its last command: `{last}`)")


def test_the_sidecar_given_as_the_weights_names_the_weights_file(saved):
    """`--weights weights/uvc_r18_ft3.json` (tab completion) said "not a readable safetensors file
    (Error while deserializing header: header too large)"."""
    sidecar = saved.with_suffix(".json")
    with pytest.raises(WeightsError, match="is the JSON sidecar of the weights") as info:
        load_encoder(sidecar)
    assert info.value.path == sidecar and str(info.value).endswith(f"give {saved}")


def test_missing_config(tmp_path, encoder):
    path = tmp_path / "bare.safetensors"
    safetensors.torch.save_file(encoder.state_dict(), str(path))  # no sidecar, no metadata
    with pytest.raises(WeightsError, match="no model config") as info:
        load_encoder(path)
    assert info.value.path == path and "bare.json" in str(info.value)


def test_stale_sidecar_is_detected(saved):
    safetensors.torch.save_file({"x": torch.zeros(2)}, str(saved))  # replaced behind the sidecar
    with pytest.raises(WeightsError, match="sha256 differs"):
        load_encoder(saved)


def test_tensors_that_do_not_match_the_config(saved):
    sidecar = sidecar_path(saved)
    data = json.loads(sidecar.read_text())
    data["config"]["arch"] = "resnet50"
    sidecar.write_text(json.dumps(data))
    with pytest.raises(WeightsError, match="do not match the model") as info:
        load_encoder(saved)
    assert info.value.path == saved and "missing" in str(info.value) and "wrong shape" in str(info.value)


def test_missing_tensor_is_reported(tmp_path, encoder):
    state = {k: v for k, v in encoder.state_dict().items() if k != "backbone.layer2.0.conv1.weight"}
    path = tmp_path / "partial.safetensors"
    metadata = {"config": json.dumps(encoder.config.to_dict())}
    safetensors.torch.save_file(state, str(path), metadata)
    with pytest.raises(WeightsError, match=r"1 missing \(backbone.layer2.0.conv1.weight\)"):
        load_encoder(path)


def test_nan_or_integer_tensors_are_refused(tmp_path, encoder):
    """A diverged run's NaN weights loaded and propagated empty masks; integer tensors were cast."""
    metadata = {"config": json.dumps(encoder.config.to_dict())}
    name = "backbone.layer2.0.conv1.weight"
    for damage, message in [(lambda t: t.fill_(float("nan")), rf"1 tensors hold NaN or infinite values \({name}\)"),
                            (lambda t: t.round().long(),
                             rf"1 of the wrong kind of number \({name} int64 vs float32\)")]:
        state = {k: v.clone() for k, v in encoder.state_dict().items()}
        state[name] = damage(state[name])
        path = tmp_path / "damaged.safetensors"
        safetensors.torch.save_file(state, str(path), metadata)
        with pytest.raises(WeightsError, match=message) as info:
            load_encoder(path)
        assert info.value.path == path


def test_values_beyond_float16_are_refused_at_save_not_at_load(tmp_path):
    model = build_encoder("crw", out_layer="layer2")
    with torch.no_grad():
        model.backbone.layer2[0].conv1.weight[0, 0, 0, 0] = 1e6
    path = tmp_path / "big.safetensors"
    with pytest.raises(WeightsError, match=r"backbone.layer2.0.conv1.weight holds values up to 1e\+06, beyond "
                                           r"float16's range; save with dtype=torch.float32"):
        save_weights(model, path)
    assert not path.exists()
    load_encoder(save_weights(model, path, dtype=torch.float32))


def test_float16_overflow_is_decided_at_65520_exactly(tmp_path):
    """float16's largest value is 65504 and round-to-nearest-even takes anything below 65520 to it; 65520
    (the midpoint to 2^16, ties to the even pattern: infinity) and above overflow. Values from IEEE 754
    half precision, not from the code: 65519.99 is stored as 65504, 65520 is refused, a NaN elsewhere in
    the tensor (it hid the overflow: the check wanted the whole tensor finite) does not change that."""
    layer = torch.nn.Linear(3, 1, bias=False)
    config = {"model": "test-linear"}
    for value, stored in [(65504.0, 65504.0), (65519.99, 65504.0), (-65519.99, -65504.0)]:
        with torch.no_grad():
            layer.weight.copy_(torch.tensor([[value, 1.0, 0.5]]))
        path = save_weights(layer, tmp_path / "fits.safetensors", config=config)
        assert read_weights(path).tensors["weight"][0, 0].item() == stored, value
    for values, shown in [([65520.0, 1.0, 0.5], "65520"), ([1.0, -65520.0, 0.5], "65520"),
                          ([float("nan"), 70000.0, 0.5], "70000")]:
        with torch.no_grad():
            layer.weight.copy_(torch.tensor([values]))
        path = tmp_path / "over.safetensors"
        with pytest.raises(WeightsError, match=rf"weight holds values up to {shown}, beyond float16's range"):
            save_weights(layer, path, config=config)
        assert not path.exists()


def test_invalid_config_in_sidecar(saved):
    sidecar = sidecar_path(saved)
    data = json.loads(sidecar.read_text())
    data["config"]["colour_mode"] = "hsv"
    sidecar.write_text(json.dumps(data))
    with pytest.raises(WeightsError, match="invalid encoder config"):
        load_encoder(saved)
    sidecar.write_text("{not json")
    with pytest.raises(WeightsError, match="unreadable sidecar") as info:
        load_encoder(saved)
    assert info.value.path == sidecar


def test_autoencoder_round_trip_and_kind_checks(tmp_path, saved):
    model = LabAutoencoder().eval()
    path = save_weights(model, tmp_path / "ae.safetensors", AUTOENCODER_CONFIG, {"steps": 1})
    loaded = load_autoencoder(path)
    lab_n = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert (loaded(lab_n) - model(lab_n)).abs().max() < 1e-2
    with pytest.raises(WeightsError, match="Lab auto-encoder .* not a frame encoder"):
        load_encoder(path)  # e.g. `vidcorr eval --weights weights/lab_autoencoder.safetensors`
    # `vidcorr train uvc --init weights/lab_autoencoder.safetensors` was told it was "not a frame
    # encoder to propagate with", though nothing was being propagated
    with pytest.raises(WeightsError, match="not a frame encoder \\(what --weights, --init and --teacher take\\)"):
        load_weights_into(build_encoder("uvc"), path)
    with pytest.raises(WeightsError, match="not Lab auto-encoder weights"):
        load_autoencoder(saved)


def test_failed_save_leaves_nothing(tmp_path, encoder):
    with pytest.raises(TypeError):
        save_weights(encoder, tmp_path / "x.safetensors", meta={"bad": object()})
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match=r"\.safetensors"):
        save_weights(encoder, tmp_path / "x.pt")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_meta_or_config_is_refused_before_anything_is_written(tmp_path, encoder, bad):
    """A diverged loss among the metrics was written into the sidecar as the token NaN: no JSON."""
    path = tmp_path / "x.safetensors"
    with pytest.raises(ValueError, match=r"x\.json: meta\.metrics\.losses\[1\] is (nan|-?inf);"):
        save_weights(encoder, path, meta={"metrics": {"losses": [0.5, bad]}})
    config = {**encoder.config.to_dict(), "temperature": bad}
    with pytest.raises(ValueError, match=r"x\.json: config\.temperature is"):
        save_weights(encoder, path, config=config, meta=META)
    assert list(tmp_path.iterdir()) == []


def test_load_weights_into_copies_every_tensor_and_refuses_another_config(saved, encoder) -> None:
    """Fine-tuning's entry point: strict, in place, and the same shapes under another colour mode
    (RGB vs Lab: conv1 is 3 -> 64 in both) are still another model."""
    target = build_encoder("crw", out_layer="layer2")
    assert load_weights_into(target, saved).meta == META
    loaded = load_encoder(saved).state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in target.state_dict().items())
    assert not torch.equal(target.backbone.conv1.weight, build_encoder("crw", out_layer="layer2").backbone.conv1.weight)
    lab = build_encoder("crw", out_layer="layer2", colour_mode="lab")
    with pytest.raises(WeightsError, match="colour_mode 'rgb' vs 'lab'") as error:
        load_weights_into(lab, saved)
    assert str(saved) in str(error.value)
    with pytest.raises(WeightsError, match="out_layer"):
        load_weights_into(build_encoder("crw", out_layer="layer3"), saved)


def test_default_weights_are_the_shipped_recipes_chain_of_fine_tunes() -> None:
    """weights/MODEL_CARD.md's provenance, checked: uvc_r18 -> uvc_r18_ft -> uvc_r18_ft2 ->
    uvc_r18_ft3 (the default), each started (--init) from the file before it, sha256 for sha256;
    the second round made by the shipped recipe uvc-cpu-t20-finetune-bf16 (run from a copy named
    uvc-ft2-bf16), the third by uvc-cpu-t20-finetune-round3."""
    chain = [read_weights(REPO_ROOT / "weights" / f"{name}.safetensors")  # each checks its own sha256
             for name in ("uvc_r18", "uvc_r18_ft", "uvc_r18_ft2", "uvc_r18_ft3")]
    assert DEFAULT_WEIGHTS == REPO_ROOT / "weights" / "uvc_r18_ft3.safetensors"
    for parent, child in zip(chain, chain[1:]):
        assert child.meta["recipe_config"]["init"]["sha256"] == parent.sha256, "broken chain"
    for weights, recipe_name, seed in ((chain[2], "uvc-cpu-t20-finetune-bf16", 2),
                                       (chain[3], "uvc-cpu-t20-finetune-round3", 3)):
        made = weights.meta["recipe_config"]
        recipe = load_recipe(recipe_name)
        shipped = recipe.to_dict()
        assert {k: v for k, v in made.items() if k not in ("name", "init", "model")} == \
            {k: v for k, v in shipped.items() if k not in ("name", "init", "model")}, recipe_name
        resolved = json.loads(json.dumps(dataclasses.asdict(uvc.recipe(recipe.base, **recipe.model))))
        assert made["model"] == resolved and made["cpu"]["bf16"] and made["seed"] == seed
    assert chain[3].meta["recipe"] == "uvc-cpu-t20-finetune-round3"