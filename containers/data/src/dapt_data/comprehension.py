"""Reading-comprehension texts mined from the raw domain text, without a teacher model.

The method of AdaptLLM ("Adapting Large Language Models via Reading Comprehension", Cheng et
al., ICLR 2024): continued pretraining on raw domain text teaches knowledge but hurts a model's
ability to answer prompts; appending to each text a few tasks *mined from that text with
regular expressions* (and answered by it) keeps the knowledge and teaches the model to use it.
Each output record is the text followed by its tasks, trained on as plain completion text.

The tasks, each written here in several phrasings (one picked per task by a hash of seed,
record and task, so a rerun writes the same file):

- ``title``: the document's first line, when it reads as a title, asked back for the text.
- ``section``: a heading (a short line without a final full stop, followed by a paragraph)
  asked as a question; the answer is the first one or two sentences under it.
- ``completion``: the first half of a sentence of at least `min_sentence_words` words; the
  answer is the rest (AdaptLLM's text completion).
- ``connective``: two sentences joined by a connective ("therefore", "however", "also", ...)
  or one sentence "X because Y" / "if X, Y"; the task asks for the relation or the
  consequence (AdaptLLM's natural language inference and commonsense reasoning).
- ``word_to_text``: up to three domain terms of a sentence (words much more frequent in the
  domain records than in the public ones) and the sentence that uses them.

Why written by hand: AdaptLLM's own mining code is a research script tied to SentencePiece
models and its corpora; the tasks are a few regular expressions and templates, which are
clearer here, typed and tested, than adapted from it. No template text is taken from it.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class ComprehensionTask(StrEnum):
    """The mined task types."""

    TITLE = "title"
    SECTION = "section"
    COMPLETION = "completion"
    CONNECTIVE = "connective"
    WORD_TO_TEXT = "word_to_text"


class MiningConfig(BaseModel):
    """How much is mined from each document."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tasks: list[ComprehensionTask] = Field(
        default_factory=lambda: list(ComprehensionTask),
        description="Task types mined from each document.",
    )
    max_per_task: int = Field(
        default=2, ge=1, description="Most tasks of each type mined from one document."
    )
    min_sentence_words: int = Field(
        default=10,
        ge=4,
        description="Sentences with fewer words yield no `completion` or `word_to_text` task.",
    )
    seed: int = Field(
        default=0,
        description="Seed of which candidate tasks are kept and which phrasing each gets.",
    )


@dataclass(frozen=True)
class QA:
    """One mined task: what is asked, what answers it, and its type."""

    task: ComprehensionTask
    question: str
    answer: str


@dataclass
class DomainTerms:
    """Word frequencies of the domain records against the public ones."""

    domain: Counter[str] = field(default_factory=Counter)
    """Domain documents each word occurs in."""
    public: Counter[str] = field(default_factory=Counter)
    n_domain: int = 0
    n_public: int = 0

    @staticmethod
    def count(domain: Iterable[str], public: Iterable[str]) -> DomainTerms:
        terms = DomainTerms()
        for text in domain:
            terms.domain.update(document_words(text))
            terms.n_domain += 1
        for text in public:
            terms.public.update(document_words(text))
            terms.n_public += 1
        return terms

    def is_term(self, word: str) -> bool:
        """In at least two domain documents, and TERM_RATIO times more of them (as a share)
        than of the public documents (add-one smoothed)."""
        share_domain = self.domain[word] / max(1, self.n_domain)
        share_public = (self.public[word] + 1) / (self.n_public + 1)
        return (
            len(word) >= MIN_TERM_CHARS
            and word not in STOPWORDS
            and self.domain[word] >= 2
            and share_domain >= TERM_RATIO * share_public
        )


def mine(
    record_id: str, text: str, config: MiningConfig, terms: DomainTerms | None = None
) -> list[QA]:
    """Every task mined from one document, at most `max_per_task` of each type."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    found: dict[ComprehensionTask, list[QA]] = {t: [] for t in config.tasks}
    title = paragraphs[0] if paragraphs and _is_heading(paragraphs[0]) else None
    if ComprehensionTask.TITLE in found and title and len(paragraphs) > 1:
        found[ComprehensionTask.TITLE].append(
            QA(ComprehensionTask.TITLE, _pick(TITLE_QUESTIONS, config, record_id, "t"), title)
        )
    sentences = [s for p in paragraphs if not _is_heading(p) for s in _sentences(p)]
    if ComprehensionTask.SECTION in found:
        found[ComprehensionTask.SECTION] += _sections(record_id, paragraphs, title, config)
    if ComprehensionTask.COMPLETION in found:
        found[ComprehensionTask.COMPLETION] += _completions(record_id, sentences, config)
    if ComprehensionTask.CONNECTIVE in found:
        found[ComprehensionTask.CONNECTIVE] += _connectives(record_id, paragraphs, config)
    if ComprehensionTask.WORD_TO_TEXT in found and terms is not None:
        found[ComprehensionTask.WORD_TO_TEXT] += _word_to_text(record_id, sentences, terms, config)
    out: list[QA] = []
    for task in config.tasks:
        candidates = found[task]
        ranked = sorted(
            range(len(candidates)), key=lambda i: _hash(config.seed, record_id, task, i)
        )
        out += [candidates[i] for i in sorted(ranked[: config.max_per_task])]
    return out


def render(text: str, tasks: Sequence[QA]) -> str:
    """The text, then each task as a question and its answer (AdaptLLM's layout)."""
    blocks = [f"{qa.question}\nAnswer: {qa.answer}" for qa in tasks]
    return "\n\n".join([text.strip(), *blocks])


# --- miners -----------------------------------------------------------------------------------


def _sections(
    record_id: str, paragraphs: list[str], title: str | None, config: MiningConfig
) -> list[QA]:
    out = []
    for index in range(1 if title else 0, len(paragraphs) - 1):
        heading, body = paragraphs[index], paragraphs[index + 1]
        if not _is_heading(heading) or _is_heading(body):
            continue
        sentences = _sentences(body)
        answer = " ".join(sentences[:2]) if sentences else ""
        if not answer or len(answer.split()) > MAX_ANSWER_WORDS:
            answer = " ".join(sentences[:1])
        if not answer or len(answer.split()) > MAX_ANSWER_WORDS:
            continue
        if heading.endswith("?"):  # a heading that is a question is asked as it is
            question = heading
        else:
            template = _pick(SECTION_QUESTIONS, config, record_id, f"s{index}")
            question = template.format(heading=heading.rstrip(":"), title=title or "this text")
        out.append(QA(ComprehensionTask.SECTION, question, answer))
    return out


def _completions(record_id: str, sentences: list[str], config: MiningConfig) -> list[QA]:
    out = []
    for index, sentence in enumerate(sentences):
        words = sentence.split()
        if len(words) < config.min_sentence_words:
            continue
        cut = len(words) // 2
        template = _pick(COMPLETION_QUESTIONS, config, record_id, f"c{index}")
        out.append(
            QA(
                ComprehensionTask.COMPLETION,
                template.format(start=" ".join(words[:cut])),
                " ".join(words[cut:]),
            )
        )
    return out


def _connectives(record_id: str, paragraphs: list[str], config: MiningConfig) -> list[QA]:
    out = []
    for p_index, paragraph in enumerate(paragraphs):
        for m_index, match in enumerate(_PAIR.finditer(paragraph)):
            first, word, second = match.group(1).strip(), match.group(2), match.group(3).strip()
            relation = CONNECTIVES[word.casefold()]
            template = _pick(RELATION_QUESTIONS, config, record_id, f"r{p_index}.{m_index}")
            question = template.format(first=first, second=_capitalised(second))
            out.append(QA(ComprehensionTask.CONNECTIVE, question, relation))
        for m_index, match in enumerate(_BECAUSE.finditer(paragraph)):
            effect, cause = match.group(1).strip(), match.group(2).strip().rstrip(".!?")
            template = _pick(CAUSE_QUESTIONS, config, record_id, f"b{p_index}.{m_index}")
            out.append(
                QA(
                    ComprehensionTask.CONNECTIVE,
                    template.format(effect=effect),
                    f"Because {cause}.",
                )
            )
        for m_index, match in enumerate(_IF.finditer(paragraph)):
            condition, result = match.group(1).strip(), match.group(2).strip()
            template = _pick(IF_QUESTIONS, config, record_id, f"i{p_index}.{m_index}")
            out.append(
                QA(
                    ComprehensionTask.CONNECTIVE,
                    template.format(condition=condition),
                    _capitalised(result),
                )
            )
    return out


def _word_to_text(
    record_id: str, sentences: list[str], terms: DomainTerms, config: MiningConfig
) -> list[QA]:
    out = []
    for index, sentence in enumerate(sentences):
        if len(sentence.split()) < config.min_sentence_words:
            continue
        found = list(dict.fromkeys(w for w in _words(sentence) if terms.is_term(w)))[:3]
        if len(found) < 2:
            continue
        template = _pick(WORD_QUESTIONS, config, record_id, f"w{index}")
        out.append(
            QA(ComprehensionTask.WORD_TO_TEXT, template.format(words=", ".join(found)), sentence)
        )
    return out


# --- text helpers -----------------------------------------------------------------------------


def _is_heading(paragraph: str) -> bool:
    """A short single line without a final full stop (Markdown rendered to text keeps
    headings as lines of their own)."""
    line = paragraph.strip()
    return (
        "\n" not in line
        and 0 < len(line.split()) <= MAX_HEADING_WORDS
        and not line.endswith((".", ",", ";", "!"))
        and "|" not in line
    )


def _sentences(paragraph: str) -> list[str]:
    flat = " ".join(paragraph.split())
    return [s for s in _SENTENCE_END.split(flat) if s and s[-1] in ".!?"]


def document_words(text: str) -> set[str]:
    """The distinct (case-folded) words of a document: what `DomainTerms` counts per document."""
    return set(_words(text))


def _words(text: str) -> list[str]:
    return [w.casefold() for w in _WORD.findall(text)]


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def _hash(seed: int, record_id: str, *parts: object) -> str:
    raw = "\0".join([str(seed), record_id, *(str(p) for p in parts)])
    return hashlib.sha256(raw.encode()).hexdigest()


def _pick(choices: Sequence[str], config: MiningConfig, record_id: str, where: str) -> str:
    return choices[int(_hash(config.seed, record_id, where)[:12], 16) % len(choices)]


_WORD = re.compile(r"[^\W\d_][\w'-]*[^\W_]|[^\W\d_]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
CONNECTIVES = {
    "therefore": "Therefore",
    "thus": "Therefore",
    "hence": "Therefore",
    "as a result": "Therefore",
    "however": "However",
    "but": "However",
    "instead": "However",
    "otherwise": "However",
    "also": "Also",
    "in addition": "Also",
    "additionally": "Also",
    "moreover": "Also",
}
_PAIR = re.compile(
    r"([^.!?\n]{30,}[.!?])\s+("
    + "|".join(sorted((re.escape(k) for k in CONNECTIVES), key=len, reverse=True))
    + r")\s*,?\s+([^.!?\n]{20,}[.!?])",
    re.IGNORECASE,
)
_BECAUSE = re.compile(r"(?:^|(?<=[.!?]\s))([A-Z][^.!?\n]{15,}?),?\s+because\s+([^.!?\n]{10,}[.!?])")
_IF = re.compile(r"(?:^|(?<=[.!?]\s))If\s+([^.!?\n,]{10,}),\s+([^.!?\n]{10,}[.!?])")

TITLE_QUESTIONS = (
    "What is a suitable title for the text above?",
    "Give the text above a title.",
    "Which title fits this article?",
)
SECTION_QUESTIONS = (
    'What does "{title}" say under "{heading}"?',
    "According to the text, what should you know about {heading}?",
    'Summarize the part of "{title}" about {heading}.',
)
COMPLETION_QUESTIONS = (
    'Complete the sentence from the text: "{start} ..."',
    "How does this sentence of the text go on? {start}",
    "Finish this statement as the text does: {start}",
)
RELATION_QUESTIONS = (
    "Sentence 1: {first}\nSentence 2: {second}\nWhich word links them best: Therefore, "
    "However or Also?",
    '"{first}" and then "{second}" Is the second sentence a consequence (Therefore), a '
    "contrast (However) or an addition (Also)?",
)
CAUSE_QUESTIONS = (
    "Why is it that {effect}?",
    "What is the reason for the following? {effect}.",
)
IF_QUESTIONS = (
    "What happens if {condition}?",
    "According to the text, what follows if {condition}?",
)
WORD_QUESTIONS = (
    "Write a sentence from the text that uses these terms: {words}.",
    "Use the words {words} in a sentence about the topic of the text.",
)
MAX_HEADING_WORDS = 10
MAX_ANSWER_WORDS = 80
MIN_TERM_CHARS = 4
TERM_RATIO = 4.0
STOPWORDS = frozenset(
    (
        "about",
        "after",
        "again",
        "also",
        "because",
        "been",
        "before",
        "being",
        "between",
        "both",
        "cannot",
        "could",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "from",
        "further",
        "have",
        "having",
        "here",
        "into",
        "itself",
        "just",
        "more",
        "most",
        "once",
        "only",
        "other",
        "over",
        "same",
        "should",
        "some",
        "such",
        "than",
        "that",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "under",
        "until",
        "very",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "will",
        "with",
        "would",
        "your",
        "yours",
        "you",
        "can",
        "the",
        "and",
        "for",
        "are",
        "not",
        "but",
        "all",
        "any",
        "our",
        "out",
        "has",
        "its",
        "may",
    )
)
