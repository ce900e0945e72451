#!/usr/bin/env python3
"""10 ms frame agreement between two speech-segment lists.

Definition (the Rust test implements the same thing; keep them in sync):

  * Times are seconds as IEEE-754 doubles, exactly as parsed from the JSON.
  * Frame i (i = 0, 1, 2, ...) covers [i*0.01, (i+1)*0.01). Its centre is
        c_i = (i + 0.5) * 0.01            (evaluated in f64, in that order)
  * The frames considered are all i with c_i < duration_s, i.e. every frame
    whose centre lies inside the file.  N = number of such frames.
  * Frame i is "speech" for a list iff some segment has start_s <= c_i < end_s
    (half-open; overlapping segments are fine).
  * agreement = (#frames where both lists say speech + #frames where both say
    non-speech) / N.   (N == 0 -> agreement 1.0.)

Input files may be a JSON list of {"start_s", "end_s"} objects, or an object
holding such a list under "segments" (silero reference) or "turns" (ground
truth in assets/samples/*.turns.json). The duration is taken from --duration,
else from the first file that has "duration_s", or "audio"."duration_16k_s",
or "num_samples"/"sample_rate_hz".

Usage:
  frame_agreement.py A.json B.json [--duration SECONDS] [--json]
"""
import argparse
import json
import sys

FRAME_S = 0.01


def load_segments(doc):
    if isinstance(doc, list):
        segs = doc
    elif "segments" in doc:
        segs = doc["segments"]
    elif "turns" in doc:
        segs = doc["turns"]
    else:
        raise ValueError("no 'segments' or 'turns' list in JSON")
    return [(float(s["start_s"]), float(s["end_s"])) for s in segs]


def duration_of(doc):
    if not isinstance(doc, dict):
        return None
    if "duration_s" in doc:
        return float(doc["duration_s"])
    if isinstance(doc.get("audio"), dict) and "duration_16k_s" in doc["audio"]:
        return float(doc["audio"]["duration_16k_s"])
    if "num_samples" in doc and "sample_rate_hz" in doc:
        return doc["num_samples"] / doc["sample_rate_hz"]
    return None


def frame_labels(segments, duration_s):
    labels = []
    i = 0
    while True:
        c = (i + 0.5) * FRAME_S
        if not c < duration_s:
            break
        labels.append(any(s <= c < e for s, e in segments))
        i += 1
    return labels


def frame_agreement(seg_a, seg_b, duration_s):
    """Returns (agreement, counts) with counts = dict(n, both_speech, both_silence, a_only, b_only)."""
    la = frame_labels(seg_a, duration_s)
    lb = frame_labels(seg_b, duration_s)
    n = len(la)
    counts = {
        "n": n,
        "both_speech": sum(a and b for a, b in zip(la, lb)),
        "both_silence": sum((not a) and (not b) for a, b in zip(la, lb)),
        "a_only": sum(a and not b for a, b in zip(la, lb)),
        "b_only": sum(b and not a for a, b in zip(la, lb)),
    }
    agree = 1.0 if n == 0 else (counts["both_speech"] + counts["both_silence"]) / n
    return agree, counts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--duration", type=float, help="file duration in seconds")
    ap.add_argument("--json", action="store_true", help="print a JSON object")
    args = ap.parse_args()

    da = json.load(open(args.a))
    db = json.load(open(args.b))
    dur = args.duration
    if dur is None:
        dur = duration_of(da)
    if dur is None:
        dur = duration_of(db)
    if dur is None:
        sys.exit("duration unknown: pass --duration")

    agree, counts = frame_agreement(load_segments(da), load_segments(db), dur)
    if args.json:
        print(json.dumps({"duration_s": dur, "agreement": agree, **counts}))
    else:
        print(f"frames={counts['n']} agreement={agree:.4f} both_speech={counts['both_speech']} "
              f"both_silence={counts['both_silence']} a_only={counts['a_only']} b_only={counts['b_only']}")


if __name__ == "__main__":
    main()
