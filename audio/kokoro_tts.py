"""Neural prompt synthesis for audio/generate.sh: Kokoro-82M v1.0 (int8 ONNX) via kokoro-onnx.

Called only by generate.sh, inside the virtualenv it creates (see audio/README.md,
"Speech engine"). Reads a job list and writes one 24 kHz mono WAV per job; generate.sh
then applies the same post-processing as for espeak-ng (8 kHz, trim, pad, -3 dBFS).

    kokoro_tts.py MODEL.onnx VOICES.npz JOBS.tsv

JOBS.tsv lines: out.wav <TAB> lang (en|zh) <TAB> voice <TAB> speed <TAB> text <TAB> spoken

Phonemes:
* en: espeak-ng IPA (kokoro-onnx's tokenizer, with the espeak-ng library and data of the
  espeakng-loader wheel). The optional `spoken` column of en.tsv is English respelling
  (e.g. "A.M."), so it is used instead of `text` when present.
* zh: misaki's Mandarin G2P (jieba word segmentation, pypinyin readings, cn2an for
  digits), the front end Kokoro v1.0's Mandarin voices were trained with. The `spoken`
  column of zh.tsv is written for espeak-ng: `text` with some characters replaced by
  pinyin with a tone digit (e.g. 有kong4时) to fix a polyphone. Those readings are taken
  over here as per-character overrides, so one column fixes both engines. Latin words
  inside Mandarin text (the shop name "Acme") are read with the English phonemizer.
"""

import re
import sys
import wave

import jieba
import numpy as np
import onnxruntime as ort
from kokoro_onnx import Kokoro
from misaki.zh import ZHG2P
from pypinyin import Style, lazy_pinyin
import cn2an

HANZI = re.compile(r"[\u4e00-\u9fff]")
PINYIN_HINT = re.compile(r"[a-z]+[1-5]")


def zh_overrides(text: str, spoken: str) -> dict[int, str]:
    """Per-character pinyin (TONE3) of `text` forced by the espeak hints in `spoken`.

    `spoken` is `text` with single hanzi replaced by pinyin+tone digit; anything else
    differing is an error, so a stale hint is noticed rather than silently ignored.
    """
    if not spoken:
        return {}
    out: dict[int, str] = {}
    i = j = 0
    while i < len(text) and j < len(spoken):
        if text[i] == spoken[j]:
            i += 1
            j += 1
            continue
        m = PINYIN_HINT.match(spoken, j)
        if m is None or not HANZI.match(text[i]):
            raise ValueError(f"spoken column does not align with text at {text[i:]!r} / {spoken[j:]!r}")
        out[i] = m.group(0)
        i += 1
        j = m.end()
    if i != len(text) or j != len(spoken):
        raise ValueError(f"spoken column does not align with text: {text!r} / {spoken!r}")
    return out


def zh_phonemes(text: str, spoken: str, en_phonemes) -> str:
    """Kokoro phonemes for Mandarin text, following misaki's (v1.0) ZHG2P.legacy_call."""
    forced = zh_overrides(text, spoken)
    # Segment on the original text so the override offsets stay valid; digits and
    # punctuation of the non-hanzi runs are converted per run below.
    parts = []
    for m in re.finditer(r"[\u4e00-\u9fff]+|[^\u4e00-\u9fff]+", text):
        seg, base = m.group(0), m.start()
        if HANZI.match(seg):
            pos = base
            for w in jieba.lcut(seg, cut_all=False):
                pys = lazy_pinyin(w, style=Style.TONE3, neutral_tone_with_five=True)
                if len(pys) != len(w):
                    raise ValueError(f"pypinyin gave {pys} for {w!r}")
                pys = [forced.get(pos + k, py) for k, py in enumerate(pys)]
                parts.append("".join(ZHG2P.py2ipa(py) for py in pys))
                pos += len(w)
        else:
            rest = ZHG2P.map_punctuation(cn2an.transform(seg, "an2cn"))
            # Digits became hanzi: read them as Mandarin.
            if HANZI.search(rest):
                parts.append(zh_phonemes(rest, "", en_phonemes))
                continue
            for latin, other in re.findall(r"([A-Za-z][A-Za-z' -]*[A-Za-z]|[A-Za-z])|([^A-Za-z]+)", rest):
                parts.append(en_phonemes(latin) if latin else other)
    # Words are separated by spaces; punctuation sticks to the word before it, as in misaki.
    joined = " ".join(parts).replace(chr(815), "")
    joined = re.sub(r"\s+([,.;:!?])", r"\1", joined)
    return re.sub(r"\s+", " ", joined).strip()


def zh_utterance(text: str, spoken: str, en_phonemes) -> str:
    """zh_phonemes of a whole prompt, ending in punctuation.

    Without a final stop, Kokoro's Mandarin voices wrap a one-syllable input (四, 日, 和)
    in stray noise bursts; with it they say the syllable alone.
    """
    ph = zh_phonemes(text, spoken, en_phonemes)
    return ph if ph.endswith((".", "!", "?")) else ph + "."


def drop_detached_noise(audio: np.ndarray, rate: int) -> np.ndarray:
    """Cut a noise burst that is separated from the speech by near-silence (Mandarin only).

    Short Mandarin inputs may still begin or end with a faint burst, then >= 80 ms of
    silence, then the speech; sox's trim cannot remove it as the burst is above its
    threshold. Mandarin syllables have no consonant clusters, so a silent gap before the
    first loud frame (or after the last) never splits a syllable.
    """
    hop = rate // 100  # 10 ms frames
    n = len(audio) // hop
    if n == 0:
        return audio
    rms = np.sqrt((audio[: n * hop].reshape(n, hop) ** 2).mean(axis=1))
    loud = np.flatnonzero(rms > 10 ** (-30 / 20))
    if loud.size == 0:
        return audio
    quiet = rms < 10 ** (-60 / 20)
    gap = 8  # frames of near-silence that detach a burst

    def last_gap_end(lo: int, hi: int):
        run = 0
        for i in range(hi - 1, lo - 1, -1):
            run = run + 1 if quiet[i] else 0
            if run >= gap:
                return i + run
        return None

    start, end = 0, n
    g = last_gap_end(0, loud[0])
    if g is not None:
        start = g
    run = 0
    for i in range(loud[-1] + 1, n):
        run = run + 1 if quiet[i] else 0
        if run >= gap:
            end = i - run + 1
            break
    return audio[start * hop : end * hop if end < n else len(audio)]


def write_wav(path: str, audio: np.ndarray, rate: int) -> None:
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2")
    with wave.open(path, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())


def main() -> int:
    model, voices, jobs = sys.argv[1:4]
    opts = ort.SessionOptions()
    # A fixed thread count keeps the float reductions, and so the output bytes, the same
    # from run to run on one machine.
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
    kokoro = Kokoro.from_session(session, voices)

    def en_phonemes(s: str) -> str:
        return kokoro.tokenizer.phonemize(s, "en-us")

    with open(jobs, encoding="utf-8") as f:
        lines = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    for n, fields in enumerate(lines, 1):
        fields += [""] * (6 - len(fields))
        out, lang, voice, speed, text, spoken = fields[:6]
        if lang == "en":
            phonemes = en_phonemes(spoken or text)
        elif lang == "zh":
            phonemes = zh_utterance(text, spoken, en_phonemes)
        else:
            raise ValueError(f"unknown language {lang!r}")
        audio, rate = kokoro.create(phonemes, voice=voice, speed=float(speed), is_phonemes=True)
        if lang == "zh":
            audio = drop_detached_noise(np.asarray(audio, dtype=np.float32), rate)
        if len(audio) == 0:
            raise ValueError(f"no audio for {text!r}")
        write_wav(out, audio, rate)
        print(f"[{n}/{len(lines)}] {lang} {voice}: {text} -> {phonemes}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
