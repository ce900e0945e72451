#!/usr/bin/env bash
# The diarization evaluation end to end: build masp (release), make the conversations, diarize
# them, score with pyannote.metrics. Deterministic up to the espeak-ng and sox versions.
#
# Usage: bash scripts/eval/evaluate.sh [WORK_DIR] [extra `masp diarize` flags…]
# Needs espeak-ng, sox, python3 (venv + pip for pyannote.metrics, installed once into
# /tmp/eval-venv).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="${1:-/tmp/diar-eval}"; shift || true
VENV=/tmp/eval-venv
[ -x "$VENV/bin/python" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q pyannote.metrics; }
cargo build --release -q -p masp-cli --manifest-path "$ROOT/Cargo.toml"
python3 "$ROOT/scripts/eval/make_conversations.py" "$WORK/audio"
rm -rf "$WORK/run"
"$ROOT/target/release/masp" diarize --format rttm --run-dir "$WORK/run" "$@" "$WORK"/audio/*.wav \
  > "$WORK/hyp.rttm"
"$VENV/bin/python" -W ignore "$ROOT/scripts/eval/der.py" "$WORK/audio" "$WORK/hyp.rttm" \
  --json "$WORK/der.json"
