#!/usr/bin/env python3
"""Builds the diarization evaluation set: synthetic conversations of espeak-ng voices with known
turns, deterministic (fixed seed, sox -R, no dither).

Usage: python3 scripts/eval/make_conversations.py OUT_DIR

Writes OUT_DIR/<name>.wav (16 kHz mono s16), OUT_DIR/<name>.rttm (reference turns, speaker
labels A/B/C) and OUT_DIR/conversations.json (what each conversation is made of). Needs
espeak-ng and sox on PATH; stdlib only. Turn boundaries are exact sample positions of the
sox-trimmed utterances (-60 dBFS), as in assets/samples/make_samples.sh.
"""

import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

RATE = 16000
SOX = ["sox", "-R", "-D", "-V1"]

# (voice, pitch 0..99, speed wpm): different voices, variants, pitches and speeds.
VOICES = {
    "m_us_low": ("en-us", 30, 145),
    "f_gb_high": ("en-gb+f4", 72, 175),
    "m_gb_mid": ("en-gb+m3", 50, 160),
    "f_us_mid": ("en-us+f2", 60, 165),
    "m_sc": ("en-gb-scotland", 40, 170),
    "f_rp": ("en-gb-x-rp+f3", 65, 150),
    "m_us_fast": ("en-us+m5", 45, 190),
    "f_us_slow": ("en-us+f5", 55, 135),
}

SENTENCES = [
    "Good morning everyone and thank you for joining the planning meeting today",
    "I think we should start with the budget before we talk about the schedule",
    "The new model runs much faster on the small machines than we expected",
    "Could you send me the numbers from last week when you have a moment",
    "We tested the detector on long recordings and it held up very well",
    "That sounds reasonable but I would like to see the memory profile first",
    "The embedder is larger so we load it only after the detector is gone",
    "Let us meet again on Thursday and review the results together",
    "I am not sure the threshold is right for noisy recordings",
    "The report shows two load phases and a clean drop in between",
    "Please write down the steps so that anyone can reproduce the run",
    "We can split the long files into chunks and stream them one by one",
    "My main worry is the time it takes to process a full day of audio",
    "The customer asked whether the tool works without a network connection",
    "Yes it does because all the models are stored on the local disk",
    "I will prepare a short demo for the meeting with the other team",
    "Remember that the speakers in these recordings never talk at the same time",
    "The weather was terrible this morning and the train was late again",
    "If the budget is too small the orchestrator refuses to load the model",
    "Thank you all for your time and see you next week",
]

# name, voices (speaker labels A, B, C in this order), number of turns, noise gain (0 = none).
CONVERSATIONS = [
    ("conv01", ["m_us_low", "f_gb_high"], 8, 0.0),
    ("conv02", ["m_gb_mid", "f_us_mid"], 8, 0.0),
    ("conv03", ["m_sc", "f_rp"], 10, 0.0),
    ("conv04", ["m_us_fast", "f_us_slow"], 8, 0.0),
    ("conv05", ["m_us_low", "m_gb_mid"], 8, 0.0),
    ("conv06", ["f_gb_high", "f_us_mid"], 8, 0.0),
    ("conv07", ["m_us_low", "f_gb_high", "m_sc"], 9, 0.0),
    ("conv08", ["f_us_mid", "m_us_fast", "f_rp"], 9, 0.0),
    ("conv09", ["m_gb_mid", "f_us_slow", "m_sc"], 12, 0.0),
    ("conv10", ["m_us_low", "f_us_mid"], 8, 0.01),
    ("conv11", ["m_sc", "f_gb_high", "m_us_fast"], 9, 0.01),
    ("conv12", ["f_rp", "m_gb_mid"], 10, 0.02),
]


def run(cmd):
    subprocess.run(cmd, check=True)


def n_samples(path):
    return int(subprocess.run(["soxi", "-s", str(path)], check=True, capture_output=True,
                              text=True).stdout.strip())


def speak(work, name, text, voice):
    v, pitch, speed = VOICES[voice]
    raw = work / f"{name}.raw.wav"
    out = work / f"{name}.wav"
    run(["espeak-ng", "-v", v, "-p", str(pitch), "-s", str(speed), "-w", str(raw), text])
    run(SOX + [str(raw), "-c", "1", "-b", "16", str(out), "rate", "-v", str(RATE),
               "silence", "1", "0.005", "-60d", "reverse", "silence", "1", "0.005", "-60d",
               "reverse", "gain", "-n", "-3"])
    return out


def silence(work, name, seconds):
    out = work / f"{name}.wav"
    run(SOX + ["-r", str(RATE), "-c", "1", "-b", "16", "-n", str(out), "trim", "0",
               f"{round(seconds * RATE)}s"])
    return out


def build(out_dir, work, name, voices, n_turns, noise, rng):
    labels = "ABC"[: len(voices)]
    # Speaker order: alternate, with an occasional jump for three speakers; never the same
    # speaker twice in a row (consecutive turns of one speaker would be one turn).
    order = [0]
    while len(order) < n_turns:
        choices = [k for k in range(len(voices)) if k != order[-1]]
        order.append(rng.choice(choices))
    texts = rng.sample(SENTENCES, n_turns)
    parts = [silence(work, f"{name}_lead", 0.5)]
    pos = n_samples(parts[0])
    turns = []
    for i, (k, text) in enumerate(zip(order, texts)):
        u = speak(work, f"{name}_u{i}", text, voices[k])
        n = n_samples(u)
        turns.append((labels[k], pos, pos + n))
        pos += n
        parts.append(u)
        gap = silence(work, f"{name}_g{i}", round(rng.uniform(0.25, 1.2), 3))
        parts.append(gap)
        pos += n_samples(gap)
    wav = out_dir / f"{name}.wav"
    if noise > 0:
        speech = work / f"{name}_speech.wav"
        run(SOX + [str(p) for p in parts] + [str(speech)])
        noise_wav = work / f"{name}_noise.wav"
        run(SOX + ["-r", str(RATE), "-c", "1", "-b", "16", "-n", str(noise_wav), "synth",
                   f"{pos}s", "pinknoise", "vol", str(noise)])
        run(SOX + ["-m", str(speech), str(noise_wav), "-b", "16", str(wav)])
    else:
        run(SOX + [str(p) for p in parts] + [str(wav)])
    with open(out_dir / f"{name}.rttm", "w") as f:
        for label, s, e in turns:
            f.write(f"SPEAKER {name} 1 {s / RATE:.6f} {(e - s) / RATE:.6f} <NA> <NA> {label} "
                    "<NA> <NA>\n")
    return {"name": name, "voices": dict(zip(labels, voices)), "noise_gain": noise,
            "duration_s": pos / RATE,
            "turns": [{"speaker": l, "start_s": s / RATE, "end_s": e / RATE}
                      for l, s, e in turns]}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(20240611)
    docs = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, voices, n_turns, noise in CONVERSATIONS:
            docs.append(build(out_dir, Path(tmp), name, voices, n_turns, noise, rng))
    with open(out_dir / "conversations.json", "w") as f:
        json.dump({"voices": VOICES, "conversations": docs}, f, indent=1)
        f.write("\n")
    print(f"{len(docs)} conversations in {out_dir}")


if __name__ == "__main__":
    main()
