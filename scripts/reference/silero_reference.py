#!/usr/bin/env python3
"""Reference run of the official silero-vad package on the fixtures in assets/samples/.

Writes assets/samples/<name>.silero_reference.json for every fixture given on the
command line (default: two_voices.wav and noisy_mix_44k_stereo.flac).

Pipeline (mirrored by the Rust side):
  1. Read with soundfile (libsndfile) as float64: int16 samples / 32768.
  2. More than one channel -> plain average of the channels.
  3. Sample rate != 16000 -> scipy.signal.resample_poly(x, up, down) with
     up/down = 16000/sr reduced by gcd (44100 -> 160/441), default
     window ('kaiser', 5.0). The Rust side uses rubato, so for resampled
     files frame probabilities are not expected to match bit-for-bit.
  4. Cast to float32 and pass a 1-D torch tensor to get_speech_timestamps with
     the ONNX model (load_silero_vad(onnx=True)) and all default parameters.

Per-frame probabilities are captured from the very model calls that
get_speech_timestamps makes (a thin recording proxy around OnnxWrapper), so they
are exactly what the segmenter consumed.

See scripts/reference/README.md for how to set up the environment.
"""
import argparse
import hashlib
import json
import math
import os
import sys
from math import gcd

import numpy as np
import onnxruntime
import scipy
import soundfile as sf
import torch
from scipy.signal import resample_poly

import silero_vad
from silero_vad import get_speech_timestamps, get_speech_timestamps_from_probs, load_silero_vad

EXPECTED_SILERO = "6.2.3"
EXPECTED_ORT = "1.31.1"
SR = 16000
N_FIRST = 64

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SAMPLES = os.path.join(REPO, "assets", "samples")

# get_speech_timestamps defaults in silero-vad 6.2.3 (passed explicitly so the
# JSON records exactly what was used).
PARAMS = {
    "sampling_rate": SR,
    "threshold": 0.5,
    "neg_threshold": None,  # None -> max(threshold - 0.15, 0.01) = 0.35
    "min_speech_duration_ms": 250,
    "max_speech_duration_s": math.inf,
    "min_silence_duration_ms": 100,
    "speech_pad_ms": 30,
    "min_silence_at_max_speech": 98,
    "use_max_poss_sil_at_max_speech": True,
}


class RecordingModel:
    """Forwards to the silero OnnxWrapper and records every probability."""

    def __init__(self, inner):
        self.inner = inner
        self.probs = []

    def reset_states(self, *a, **kw):
        self.probs = []
        return self.inner.reset_states(*a, **kw)

    def __call__(self, x, sr):
        out = self.inner(x, sr)
        self.probs.append(float(out.item()))
        return out


def load_16k_mono(path):
    data, sr = sf.read(path, dtype="float64", always_2d=True)  # (frames, channels)
    info = sf.info(path)
    x = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    resample = None
    if sr != SR:
        g = gcd(SR, sr)
        up, down = SR // g, sr // g
        x = resample_poly(x, up, down)
        resample = {
            "method": f"scipy.signal.resample_poly(x, {up}, {down}) (default window ('kaiser', 5.0)), scipy {scipy.__version__}",
            "from_hz": sr,
            "to_hz": SR,
        }
    audio = {
        "decoder": f"soundfile {sf.__version__} (libsndfile {sf.__libsndfile_version__}), int16/32768 as float64",
        "source_sample_rate_hz": sr,
        "source_channels": data.shape[1],
        "source_frames": data.shape[0],
        "source_subtype": info.subtype,
        "downmix": "mean of channels (float64)" if data.shape[1] > 1 else None,
        "resample": resample,
        "samples_16k": int(len(x)),
        "duration_16k_s": len(x) / SR,
    }
    return torch.from_numpy(x.astype(np.float32)), audio


def model_sha256():
    p = os.path.join(os.path.dirname(silero_vad.__file__), "data", "silero_vad.onnx")
    with open(p, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def run(name, model):
    path = os.path.join(SAMPLES, name)
    wav, audio = load_16k_mono(path)
    call = dict(PARAMS)
    segs = get_speech_timestamps(wav, model, return_seconds=False, **call)
    probs = list(model.probs)
    n = len(wav)
    assert len(probs) == math.ceil(n / 512), (len(probs), n)
    # Sanity: the probability-only segmenter must reproduce the same segments.
    again = get_speech_timestamps_from_probs(probs, audio_length_samples=n, **call)
    assert again == segs, (again, segs)
    secs = get_speech_timestamps_from_probs(probs, audio_length_samples=n, return_seconds=True, **call)

    params = dict(call)
    params["max_speech_duration_s"] = "inf"
    params["neg_threshold_effective"] = max(params["threshold"] - 0.15, 0.01)
    params["return_seconds"] = False
    params["window_size_samples"] = 512
    params["context_samples"] = 64
    return {
        "file": name,
        "package": f"silero-vad {silero_vad.__version__}",
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
        "model": "silero_vad.onnx (load_silero_vad(onnx=True), opset 16)",
        "model_sha256": model_sha256(),
        "params": params,
        "audio": audio,
        "segments": [
            {"start_s": s["start"] / SR, "end_s": s["end"] / SR,
             "start_sample": s["start"], "end_sample": s["end"]}
            for s in segs
        ],
        "segments_return_seconds_default": [
            {"start_s": s["start"], "end_s": s["end"]} for s in secs
        ],
        "num_frames": len(probs),
        "frame_probs_first_64": [round(p, 5) for p in probs[:N_FIRST]],
        "frame_probs_all": [round(p, 5) for p in probs],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", default=["two_voices.wav", "noisy_mix_44k_stereo.flac"],
                    help="file names inside assets/samples/")
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 if a committed reference JSON differs")
    args = ap.parse_args()

    if silero_vad.__version__ != EXPECTED_SILERO or onnxruntime.__version__ != EXPECTED_ORT:
        sys.exit(f"need silero-vad {EXPECTED_SILERO} and onnxruntime {EXPECTED_ORT}, "
                 f"have {silero_vad.__version__} / {onnxruntime.__version__}")

    model = RecordingModel(load_silero_vad(onnx=True))
    status = 0
    for name in args.files:
        doc = run(name, model)
        out = os.path.join(SAMPLES, os.path.splitext(name)[0] + ".silero_reference.json")
        text = json.dumps(doc, indent=1) + "\n"
        if args.check:
            old = open(out).read() if os.path.exists(out) else ""
            ok = old == text
            status |= not ok
            print(f"{name}: {'matches' if ok else 'DIFFERS from'} {os.path.relpath(out, REPO)}")
        else:
            with open(out, "w") as f:
                f.write(text)
            print(f"{name}: {len(doc['segments'])} segments, {doc['num_frames']} frames -> {os.path.relpath(out, REPO)}")
            for s in doc["segments"]:
                print(f"  {s['start_s']:.4f} - {s['end_s']:.4f}")
    sys.exit(status)


if __name__ == "__main__":
    main()
