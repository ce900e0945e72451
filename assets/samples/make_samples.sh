#!/usr/bin/env bash
# Regenerates the speech fixtures in this directory.
#
#   two_voices.wav               16 kHz mono s16 WAV, two espeak-ng voices, 6 alternating turns
#   two_voices.turns.json        ground-truth turns (from the concatenation sample counts)
#   noisy_mix_44k_stereo.flac    44.1 kHz stereo s16 FLAC, speech + low-level pink noise
#   noisy_mix_44k_stereo.turns.json
#
# Requirements: espeak-ng (made with 1.51), sox (made with 14.4.2, built with FLAC
# support), soxi, python3 (stdlib only, for writing the JSON).
# Deterministic: fixed texts/voices/pitches/speeds, no dither (-D), and sox's
# repeatable random seed (-R) for the noise. Output is byte-identical for the
# same espeak-ng and sox versions; other versions may differ slightly.
#
# Usage: bash assets/samples/make_samples.sh   (writes next to this script)
set -euo pipefail

OUT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

SOX="sox -R -D -V1"   # repeatable RNG, never dither, quiet

# Speaker voices: A = US-English male, low pitch, slower; B = British female variant, high pitch, faster.
VOICE_A=(-v en-us -p 35 -s 150)
VOICE_B=(-v en-gb+f4 -p 70 -s 175)
# Voices for the noisy 44.1 kHz fixture.
VOICE_C=(-v en-us+m3 -p 50 -s 160)
VOICE_D=(-v en+f2 -p 60 -s 165)

# speak NAME RATE TEXT VOICEARGS...  -> $WORK/NAME.wav: mono s16 at RATE, leading and
# trailing silence trimmed (threshold -60 dBFS), peak-normalised to -3 dBFS.
speak() {
  local name="$1" rate="$2" text="$3"; shift 3
  espeak-ng "$@" -w "$WORK/$name.raw.wav" "$text"
  $SOX "$WORK/$name.raw.wav" -c 1 -b 16 "$WORK/$name.wav" \
    rate -v "$rate" \
    silence 1 0.005 -60d reverse silence 1 0.005 -60d reverse \
    gain -n -3
}

# silence NAME RATE SECONDS -> $WORK/NAME.wav (digital zeros, exact sample count)
silence() {
  local name="$1" rate="$2" secs="$3"
  local n; n=$(python3 -c "print(round($secs*$rate))")
  $SOX -r "$rate" -c 1 -b 16 -n "$WORK/$name.wav" trim 0 "${n}s"
}

nsamples() { soxi -s "$1"; }

# build OUTWAV RATE JSONFILE LEAD "LABEL|TEXT|GAP_AFTER|VOICEVAR" ...
# Concatenates LEAD seconds of silence, then each utterance followed by its gap,
# and records the exact turn boundaries from the sample counts.
build() {
  local outwav="$1" rate="$2" json="$3" lead="$4"; shift 4
  local parts=() turns="" pos i=0
  silence lead "$rate" "$lead"; parts+=("$WORK/lead.wav")
  pos=$(nsamples "$WORK/lead.wav")
  for spec in "$@"; do
    IFS='|' read -r label text gap voicevar <<<"$spec"
    local -n vargs="$voicevar"
    speak "u$i" "$rate" "$text" "${vargs[@]}"
    local n; n=$(nsamples "$WORK/u$i.wav")
    turns+="$label $pos $((pos + n))"$'\n'
    pos=$((pos + n))
    parts+=("$WORK/u$i.wav")
    silence "g$i" "$rate" "$gap"; parts+=("$WORK/g$i.wav")
    pos=$((pos + $(nsamples "$WORK/g$i.wav")))
    i=$((i + 1))
  done
  $SOX "${parts[@]}" "$outwav"
  printf '%s' "$turns" > "$WORK/turns.txt"
  python3 - "$WORK/turns.txt" "$json" "$(basename "$outwav")" "$rate" "$pos" <<'PY'
import json, sys
src, dst, fname, rate, total = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
turns = []
for line in open(src):
    if not line.strip():
        continue
    lab, s, e = line.split()
    s, e = int(s), int(e)
    turns.append({"speaker": lab, "start_s": round(s / rate, 6), "end_s": round(e / rate, 6),
                  "start_sample": s, "end_sample": e})
doc = {"file": fname, "sample_rate_hz": rate, "duration_s": round(total / rate, 6),
       "num_samples": total,
       "note": "turn boundaries are exact sample positions of the sox-trimmed espeak-ng utterances (trim threshold -60 dBFS) in the concatenation; silence between turns is digital zero",
       "turns": turns}
with open(dst, "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
PY
}

# ---- fixture 1: two voices, 16 kHz mono WAV -------------------------------
build "$OUT/two_voices.wav" 16000 "$OUT/two_voices.turns.json" 0.5 \
  "A|Good morning everyone and thank you for joining the planning meeting today|0.8|VOICE_A" \
  "B|Thanks for having me I am glad we finally found a time that works|0.35|VOICE_B" \
  "A|Let us start with the memory budget for the speech models|1.5|VOICE_A" \
  "B|The voice activity detector is tiny so it should fit easily|0.6|VOICE_B" \
  "A|Great then we can spend most of the budget on the larger network|1.1|VOICE_A" \
  "B|Sounds good I will send the numbers after lunch|0.7|VOICE_B"

# ---- fixture 2: speech + low-level pink noise, 44.1 kHz stereo FLAC -------
build "$WORK/speech44.wav" 44100 "$OUT/noisy_mix_44k_stereo.turns.json" 0.8 \
  "C|Testing the decoder with a stereo file recorded at forty four kilohertz|1.0|VOICE_C" \
  "D|The noise floor is low but never completely silent|0.7|VOICE_D" \
  "C|Resampling should not change where the speech begins and ends|0.8|VOICE_C"
python3 - "$OUT/noisy_mix_44k_stereo.turns.json" <<'PY'
import json, sys
p = sys.argv[1]
d = json.load(open(p))
d["file"] = "noisy_mix_44k_stereo.flac"
d["note"] = ("speech track as in two_voices (exact sample positions at 44.1 kHz); stereo = speech*0.9 (L), "
             "speech*0.7 (R), plus one pink-noise track (sox synth pinknoise, seeded with -R) at 0.008 linear "
             "gain on both channels (identical noise in L and R) over the whole file")
json.dump(d, open(p, "w"), indent=2)
open(p, "a").write("\n")
PY
dur=$(soxi -D "$WORK/speech44.wav")
$SOX "$WORK/speech44.wav" -c 2 "$WORK/speech44_st.wav" remix 1v0.9 1v0.7
$SOX -r 44100 -c 1 -b 16 -n "$WORK/noise.wav" synth "$dur" pinknoise
$SOX "$WORK/noise.wav" -c 2 "$WORK/noise_st.wav" remix 1v0.008 1v0.008
$SOX -m -v 1 "$WORK/speech44_st.wav" -v 1 "$WORK/noise_st.wav" -b 16 -C 8 "$OUT/noisy_mix_44k_stereo.flac"

ls -l "$OUT"
