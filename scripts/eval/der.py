#!/usr/bin/env python3
"""Diarization error rate of masp's RTTM against the reference RTTMs, with pyannote.metrics.

Usage: python der.py REF_DIR HYP.rttm [--collar 0.25] [--json OUT]

REF_DIR holds <file-id>.rttm references (as make_conversations.py writes them); HYP.rttm is
`masp diarize --format rttm` output for the same files. Prints, per conversation and overall,
DER, missed speech, false alarm and speaker confusion, as percentages of reference speech.

Collar: --collar is the forgiveness on EACH side of every reference boundary (NIST md-eval's
convention; 0.25 s by default). pyannote.metrics' `collar` is the total width, so it gets
2 x --collar. Overlapping speech is scored (the references have none).
"""

import argparse
import json
from collections import defaultdict
from pathlib import Path

from pyannote.core import Annotation, Segment
from pyannote.metrics.diarization import DiarizationErrorRate


def read_rttm(path):
    out = defaultdict(Annotation)
    for line in Path(path).read_text().splitlines():
        f = line.split()
        if not f or f[0] != "SPEAKER":
            continue
        uri, start, dur, spk = f[1], float(f[3]), float(f[4]), f[7]
        out[uri].uri = uri
        out[uri][Segment(start, start + dur), len(out[uri])] = spk
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("ref_dir")
    p.add_argument("hyp")
    p.add_argument("--collar", type=float, default=0.25, help="seconds on each side")
    p.add_argument("--json")
    a = p.parse_args()
    refs = {}
    for r in sorted(Path(a.ref_dir).glob("*.rttm")):
        refs.update(read_rttm(r))
    hyps = read_rttm(a.hyp)
    metric = DiarizationErrorRate(collar=2 * a.collar, skip_overlap=False)
    rows = []
    print(f"collar {a.collar} s each side of reference boundaries; overlap scored (none in refs)")
    print(f"{'file':8} {'spk':>3} {'hyp':>3} {'DER%':>6} {'miss%':>6} {'FA%':>6} {'conf%':>6}")
    for uri, ref in refs.items():
        hyp = hyps.get(uri, Annotation(uri=uri))
        d = metric(ref, hyp, detailed=True)
        total = d["total"]
        row = {
            "file": uri,
            "ref_speakers": len(ref.labels()),
            "hyp_speakers": len(hyp.labels()),
            "der": 100 * d["diarization error rate"],
            "miss": 100 * d["missed detection"] / total,
            "fa": 100 * d["false alarm"] / total,
            "conf": 100 * d["confusion"] / total,
        }
        rows.append(row)
        print(f"{uri:8} {row['ref_speakers']:>3} {row['hyp_speakers']:>3} {row['der']:6.1f} "
              f"{row['miss']:6.1f} {row['fa']:6.1f} {row['conf']:6.1f}")
    tot = metric[:]  # accumulated components
    total = tot["total"]
    overall = {
        "der": 100 * abs(metric),
        "miss": 100 * tot["missed detection"] / total,
        "fa": 100 * tot["false alarm"] / total,
        "conf": 100 * tot["confusion"] / total,
    }
    print(f"{'overall':8} {'':>3} {'':>3} {overall['der']:6.1f} {overall['miss']:6.1f} "
          f"{overall['fa']:6.1f} {overall['conf']:6.1f}")
    if a.json:
        Path(a.json).write_text(json.dumps({"collar_s": a.collar, "files": rows,
                                            "overall": overall}, indent=1))


if __name__ == "__main__":
    main()
