"""Neural prompt synthesis for audio/generate.sh: Kokoro-82M v1.0 (int8 ONNX) via kokoro-onnx.

Called only by generate.sh, inside the virtualenv it creates (see audio/README.md,
"Speech engine"). Reads a job list and writes one 24 kHz mono WAV per job; generate.sh
then applies the same post-processing as for espeak-ng (8 kHz, trim, pad, -3 dBFS).

    kokoro_tts.py MODEL.onnx VOICES.npz JOBS.tsv
    kokoro_tts.py --self-test        (checks the Mandarin readings; no model needed)

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
  Tone sandhi (third tone, 一, 不) is applied to pypinyin's citation tones, then the
  neutral tones (谢谢 xie4 xie5, 消息 xi5, particles, suffixes); see `tone_sandhi` and
  `neutral_tones` for the rules and their scope. A hinted character is spoken exactly as
  hinted (the hint is the tone said, e.g. chu2 in 处理), sandhi never changes it.
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


# Characters of spelled-out numbers: 一 after one of them, or before a digit, is part of
# a number (十一, 二十一, 一二三) and keeps its first tone.
NUMERALS = frozenset("零〇一二两三四五六七八九十百千万亿")
DIGITS = frozenset("零〇一二三四五六七八九")
# 一 before these is a date or an ordinal (一月 January, 一号/一日 the 1st) and after
# these a weekday or an ordinal (星期一, 周一, 第一): first tone.
YI_DATE_NEXT = frozenset("月号日")
YI_ORDINAL_PREV = frozenset("第期周")


def tone_of(py: str) -> str:
    return py[-1] if py[-1:].isdigit() else "5"


def with_tone(py: str, tone: str) -> str:
    return (py[:-1] if py[-1:].isdigit() else py) + tone


def citation_tone(ch: str, py: str) -> str:
    """The tone of `py` before sandhi; a neutral tone is looked up as the character alone."""
    t = tone_of(py)
    if t == "5":
        t = tone_of(lazy_pinyin(ch, style=Style.TONE3, neutral_tone_with_five=True)[0])
    return t


# Neutral tone (qingsheng, tone 5: misaki writes no tone contour for it, so the voice
# says the syllable short and unstressed). pypinyin already gives tone 5 to some
# (我们 men5, 什么 me5, 这个 ge5, 桌子 zi5, 来了 le5, 吗 ma5), others keep their citation
# tone in its dictionary (谢谢 xie4 xie4, 时候 hou4, 东西 xi1, 客气 qi4, 清楚 chu3).
#
# Whole jieba words: one character per syllable, "5" = neutral, a digit = that tone,
# "." = keep the reading made so far (sandhi included).
NEUTRAL_WORDS = {
    # Reduplicated verbs: the second syllable is neutral (3-3 sandhi came first: 想想
    # xiang2 xiang5, 等等 deng2 deng5 "wait a moment").
    **{w: ".5" for w in ("谢谢", "看看", "想想", "试试", "听听", "说说", "问问", "等等", "走走",
                         "找找", "查查", "聊聊", "坐坐", "歇歇", "猜猜", "尝尝", "算算")},
    # Reduplicated kinship terms: neutral second syllable; a third tone before it stays a
    # (half) third tone, no sandhi (姐姐 jie3 jie5, 奶奶 nai3 nai5).
    **{w: ".5" for w in ("爸爸", "妈妈", "哥哥", "弟弟", "妹妹", "爷爷", "叔叔", "伯伯", "舅舅",
                         "婶婶", "公公", "婆婆")},
    **{w: "35" for w in ("姐姐", "奶奶", "姥姥", "宝宝")},
    # Lexical neutral tones (Xiandai Hanyu Cidian), the common ones.
    **{w: ".5" for w in ("时候", "东西", "客气", "清楚", "消息", "朋友", "先生", "名字", "事情",
                         "意思", "麻烦", "明白", "知道", "认识", "告诉", "喜欢", "衣服", "地方",
                         "关系", "豆腐", "舒服", "漂亮", "热闹", "休息", "商量", "打听", "打扮",
                         "收拾", "张罗", "暖和", "凉快", "便宜", "厉害", "聪明", "糊涂", "窗户",
                         "石头", "木头", "骨头", "舌头", "馒头", "念头", "里头", "外头", "前头",
                         "后头", "上头", "觉得", "记得", "值得", "懂得", "晓得", "舍得", "免得",
                         "什么", "怎么", "这么", "那么", "多么", "要么", "我们", "你们", "他们",
                         "她们", "它们", "咱们", "人们")},
    # Locatives 上/下/里 after the place (这里 zhe4 li5; 哪里 na2 li5 after 3-3 sandhi).
    **{w: ".5" for w in ("这里", "那里", "哪里", "家里", "心里", "手里", "店里", "城里", "屋里",
                         "晚上", "早上", "身上", "路上", "桌上", "地上", "天上", "楼上", "楼下",
                         "底下", "乡下", "这儿", "那儿")},
}
# Particles, neutral when they stand alone (a one-character jieba word) or end the run:
# 吗 呢 吧 啊 呀 啦 嘛. Words that end in one of them without it being a particle:
PARTICLES = frozenset("吗呢吧啊呀啦嘛")
NOT_PARTICLE_WORDS = frozenset(("酒吧", "网吧", "贴吧", "吧台"))
# Structural 的/得/地, aspect 了/着, suffix 们, 么: neutral in these readings only (的确
# di2, 目的 di4, 了解 liao3, 着急 zhao2 keep theirs); 得 when not word-initial (得到 de2)
# except in words where it is a full syllable.
NEUTRAL_READINGS = {"的": "de", "们": "men", "么": "me", "了": "le", "着": "zhe"}
DE_FULL_WORDS = frozenset(("获得", "取得", "赢得", "求得", "难得", "心得", "所得", "应得", "习得",
                           "博得", "自得", "不得", "非得", "总得"))
# Noun suffix 子 (桌子 zhuo1 zi5); words where 子 is a full morpheme keep zi3.
ZI_FULL_WORDS = frozenset(("电子", "原子", "分子", "质子", "中子", "粒子", "因子", "孔子", "孟子",
                           "老子", "男子", "女子", "君子", "天子", "学子", "弟子", "赤子", "游子",
                           "才子", "瓜子", "莲子", "棋子", "鱼子", "卵子", "精子", "种子"))
# 个 as a measure word after a numeral or demonstrative (一个 yi2 ge5, 这个, 五个).
GE_BEFORE = frozenset("零〇一二两三四五六七八九十百千万亿这那哪几每某整")


def neutral_pattern(word: str) -> str | None:
    """NEUTRAL_WORDS' pattern for a jieba word, also when the word ends in a listed one
    (jieba keeps 好消息, 在这里 whole): the longest listed ending, padded with keeps."""
    for n in range(len(word), 1, -1):
        p = NEUTRAL_WORDS.get(word[-n:])
        if p is not None:
            return "." * (len(word) - n) + p
    return None


def neutral_tones(words: list[str], out: list[str], fixed: frozenset[int]) -> list[str]:
    """Neutral tones over one phrase run, on the readings after sandhi.

    `words` is jieba's segmentation of the run, `out` its flat TONE3 readings; hinted
    offsets (`fixed`) are left alone. Rules, first match wins:
    * a word of NEUTRAL_WORDS: its pattern (谢谢 xie4 xie5, 姐姐 jie3 jie5, 这里 zhe4 li5);
    * a particle 吗呢吧啊呀啦嘛 standing alone or ending the run (你好吗 ma5);
    * 的/们/么/了/着 read de/men/me/le/zhe (not 的确 di2, 了解 liao3, 着急 zhao2);
    * 得 read de, not word-initial (跑得快, 说得好), outside DE_FULL_WORDS (获得 de2);
    * 地 as a word of its own between a longer word and more text (慢慢地走 de5);
    * 子 ending a two-character word (桌子 zi5), zi3 in ZI_FULL_WORDS (电子);
    * 个 after a numeral or demonstrative (一个 yi2 ge5, 五个 wu3 ge5).
    """
    chars = "".join(words)
    out = list(out)
    pos = 0
    for n, w in enumerate(words):
        pattern = neutral_pattern(w)
        for k, ch in enumerate(w):
            i = pos + k
            if i in fixed:
                continue
            base = out[i][:-1] if out[i][-1:].isdigit() else out[i]
            prev = chars[i - 1] if i > 0 else ""
            tone = None
            if pattern is not None:
                tone = None if pattern[k] == "." else pattern[k]
            elif ch in PARTICLES and (len(w) == 1 or i + 1 == len(chars)) and w not in NOT_PARTICLE_WORDS:
                tone = "5"
            elif NEUTRAL_READINGS.get(ch) == base:
                tone = "5"
            elif ch == "得" and base == "de" and k > 0 and w not in DE_FULL_WORDS:
                tone = "5"
            elif ch == "得" and base == "de" and len(w) == 1 and i > 0:
                tone = "5"
            elif ch == "地" and len(w) == 1 and n > 0 and len(words[n - 1]) >= 2 and i + 1 < len(chars):
                out[i] = "de5"  # pypinyin reads it di
            elif ch == "子" and len(w) == 2 and k == 1:
                tone = "3" if w in ZI_FULL_WORDS else "5"  # pypinyin has 电子 zi5 too
            elif ch == "个" and prev in GE_BEFORE:
                tone = "5"
            if tone:
                out[i] = with_tone(out[i], tone)
        pos += len(w)
    return out


def tone_sandhi(words: list[str], pys: list[list[str]], fixed: frozenset[int] = frozenset()) -> list[list[str]]:
    """Mandarin tone sandhi over one phrase run (hanzi between punctuation / Latin words).

    `words` is jieba's segmentation of the run, `pys` their TONE3 citation readings,
    `fixed` the run offsets of hinted characters, which are never changed.

    * 不: bu2 before a fourth tone, else bu4; a neutral bu5 from pypinyin stays.
    * 一: yi1 when last in the run, ending a longer word (统一), in a number (十一,
      一二三), a date or an ordinal (一月, 一号, 第一, 星期一); yi5 between a reduplicated
      verb (看一看); else yi2 before a fourth tone, yi4 before the other tones (一天 yi4).
    * Third tone: 3-3 becomes 2-3, cyclically as in Standard Chinese phonology: first
      inside each jieba word (展览馆 zhan2 lan2 guan3, 你好 ni2 hao3), then across word
      boundaries from right to left on the surface tones (我/很好: wo3 hen2 hao3 since
      很 is already 2; 两百 liang2 bai3; 这里/有 li2 you3, made li5 by the neutral-tone
      pass that follows, see `neutral_tones`).

    Scope: the whole phrase run, not each jieba word: 一/不 depend on the next word's tone
    (不/满意, 一/分钟) and third-tone sandhi applies across words within a phrase in
    connected speech (很/好, 给/我们). It stops at punctuation and Latin words, where the
    voice pauses or the syllable is not Mandarin. pypinyin's own `tone_sandhi=True` is
    not used: it works per segment of pypinyin's segmenter, which is a phrase-dictionary
    entry or else one character (so 一天, 老鼠, 很好 are left alone), its third-tone rule
    counts only the last run of third tones of its input (wrong on a phrase), and it
    has no date or ordinal case (一月 becomes yi2 yue4).
    """
    chars = "".join(words)
    flat = [py for w in pys for py in w]
    if len(flat) != len(chars):
        raise ValueError(f"pinyin {flat} does not match {chars!r}")
    word_of: list[int] = []
    for k, w in enumerate(words):
        word_of += [k] * len(w)
    cite = [citation_tone(c, py) for c, py in zip(chars, flat)]
    out = list(flat)

    def last_in_word(i: int) -> bool:
        return i + 1 == len(chars) or word_of[i + 1] != word_of[i]

    for i, ch in enumerate(chars):
        if i in fixed or ch not in "一不":
            continue
        prev = chars[i - 1] if i > 0 else ""
        nxt = chars[i + 1] if i + 1 < len(chars) else ""
        if ch == "不":
            if tone_of(flat[i]) == "5":
                continue
            out[i] = with_tone(flat[i], "2" if nxt and cite[i + 1] == "4" else "4")
            continue
        if not nxt:
            tone = "1"
        elif prev and prev == nxt and prev not in NUMERALS:
            tone = "5"
        elif prev in NUMERALS or prev in YI_ORDINAL_PREV or nxt in DIGITS or nxt in YI_DATE_NEXT:
            tone = "1"
        elif last_in_word(i) and len(words[word_of[i]]) > 1:
            tone = "1"
        else:
            tone = "2" if cite[i + 1] == "4" else "4"
        out[i] = with_tone(flat[i], tone)

    surface = [tone_of(py) for py in out]

    def lower(i: int) -> None:
        if i not in fixed:
            out[i] = with_tone(out[i], "2")
            surface[i] = "2"

    starts = [0]
    for w in words[:-1]:
        starts.append(starts[-1] + len(w))
    # Inside each word, on the citation tones: every third tone before a third tone.
    for s, w in zip(starts, words):
        for i in range(s, s + len(w) - 1):
            if surface[i] == "3" and tone_of(out[i + 1]) == "3":
                lower(i)
    # Across word boundaries, right to left, on the tones as changed so far.
    for s in reversed(starts[1:]):
        if surface[s - 1] == "3" and surface[s] == "3":
            lower(s - 1)

    # Neutral tones last: they never feed the rules above (一个 yi2 ge5 keeps 个's citation
    # fourth tone for 一; 想想 xiang2 xiang5 and 哪里 na2 li5 had 3-3 sandhi first).
    out = neutral_tones(words, out, fixed)

    result, k = [], 0
    for w in words:
        result.append(out[k : k + len(w)])
        k += len(w)
    return result


def zh_run_pinyin(run: str, forced: dict[int, str]) -> list[list[str]]:
    """TONE3 readings of one hanzi run, per jieba word, hints applied, sandhi done."""
    words = jieba.lcut(run, cut_all=False)
    pys, pos = [], 0
    for w in words:
        p = lazy_pinyin(w, style=Style.TONE3, neutral_tone_with_five=True)
        if len(p) != len(w):
            raise ValueError(f"pypinyin gave {p} for {w!r}")
        pys.append([forced.get(pos + k, py) for k, py in enumerate(p)])
        pos += len(w)
    return tone_sandhi(words, pys, frozenset(forced))


def zh_pinyin(text: str, spoken: str = "") -> str:
    """The readings zh_phonemes speaks for the hanzi of `text`, space-separated (for tests)."""
    forced = zh_overrides(text, spoken)
    out = []
    for m in re.finditer(r"[\u4e00-\u9fff]+", text):
        local = {i - m.start(): py for i, py in forced.items() if m.start() <= i < m.end()}
        out += [py for w in zh_run_pinyin(m.group(0), local) for py in w]
    return " ".join(out)


# (text, spoken, expected readings): sandhi cases, most of them from prompts/zh.tsv.
SELF_TEST = [
    ("你好", "", "ni2 hao3"),
    ("您好。", "", "nin2 hao3"),
    ("不是", "", "bu2 shi4"),
    ("不好", "", "bu4 hao3"),
    ("我们将不会再给您打电话。", "", "wo3 men5 jiang1 bu2 hui4 zai4 gei3 nin2 da3 dian4 hua4"),
    ("一个", "", "yi2 ge5"),
    ("一天", "", "yi4 tian1"),
    ("一起", "", "yi4 qi3"),
    ("一月", "", "yi1 yue4"),
    ("十一月", "", "shi2 yi1 yue4"),
    ("一号", "", "yi1 hao4"),
    ("二十一号", "", "er4 shi2 yi1 hao4"),
    ("星期一", "", "xing1 qi1 yi1"),
    ("第一", "", "di4 yi1"),
    ("统一", "", "tong3 yi1"),
    ("看一看", "", "kan4 yi5 kan4"),
    ("请按一。", "", "qing3 an4 yi1"),
    ("我们会在下一个工作日上午给您回电。", "",
     "wo3 men5 hui4 zai4 xia4 yi2 ge5 gong1 zuo4 ri4 shang4 wu2 gei3 nin2 hui2 dian4"),
    ("请为本次服务打分，一分到五分，五分为最满意。", "请为本次服wu4打分，一分到五分，五分wei2最满意。",
     "qing3 wei4 ben3 ci4 fu2 wu4 da3 fen1 yi4 fen1 dao4 wu3 fen1 wu3 fen1 wei2 zui4 man3 yi4"),
    ("两百三十元", "", "liang2 bai3 san1 shi2 yuan2"),
    ("我们这里有您的订单记录。", "", "wo3 men5 zhe4 li5 you3 nin2 de5 ding4 dan1 ji4 lu4"),
    ("很好", "", "hen2 hao3"),
    ("我很好", "", "wo3 hen2 hao3"),
    ("展览馆", "", "zhan2 lan2 guan3"),
    # A hint is spoken as written, sandhi or not.
    ("您的订单正在处理中。", "您的订单正在chu2理中。", "nin2 de5 ding4 dan1 zheng4 zai4 chu2 li3 zhong1"),
    ("您的订单正在处理中。", "您的订单正在chu3理中。", "nin2 de5 ding4 dan1 zheng4 zai4 chu3 li3 zhong1"),
    ("一个", "yi1个", "yi1 ge5"),
    # Neutral tones (after sandhi; hints still win).
    ("谢谢。", "", "xie4 xie5"),
    ("我们", "", "wo3 men5"),
    ("什么", "", "shen2 me5"),
    ("怎么", "", "zen3 me5"),
    ("你好吗", "", "ni2 hao3 ma5"),
    ("好吧", "", "hao3 ba5"),
    ("您呢", "", "nin2 ne5"),
    ("看看", "", "kan4 kan5"),
    ("请等等", "", "qing3 deng2 deng5"),
    ("姐姐", "", "jie3 jie5"),
    ("桌子", "", "zhuo1 zi5"),
    ("电子", "", "dian4 zi3"),
    ("这个", "", "zhe4 ge5"),
    ("五个工作日", "", "wu3 ge5 gong1 zuo4 ri4"),
    ("什么时候", "", "shen2 me5 shi2 hou5"),
    ("东西", "", "dong1 xi5"),
    ("不客气", "", "bu2 ke4 qi5"),
    ("清楚", "", "qing1 chu5"),
    ("好消息", "", "hao3 xiao1 xi5"),
    ("您的订单延误了", "", "nin2 de5 ding4 dan1 yan2 wu4 le5"),
    ("了解", "", "liao2 jie3"),
    ("的确", "", "di2 que4"),
    ("跑得快", "", "pao3 de5 kuai4"),
    ("获得", "", "huo4 de2"),
    ("觉得", "", "jue2 de5"),
    ("慢慢地走", "", "man4 man4 de5 zou3"),
    ("哪里", "", "na2 li5"),
    ("家里", "", "jia1 li5"),
    ("晚上", "", "wan3 shang5"),
    ("上午", "", "shang4 wu3"),
    ("去酒吧", "", "qu4 jiu3 ba1"),
    ("谢谢", "xie4xie4", "xie4 xie4"),
    # The composer's number fragments (src/ivr/say.rs): 一 before 百/千/万/亿, 3-3 before 百.
    ("一百", "", "yi4 bai3"),
    ("一千", "", "yi4 qian1"),
    ("一万", "", "yi2 wan4"),
    ("一亿", "", "yi2 yi4"),
    ("两百", "", "liang2 bai3"),
    ("五百", "", "wu2 bai3"),
    ("九百", "", "jiu2 bai3"),
]


def self_test() -> int:
    failed = 0
    for text, spoken, want in SELF_TEST:
        got = zh_pinyin(text, spoken)
        if got != want:
            failed += 1
            print(f"self-test FAILED: {text!r} ({spoken!r}): got {got!r}, want {want!r}", file=sys.stderr)
    print(f"kokoro_tts self-test: {len(SELF_TEST) - failed}/{len(SELF_TEST)} passed", file=sys.stderr)
    return 1 if failed else 0



def zh_phonemes(text: str, spoken: str, en_phonemes) -> str:
    """Kokoro phonemes for Mandarin text, following misaki's (v1.0) ZHG2P.legacy_call."""
    forced = zh_overrides(text, spoken)
    # Segment on the original text so the override offsets stay valid; digits and
    # punctuation of the non-hanzi runs are converted per run below.
    parts = []
    for m in re.finditer(r"[\u4e00-\u9fff]+|[^\u4e00-\u9fff]+", text):
        seg, base = m.group(0), m.start()
        if HANZI.match(seg):
            for pys in zh_run_pinyin(seg, {i - base: py for i, py in forced.items()}):
                parts.append("".join(ZHG2P.py2ipa(py) for py in pys))
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
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
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
