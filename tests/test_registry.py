"""core.registry: every model name resolves, a path loads, an unknown word is refused with the
names; the search spaces and the near-duplicate threshold are defined once, in a light module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core import registry
from core.embedding.encoders import EncoderPair, default_encoders_path
from core.errors import CrossmixError, ModelError
from core.separation.by_example import QSepConfig, QuerySeparator, default_model_path
from core.separation.network import CONVERTED_NAME, CONVERTED_SHA256
from core.separation.separator import Separator

ROOT = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")


# --- separator ---------------------------------------------------------------------------


def test_separator_names_and_the_old_spelling() -> None:
    assert registry.separator_name(None) == registry.separator_name("") == "spleeter-2stems"
    assert registry.separator_name("spleeter") == "spleeter-2stems"  # train's old name
    assert registry.separator_name("tiny") == "tiny"
    tiny = registry.load_separator("tiny", device=CPU)
    assert tiny.model_id == Separator.tiny().model_id and tiny.device == CPU


def test_spleeter_by_name_and_by_the_path_of_its_weights() -> None:
    from core.paths import cache_dir

    by_name = registry.load_separator(device=CPU)
    assert by_name.model_id == CONVERTED_SHA256
    by_path = registry.load_separator(cache_dir() / "models" / CONVERTED_NAME, device=CPU)
    assert by_path.model_id == CONVERTED_SHA256  # the same stems in the cache


def test_separator_file_that_does_not_fit(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    bad = tmp_path / "other.safetensors"
    save_file({"vocals.x": torch.zeros(2)}, str(bad))
    with pytest.raises(ModelError, match="do not fit"):
        registry.load_separator(bad)
    with pytest.raises(ModelError, match="missing.safetensors: separator weights not found"):
        registry.load_separator(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("call", [registry.separator_name, registry.load_separator])
def test_unknown_separator_lists_the_names(call: object) -> None:
    with pytest.raises(CrossmixError) as err:
        call("spleter")  # type: ignore[operator]
    msg = str(err.value)
    assert "'spleter' not found" in msg and "spleeter-2stems, tiny" in msg and ".safetensors" in msg


# --- encoders ----------------------------------------------------------------------------


def test_encoder_names() -> None:
    names = registry.encoder_names()
    assert names[:3] == ["shipped", "resemblyzer", "tiny"]
    assert "cross-sp" in names and set(registry.shipped_encoder_names()) <= set(names)
    for alias in (None, "", "default", "shipped"):
        assert registry.encoders_name(alias) == "shipped"
        assert registry.encoders_weights(alias) == default_encoders_path()
    assert registry.encoders_weights("tiny") is None and registry.encoders_weights("resemblyzer") is None


@pytest.mark.parametrize("name", ["shipped", "cross-sp", "tiny", "resemblyzer"])
def test_each_encoder_name_loads(name: str) -> None:
    pair = registry.load_encoders(name, device=CPU)
    weights = registry.encoders_weights(name)
    if weights is not None:
        assert pair.model_id == EncoderPair.load(weights).model_id
    elif name == "tiny":
        assert pair.model_id == EncoderPair.tiny().model_id
    else:
        assert pair.config.name == "resemblyzer"


def test_encoders_by_path(tmp_path: Path) -> None:
    path = EncoderPair.tiny(seed=2).save(tmp_path / "mine.safetensors")
    assert registry.encoders_name(str(path)) == str(path)
    assert registry.load_encoders(path).model_id == EncoderPair.tiny(seed=2).model_id
    # a missing checkpoint is named as a file, not as an unknown name
    with pytest.raises(ModelError, match="gone.safetensors: encoder weights not found"):
        registry.load_encoders(tmp_path / "gone.safetensors")


def test_unknown_encoders_list_the_names() -> None:
    with pytest.raises(CrossmixError) as err:
        registry.load_encoders("resemblizer")
    msg = str(err.value)
    assert "'resemblizer' not found" in msg
    assert "shipped, resemblyzer, tiny" in msg and "cross-sp" in msg and ".json" in msg


# --- query separator ---------------------------------------------------------------------


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_query_separator_by_name_and_path(tmp_path: Path) -> None:
    shipped = QuerySeparator.load(default_model_path())
    for name in (None, "", "shipped", "aqss"):
        assert _same_weights(registry.load_query_separator(name, device=CPU), shipped)
    torch.manual_seed(0)
    tiny = QuerySeparator(QSepConfig(width=4, z_dim=4, depth=3, query_channels=(4,) * 6,
                                     gru_hidden=8, segment_frames=16, query_frames=32,
                                     name="tiny")).eval()
    path = tiny.save(tmp_path / "tiny-qsep")
    loaded = registry.load_query_separator(path)
    assert loaded.config.name == "tiny" and _same_weights(loaded, tiny)
    with pytest.raises(CrossmixError, match=r"'shiped' not found: use shipped, or the path"):
        registry.load_query_separator("shiped")


def test_models_are_resolved_in_one_place() -> None:
    """The old per-module resolvers are gone: every name goes through core.registry."""
    import core.embedding.encoders as encoders
    import core.separation.by_example as by_example

    assert not hasattr(encoders, "resolve_encoders")
    assert not hasattr(by_example, "load_query_separator")


def test_ray_model_spec_resolves_through_the_registry() -> None:
    from core.library.cluster import ModelSpec

    spec = ModelSpec(encoders="tiny", separator="tiny", device="cpu")
    assert spec.load_encoders().model_id == EncoderPair.tiny().model_id
    assert spec.load_separator().model_id == Separator.tiny().model_id
    with pytest.raises(ModelError, match="not found"):
        ModelSpec(separator="nope", device="cpu").load_separator()


# --- device ------------------------------------------------------------------------------


def test_usable_device_falls_back_to_the_cpu_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.device import usable_device
    from core.errors import DeviceError

    assert usable_device("cpu") == (CPU, None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    device, problem = usable_device("cuda")
    assert device == CPU and isinstance(problem, DeviceError) and "no usable NVIDIA GPU" in str(problem)


# --- search spaces and duplicates --------------------------------------------------------


def test_spaces_and_duplicate_threshold_are_defined_once() -> None:
    import core.embedding.quality as quality
    import core.library.library as library
    import core.library.spaces as spaces
    import gui.settings as settings

    assert library.SEARCH_SPACES is spaces.SEARCH_SPACES
    assert library.DUPLICATE_SIMILARITY == spaces.DUPLICATE_SIMILARITY
    assert settings.SPACES == ("auto", *spaces.SEARCH_SPACES)
    threshold = next(o for o in settings.OPTIONS if o.key == "search/duplicate_threshold")
    assert threshold.default == spaces.DUPLICATE_SIMILARITY
    # what measures each space: the evaluation's scenario and query-by-singer space
    assert quality.SPACE_MEASURES == {"vocal->mix": ("V->M", "M"), "mix->mix": ("M->M", "M"),
                                      "vocal->vocal": ("V->V", "V"), "[M,V]": ("[M,V]", "[M,V]")}
    assert spaces.NEEDS_VOCALS == {"vocal->vocal", "[M,V]"}
    for space in spaces.SEARCH_SPACES:  # the app shows each space by a label of its own
        assert settings.choice_label("search/space", space) != space


def test_registry_and_spaces_import_neither_torch_nor_numpy() -> None:
    code = ("import sys\nimport core.registry, core.library.spaces\n"
            "print(' '.join(m for m in ('torch', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


# --- training ----------------------------------------------------------------------------


class _Prepared(Exception):
    pass


def test_a_run_saved_with_the_old_separator_name_resumes(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    import training.trainer as trainer
    from core.errors import TrainingError

    def prepare(*_a: object, **_k: object) -> None:
        raise _Prepared  # the identity check passed

    monkeypatch.setattr(trainer, "prepare", prepare)
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    out.mkdir()
    cfg = trainer.TrainConfig(data=str(data), out=str(out), device="cpu")
    assert cfg.identity()["separator"] == "spleeter-2stems"
    old = {**cfg.identity(), "separator": "spleeter"}  # as a run started before the registry
    split = json.dumps({"seed": 0, "train": ["a", "b"], "val": [], "test": []})
    torch.save({"identity": json.dumps(old), "split": split}, out / "state.pt")
    with pytest.raises(_Prepared):
        trainer.train(cfg, resume=True)
    torch.save({"identity": json.dumps({**old, "separator": "tiny"}), "split": split},
               out / "state.pt")
    with pytest.raises(TrainingError, match="other settings"):
        trainer.train(cfg, resume=True)
