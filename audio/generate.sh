#!/usr/bin/env bash
# Regenerate every switchboard audio asset from text / synthesis.
#
#   audio/prompts/en.tsv  -> audio/en/NAME.wav   (espeak-ng voice en-us)
#   audio/prompts/zh.tsv  -> audio/zh/NAME.wav   (espeak-ng Mandarin voice)
#   audio/prompts/bilingual.tsv -> audio/{zh,en}/NAME.wav (Mandarin half, then English)
#   audio/moh.wav                                (synthesized music on hold)
#   audio/test/greeting-machine.wav, greeting-human.wav (test fixtures)
#
# Output format of every file: WAV, 8000 Hz, mono, 16-bit signed PCM.
# Speech is trimmed of leading/trailing silence, padded with 0.05 s of
# silence at the end and normalised to -3 dBFS peak.
#
# Idempotent: running it twice yields byte-identical files (sox -R, no dither).
# WAVs in audio/en and audio/zh that are no longer listed in a TSV are removed.
#
# Usage: audio/generate.sh            (from anywhere)
# Env:   EN_VOICE, ZH_VOICE, EN_SPEED, ZH_SPEED override the defaults below.
set -euo pipefail

AUDIO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROMPTS_DIR="$AUDIO_DIR/prompts"

EN_VOICE="${EN_VOICE:-en-us}"
EN_SPEED="${EN_SPEED:-150}"
# The plain "cmn" voice of espeak-ng 1.51 (Debian bookworm) is broken: its
# dictionary yields pinyin that is then read with *English* rules ("huan five
# ying two ..."). "cmn-latn-pinyin" is the same Mandarin voice with working
# pinyin handling (Latin words such as "Acme" are still read in English), so it
# is preferred; "cmn" is the fallback when it does not exist.
ZH_VOICE="${ZH_VOICE:-}"
ZH_SPEED="${ZH_SPEED:-150}"

RATE=8000
FMT=(-r "$RATE" -c 1 -b 16 -e signed-integer)
# -R: repeatable (fixed seeds), -D: no dither => deterministic output bytes.
SOX=(sox -R -D -V1)

log() { printf '%s\n' "$*" >&2; }

# --------------------------------------------------------------------------
# Dependencies
# --------------------------------------------------------------------------
PACKAGES=(espeak-ng sox libsox-fmt-base)

missing_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        if command -v dpkg-query >/dev/null 2>&1; then
            dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
                || missing+=("$p")
        fi
    done
    command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
    command -v sox >/dev/null 2>&1 || missing+=(sox)
    # de-duplicate
    printf '%s\n' "${missing[@]}" | awk 'NF && !seen[$0]++'
}

ensure_deps() {
    local missing
    mapfile -t missing < <(missing_packages)
    ((${#missing[@]} == 0)) && return 0
    log "Installing missing packages: ${missing[*]}"
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || { log "need root (or sudo) to install ${missing[*]}"; exit 1; }
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    local apt=("${sudo[@]}" apt-get -o DPkg::Lock::Timeout=300)
    if ! "${apt[@]}" install -y --no-install-recommends "${PACKAGES[@]}"; then
        log "apt-get install failed; running apt-get update and retrying"
        "${apt[@]}" update
        "${apt[@]}" install -y --no-install-recommends "${PACKAGES[@]}"
    fi
}

voice_exists() {
    # espeak-ng --voices=LANG lists voices whose language matches LANG; match
    # the exact language column or the voice file name.
    espeak-ng --voices="$1" 2>/dev/null | awk -v v="$1" 'NR > 1 && ($2 == v || $5 ~ ("/" v "$")) { found = 1 } END { exit !found }'
}

pick_zh_voice() {
    if [[ -n $ZH_VOICE ]]; then
        voice_exists "$ZH_VOICE" && { echo "$ZH_VOICE"; return; }
        log "requested ZH_VOICE=$ZH_VOICE not available"
        return 1
    fi
    local v
    for v in cmn-latn-pinyin cmn; do
        voice_exists "$v" && { echo "$v"; return; }
    done
    return 1
}

# --------------------------------------------------------------------------
# Rendering helpers
# --------------------------------------------------------------------------
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# speak VOICE SPEED TEXT OUT [PAD_SECONDS]
# Synthesizes TEXT, converts to 8 kHz mono s16, trims silence at both ends,
# pads PAD_SECONDS (default 0.05) of silence at the end, normalises to -3 dBFS.
speak() {
    local voice=$1 speed=$2 text=$3 out=$4 pad=${5:-0.05}
    local txt="$TMP/text.txt" raw="$TMP/raw.wav" tmpout="$TMP/out.wav"
    printf '%s\n' "$text" >"$txt"
    espeak-ng -v "$voice" -s "$speed" -f "$txt" -w "$raw"
    "${SOX[@]}" "$raw" "${FMT[@]}" "$tmpout" \
        rate -v "$RATE" \
        silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse \
        pad 0 "$pad" \
        gain -n -3
    mkdir -p "$(dirname "$out")"
    mv -f "$tmpout" "$out"
}

# render_tsv LANG VOICE SPEED USE_SPOKEN : renders prompts/LANG.tsv into LANG/
# TSV columns: name<TAB>text[<TAB>spoken]. When USE_SPOKEN=1 and the optional
# third column is present it is fed to espeak-ng instead of the text (used for
# pronunciation fixes such as inline pinyin, which only cmn-latn-pinyin reads).
render_tsv() {
    local lang=$1 voice=$2 speed=$3 use_spoken=$4
    local tsv="$PROMPTS_DIR/$lang.tsv" outdir="$AUDIO_DIR/$lang"
    [[ -f $tsv ]] || { log "missing $tsv"; exit 1; }
    mkdir -p "$outdir"
    local -A seen=()
    local name text spoken n=0 lineno=0
    while IFS=$'\t' read -r name text spoken || [[ -n $name ]]; do
        lineno=$((lineno + 1))
        [[ -z $name || $name == \#* ]] && continue
        if [[ ! $name =~ ^[a-z0-9][a-z0-9-]*$ ]]; then
            log "$tsv:$lineno: bad prompt name '$name'"; exit 1
        fi
        if [[ -z $text ]]; then
            log "$tsv:$lineno: empty text for '$name'"; exit 1
        fi
        if [[ -n ${seen[$name]:-} ]]; then
            log "$tsv:$lineno: duplicate prompt name '$name'"; exit 1
        fi
        seen[$name]=1
        if [[ $use_spoken == 1 && -n $spoken ]]; then
            text=$spoken
        fi
        speak "$voice" "$speed" "$text" "$outdir/$name.wav"
        n=$((n + 1))
    done <"$tsv"
    # Remove stale files so the folder mirrors the TSV exactly.
    local f base
    for f in "$outdir"/*.wav; do
        [[ -e $f ]] || continue
        base=$(basename "$f" .wav)
        if [[ -z ${seen[$base]:-} ]]; then
            log "removing stale $f"
            rm -f "$f"
        fi
    done
    log "$lang: $n prompts (voice $voice, speed $speed)"
}

# --------------------------------------------------------------------------
# Music on hold: ~20 s of gentle plucked arpeggios over a soft sine pad,
# chord progression C - Am - F - G (x2), F - G, peak -12 dBFS.
# Note numbers are semitones relative to A4 (440 Hz), sox "%N" syntax.
# --------------------------------------------------------------------------
render_moh() {
    local out="$AUDIO_DIR/moh.wav" d="$TMP/moh"
    mkdir -p "$d"
    # bar: "pad-notes|melody-notes"; each bar is 2 s (4 melody notes x 0.5 s)
    local bars=(
        "-9 -5 -2|3 7 10 7"      # C
        "-12 -9 -5|0 3 7 3"      # Am
        "-16 -12 -9|-4 0 3 8"    # F
        "-14 -10 -7|-2 2 5 2"    # G
        "-9 -5 -2|15 10 7 3"     # C
        "-12 -9 -5|12 7 3 0"     # Am
        "-16 -12 -9|8 3 0 -4"    # F
        "-14 -10 -7|10 5 2 -2"   # G
        "-16 -12 -9|-4 0 3 0"    # F
        "-14 -10 -7|-2 2 5 -2"   # G -> loops back to C
    )
    local i=0 bar pad mel note parts=()
    for bar in "${bars[@]}"; do
        pad=${bar%%|*}
        mel=${bar#*|}
        local synth=() mfiles=() j=0
        for note in $pad; do synth+=(sine "%$note"); done
        # soft 3-note pad, 2 s, gentle fade in/out, mixed to mono
        "${SOX[@]}" -n "${FMT[@]}" "$d/pad$i.wav" synth 2 "${synth[@]}" \
            remix - fade q 0.3 2 0.5 gain -n -20
        for note in $mel; do
            "${SOX[@]}" -n "${FMT[@]}" "$d/m$i-$j.wav" synth 0.5 pluck "%$note" \
                fade q 0.005 0.5 0.15 gain -n -8
            mfiles+=("$d/m$i-$j.wav")
            j=$((j + 1))
        done
        "${SOX[@]}" "${mfiles[@]}" "$d/mel$i.wav"
        "${SOX[@]}" -m "$d/pad$i.wav" "$d/mel$i.wav" "${FMT[@]}" "$d/bar$i.wav"
        parts+=("$d/bar$i.wav")
        i=$((i + 1))
    done
    "${SOX[@]}" "${parts[@]}" "${FMT[@]}" "$d/all.wav" highpass 80 lowpass 2000 gain -n -12
    mv -f "$d/all.wav" "$out"
    log "moh: $out"
}

# --------------------------------------------------------------------------
# Test fixtures (answering-machine detection etc.)
# --------------------------------------------------------------------------
render_tests() {
    local t="$AUDIO_DIR/test" d="$TMP/test"
    mkdir -p "$t" "$d"
    # Answering machine: greeting, 1 s silence, 1000 Hz beep of 0.5 s.
    speak "$EN_VOICE" "$EN_SPEED" \
        "Hi, you have reached the Smith family. We cannot come to the phone right now. Please leave a message after the tone, and we will get back to you as soon as possible." \
        "$d/machine-speech.wav" 1
    "${SOX[@]}" -n "${FMT[@]}" "$d/beep.wav" synth 0.5 sine 1000 fade 0.005 0.5 0.005 gain -n -3
    "${SOX[@]}" "$d/machine-speech.wav" "$d/beep.wav" "${FMT[@]}" "$d/machine.wav"
    mv -f "$d/machine.wav" "$t/greeting-machine.wav"
    # Human: "Hello?" then 2 s of silence.
    speak "$EN_VOICE" "$EN_SPEED" "Hello?" "$t/greeting-human.wav" 2
    log "test: greeting-machine.wav greeting-human.wav"
}

# --------------------------------------------------------------------------
# Bilingual prompts (prompts/bilingual.tsv: name<TAB>Mandarin<TAB>English): the Mandarin
# half in the Mandarin voice, 0.3 s of silence, the English half in the English voice;
# written to both audio/zh/NAME.wav and audio/en/NAME.wav (the language choice is played
# before the call's language is known). Runs after render_tsv, which would remove them.
# --------------------------------------------------------------------------
render_bilingual() {
    local zh_voice=$1 tsv="$PROMPTS_DIR/bilingual.tsv" name zh_text en_text
    [[ -f $tsv ]] || return 0
    while IFS=$'\t' read -r name zh_text en_text || [[ -n $name ]]; do
        [[ -z $name || $name == \#* ]] && continue
        speak "$zh_voice" "$ZH_SPEED" "$zh_text" "$TMP/bi-zh.wav" 0.3
        speak "$EN_VOICE" "$EN_SPEED" "$en_text" "$TMP/bi-en.wav"
        "${SOX[@]}" "$TMP/bi-zh.wav" "$TMP/bi-en.wav" "${FMT[@]}" "$AUDIO_DIR/zh/$name.wav"
        cp -f "$AUDIO_DIR/zh/$name.wav" "$AUDIO_DIR/en/$name.wav"
        log "bilingual: $name"
    done <"$tsv"
}

# --------------------------------------------------------------------------
main() {
    ensure_deps
    voice_exists "$EN_VOICE" || { log "espeak-ng voice $EN_VOICE not available"; exit 1; }
    render_tsv en "$EN_VOICE" "$EN_SPEED" 1
    local zh
    if zh=$(pick_zh_voice); then
        # The pinyin hints in zh.tsv only work with the latin-as-pinyin voice.
        render_tsv zh "$zh" "$ZH_SPEED" "$([[ $zh == cmn-latn-pinyin ]] && echo 1 || echo 0)"
    else
        log "WARNING: no Mandarin espeak-ng voice (cmn-latn-pinyin / cmn); audio/zh not regenerated"
    fi
    if [[ -n ${zh:-} ]]; then
        render_bilingual "$zh"
    fi
    render_moh
    render_tests
}

main "$@"
