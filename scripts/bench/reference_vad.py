"""VAD references for `cargo xtask bench`: the official silero-vad package and faster-whisper's
VAD path, timed on one 16 kHz mono 16-bit WAV, one intra-op thread.

Usage: reference_vad.py silero|faster-whisper FILE
Prints one JSON line: {"wall_s", "peak_rss_bytes", "n_segments", "segments": [[start, end], ...]}.
The wall time covers what a user waits for: imports, model load, reading the file, VAD.
"""
import importlib.util
import json
import os
import resource
import sys
import time
import types
import wave

START = time.perf_counter()
import numpy as np  # noqa: E402


def read_wav(path):
    with wave.open(path, "rb") as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
        data = w.readframes(w.getnframes())
    return np.frombuffer(data, dtype=np.int16).astype(np.float32) / 32768.0


def silero(path):
    import torch
    torch.set_num_threads(1)
    from silero_vad import load_silero_vad, get_speech_timestamps
    model = load_silero_vad(onnx=True)
    audio = torch.from_numpy(read_wav(path))
    ts = get_speech_timestamps(audio, model, sampling_rate=16000)
    return [[t["start"], t["end"]] for t in ts]


def faster_whisper(path):
    # Load faster_whisper/vad.py alone: the package's __init__ imports ctranslate2 and the
    # Whisper stack, which its VAD path does not need.
    spec = importlib.util.find_spec("faster_whisper")
    pkg_dir = os.path.dirname(spec.origin)
    pkg = types.ModuleType("faster_whisper")
    pkg.__path__ = [pkg_dir]
    utils = types.ModuleType("faster_whisper.utils")
    utils.get_assets_path = lambda: os.path.join(pkg_dir, "assets")
    sys.modules["faster_whisper"] = pkg
    sys.modules["faster_whisper.utils"] = utils
    vspec = importlib.util.spec_from_file_location("faster_whisper.vad", os.path.join(pkg_dir, "vad.py"))
    vad = importlib.util.module_from_spec(vspec)
    sys.modules["faster_whisper.vad"] = vad
    vspec.loader.exec_module(vad)
    audio = read_wav(path)
    ts = vad.get_speech_timestamps(audio, vad.VadOptions(
        min_speech_duration_ms=250, min_silence_duration_ms=100, speech_pad_ms=30))
    return [[t["start"], t["end"]] for t in ts]


def main():
    which, path = sys.argv[1], sys.argv[2]
    segments = silero(path) if which == "silero" else faster_whisper(path)
    wall = time.perf_counter() - START
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"wall_s": wall, "peak_rss_bytes": peak, "n_segments": len(segments), "segments": segments}))


if __name__ == "__main__":
    main()
