#!/usr/bin/env bash
# Answering-machine / human corpus for the real-call AMD test (tests/campaign_sipp.rs,
# amd_through_real_calls) and the figures of docs/benchmarks.md.
#
#   sip-test/make_amd_corpus.sh OUTDIR
#
# Writes OUTDIR/NAME.wav (8 kHz mono 16-bit) and OUTDIR/manifest.tsv, one line per file:
#   name  class  lang  voice  speed  pitch  noise  speech_start_ms  speech_end_ms  beep_hz  beep_end_ms  total_ms
# class: human ("Hello?" then noise/silence; the test adds the key press) or machine
# (greeting, a pause, a beep, then silence: what a voicemail box sends before it records).
# noise: "none", or "white:SNR" / "pink:SNR" (SNR in dB relative to the speech's RMS),
# mixed over the whole file, so the line stays noisy after the speech.
#
# Generated at test time into the test's folder (nothing committed; ~2 MB, ~3 s): espeak-ng
# voices as audio/generate.sh uses them (en-us / en-gb / female variants; Mandarin
# cmn-latn-pinyin, else cmn), with varied speeds and pitches; sox for the trim, the beep and
# the noise. Deterministic: sox -R, fixed seeds, no dither.
set -euo pipefail

out=${1:?usage: make_amd_corpus.sh OUTDIR}
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
SOX=(sox -R -D -V1)
FMT=(-r 8000 -c 1 -b 16 -e signed-integer)

zh_voice=cmn
espeak-ng --voices=cmn 2>/dev/null | grep -q 'cmn-latn-pinyin' && zh_voice=cmn-latn-pinyin

# ms of a WAV
ms() { soxi -s "$1" | awk '{ printf "%d", $1 / 8 }'; }
# RMS amplitude (0..1) of a WAV
rms() { "${SOX[@]}" "$1" -n stat 2>&1 | awk '/RMS +amplitude/ { print $3 }'; }

# speak VOICE SPEED PITCH TEXT OUT: 8 kHz, trimmed, peak -3 dBFS (as audio/generate.sh)
speak() {
    espeak-ng -v "$1" -s "$2" -p "$3" -w "$tmp/raw.wav" "$4"
    "${SOX[@]}" "$tmp/raw.wav" "${FMT[@]}" "$5" \
        silence 1 0.01 0.5% reverse silence 1 0.01 0.5% reverse gain -n -3
}

# render NAME CLASS LANG VOICE SPEED PITCH NOISE LEAD_MS TEXT BEEP_HZ BEEP_MS TAIL_MS
render() {
    local name=$1 class=$2 lang=$3 voice=$4 speed=$5 pitch=$6 noise=$7 lead=$8 text=$9
    local beep_hz=${10} beep_ms=${11} tail=${12}
    local sp="$tmp/$name.speech.wav" parts=() speech_ms beep_end=0
    speak "$voice" "$speed" "$pitch" "$text" "$sp"
    speech_ms=$(ms "$sp")
    "${SOX[@]}" -n "${FMT[@]}" "$tmp/lead.wav" trim 0 "$(awk "BEGIN{print $lead/1000}")"
    parts=("$tmp/lead.wav" "$sp")
    if [[ $beep_hz != 0 ]]; then
        # A pause after the greeting, then the beep (-6 dBFS), as mailboxes do.
        "${SOX[@]}" -n "${FMT[@]}" "$tmp/gap.wav" trim 0 0.6
        "${SOX[@]}" -n "${FMT[@]}" "$tmp/beep.wav" synth "$(awk "BEGIN{print $beep_ms/1000}")" \
            sine "$beep_hz" fade 0.005 0 0.005 gain -n -6
        parts+=("$tmp/gap.wav" "$tmp/beep.wav")
        beep_end=$((lead + speech_ms + 600 + beep_ms))
    fi
    "${SOX[@]}" -n "${FMT[@]}" "$tmp/tail.wav" trim 0 "$(awk "BEGIN{print $tail/1000}")"
    parts+=("$tmp/tail.wav")
    "${SOX[@]}" "${parts[@]}" "${FMT[@]}" "$tmp/clean.wav"
    if [[ $noise == none ]]; then
        mv "$tmp/clean.wav" "$out/$name.wav"
    else
        local kind=${noise%%:*} snr=${noise#*:} len srms nrms vol
        len=$(soxi -D "$tmp/clean.wav")
        "${SOX[@]}" -n "${FMT[@]}" "$tmp/noise.wav" synth "$len" "${kind}noise" gain -n -20
        srms=$(rms "$sp")
        nrms=$(rms "$tmp/noise.wav")
        vol=$(awk "BEGIN{ printf \"%.6f\", $srms / 10^($snr/20) / $nrms }")
        "${SOX[@]}" -m "$tmp/clean.wav" -v "$vol" "$tmp/noise.wav" "${FMT[@]}" "$out/$name.wav"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$class" "$lang" "$voice" \
        "$speed" "$pitch" "$noise" "$lead" "$((lead + speech_ms))" "$beep_hz" "$beep_end" \
        "$(ms "$out/$name.wav")" >>"$out/manifest.tsv"
}

: >"$out/manifest.tsv"
noises=(none white:20 pink:15 white:10)

en_machine=(
    "Hi, you have reached Mary. I can't take your call right now. Please leave a message after the beep."
    "Thank you for calling. Nobody is available to take your call. Please leave your name and number after the tone."
    "Hello, this is John. Leave me a message and I will call you back as soon as I can."
)
zh_machine=(
    "您好，您拨打的用户暂时无法接听，请在提示音后留言。"
    "你好，我现在不方便接电话，请在嘀声后留言，我会尽快回复你。"
    "您好，这里是王先生的语音信箱，请留下您的姓名和电话。"
)
en_human=("Hello?" "Hi, hello?" "Yes?")
zh_human=("喂？" "喂，你好？" "你好？")
en_voices=("en-us 150 50" "en-gb+f3 175 65" "en-us+m3 135 35" "en-gb 165 45")
zh_voices=("$zh_voice 150 50" "$zh_voice+f2 170 65" "$zh_voice+m3 135 35" "$zh_voice 160 45")
beeps=("1000 500" "440 800" "850 300" "1400 400")

i=0
for lang in en zh; do
    declare -n mt="${lang}_machine" ht="${lang}_human" vs="${lang}_voices"
    for k in 0 1; do
        for t in 0 1 2; do
            v=(${vs[$(((t + 2 * k) % 4))]})
            render "$lang-machine-$t$k" machine "$lang" "${v[0]}" "${v[1]}" "${v[2]}" \
                "${noises[$(((t + k) % 4))]}" $((200 + 150 * t)) "${mt[$t]}" \
                ${beeps[$(((t + 3 * k) % 4))]} 1000
            v=(${vs[$(((t + 2 * k + 1) % 4))]})
            render "$lang-human-$t$k" human "$lang" "${v[0]}" "${v[1]}" "${v[2]}" \
                "${noises[$(((t + k + 1) % 4))]}" $((300 + 200 * t)) "${ht[$t]}" 0 0 4000
            i=$((i + 2))
        done
    done
    unset -n mt ht vs
done
echo "corpus: $i files in $out" >&2
