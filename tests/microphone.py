"""The test microphone: a real ALSA capture device whose input is a file of raw samples.

``tests/asound.conf`` defines ``crossmix_test_capture``, ALSA's ``file`` plugin reading raw
float32 mono frames from ``$CROSSMIX_TEST_CAPTURE`` (silence when unset) over the ``null``
device, and makes ``null`` the default output. PortAudio reads the ALSA configuration once,
when ``sounddevice`` is imported, so :func:`use_test_alsa` must run before that.

Two ways to feed it:

- :func:`feed_file`: the device reads a file. ALSA's null device has no clock, so PortAudio
  delivers it as fast as the callback returns (a take of many seconds in a fraction of one);
  past the end of the file it repeats its last buffer, so end the file with silence.
- :class:`RealtimeFeed`: the device reads a named pipe that a separate process fills at the
  audio rate, so the take arrives in real time, as from a sound card.

Shared by the tests (``conftest.py``, ``test_gui_record.py``), ``bench/record.py`` and
``scripts/screenshots.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import numpy as np

HERE = Path(__file__).resolve().parent
#: Null output and the file-fed microphone.
ASOUND_CONF = HERE / "asound.conf"
#: Outputs only: a computer without any microphone.
NO_INPUT_CONF = HERE / "asound-no-input.conf"
#: The microphone's name, as PortAudio lists it (the ``audio/input_device`` setting).
DEVICE = "crossmix_test_capture"
#: Its default sample rate: the rate the recorder asks for.
SR = 44100
#: The environment variable naming the file (or pipe) the microphone reads.
CAPTURE_ENV = "CROSSMIX_TEST_CAPTURE"
#: Frames per pipe write of :class:`RealtimeFeed`: 4096 bytes, written atomically (PIPE_BUF).
CHUNK = 1024


def use_test_alsa(conf: Path = ASOUND_CONF, *, keep_existing: bool = False) -> None:
    """Point ALSA at ``conf`` (unless ``keep_existing`` and one is set already). PortAudio
    reads it when ``sounddevice`` is imported (or re-initialised): call this first."""
    if keep_existing:
        os.environ.setdefault("ALSA_CONFIG_PATH", str(conf))
    else:
        os.environ["ALSA_CONFIG_PATH"] = str(conf)


def write_raw(samples: np.ndarray, path: Path) -> Path:
    """``samples`` (mono) as the microphone reads them: raw little-endian float32."""
    np.asarray(samples, dtype="<f4").reshape(-1).tofile(path)
    return path


def feed_file(samples: np.ndarray, path: Path) -> Path:
    """Make the microphone read ``samples`` (as fast as they are read) from ``path``."""
    write_raw(samples, path)
    os.environ[CAPTURE_ENV] = str(path)
    return path


class RealtimeFeed:
    """The microphone reads a named pipe filled at the audio rate by a feeder process.

    Each time the device is opened (PortAudio opens it once to probe it when it starts, then
    for each take) the feeder starts ``samples`` over from the beginning; past their end it
    writes silence. Start it before ``sounddevice`` is imported: opening a pipe with no writer
    blocks, and PortAudio's probe would wait for ever.
    """

    def __init__(self, samples: np.ndarray, *, sr: int = SR, folder: Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else Path(
            tempfile.mkdtemp(prefix="crossmix-mic-"))
        self.raw = write_raw(samples, self.folder / "mic.raw")
        self.fifo = self.folder / "mic.fifo"
        self.sr = sr
        self.seconds = len(samples) / sr
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RealtimeFeed:
        if not self.fifo.exists():
            os.mkfifo(self.fifo)
        os.environ[CAPTURE_ENV] = str(self.fifo)
        self.process = subprocess.Popen([sys.executable, __file__, "feed", str(self.raw),
                                         str(self.fifo), str(self.sr), str(CHUNK)])
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def __enter__(self) -> RealtimeFeed:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _feed_forever(raw: Path, fifo: Path, sr: int, chunk: int) -> None:
    """The feeder process: ``raw`` into ``fifo`` at ``sr`` frames a second, from the start
    at each opening, silence after its end."""
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    data = raw.read_bytes()
    step = chunk * 4
    silence = bytes(step)
    while True:
        fd = os.open(fifo, os.O_WRONLY)  # waits for a reader
        t0 = time.perf_counter()
        i = 0
        try:
            while True:
                os.write(fd, data[i:i + step].ljust(step, b"\0") if i < len(data) else silence)
                i += step
                wait = t0 + (i // 4) / sr - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
        except BrokenPipeError:
            pass
        finally:
            os.close(fd)


if __name__ == "__main__" and sys.argv[1:2] == ["feed"]:
    _feed_forever(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
