"""The LLM-judge part of an evaluation request, its default rubric, and EV-015.

The judge is a registered model (loaded by the trainer, or the one already loaded when it is the evaluated
base) or an OpenAI-compatible endpoint whose key is named, not given: the key stays in the secrets store
(``ftapp.secrets.ApiKeys``) and reaches only the trainer's environment. The rubric is the user's to edit:
plain ``{field}`` template fields, among ``trainer.protocol.JUDGE_FIELDS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

from ftapp import number_bounds as nb
from ftapp import rules
from ftapp.demo import policy
from ftapp.errors import Problem
from ftapp.secrets import API_KEY_NAME, ENV_KEY_SUFFIX, ApiKeys
from ftapp.settings import Settings
from storage import DatasetRecord, Transaction
from trainer.protocol import JUDGE_FIELDS, JudgeSpec, template_problems

DEFAULT_RUBRIC = """You are an impartial judge. Two assistants answered the same request; a reference answer is given.
Judge which answer is better: correct against the reference first, then helpful, precise and clear.
Do not let the order of the answers, their length or their style sway you.

[Request]
{input}

[Reference answer]
{reference}

[Answer A]
{answer_a}

[Answer B]
{answer_b}

Explain your judgement in one or two sentences, then end with one line that is exactly "Verdict: A", "Verdict: B" or "Verdict: tie"."""
MAX_RUBRIC_CHARS = 20_000
JUDGE_TOKENS = nb.Bound(1, 4_096, whole=True)


@dataclass(frozen=True)
class JudgeRequest:
    model_id: str | None = None  # a registered model judges ...
    url: str | None = None  # ... or an OpenAI-compatible endpoint (base URL, e.g. http://127.0.0.1:8000/v1)
    api_model: str | None = None  # the model name the endpoint expects
    api_key_name: str | None = None  # a key of the secrets store (or an environment variable of that name, *_API_KEY)
    rubric: str | None = None  # None or "": DEFAULT_RUBRIC
    max_new_tokens: int = 128

    @property
    def rubric_text(self) -> str:
        return self.rubric if self.rubric and self.rubric.strip() else DEFAULT_RUBRIC


def judge_problems(
    tx: Transaction,
    judge: JudgeRequest | None,
    dataset: DatasetRecord | None,
    combinations: int,
    generated: bool,
    settings: Settings | None,
    caps: policy.DemoCaps | None,
) -> list[Problem]:
    """EV-015: the judge has answers to compare (a dataset whose rows are generated, two combinations or more), one
    model or URL that exists, a stored key when one is named, a rubric of known plain fields, bounded tokens."""
    if judge is None:
        return []
    problems = []
    if dataset is None or not generated:
        problems.append(
            Problem(
                rules.JUDGE,
                "a judge compares generated answers: give a dataset whose rows are answered "
                "(preference pairs are scored by likelihood, benchmarks by lm-eval)",
                "judge",
            )
        )
    if combinations < 2:
        problems.append(Problem(rules.JUDGE, "a judge compares each combination with #1: give two combinations or more", "judge"))
    if bool(judge.model_id) == bool(judge.url):
        problems.append(Problem(rules.JUDGE, "the judge is a registered model or an OpenAI-compatible URL: give exactly one", "judge"))
    elif judge.model_id and tx.models.get(judge.model_id) is None:
        problems.append(Problem(rules.JUDGE, f"judge model '{judge.model_id}' not found", "judge.model_id"))
    elif judge.url:
        problems += _endpoint_problems(judge, settings, caps)
    problems += rubric_problems(judge.rubric_text)
    if p := JUDGE_TOKENS.problem(rules.JUDGE, "judge.max_new_tokens", judge.max_new_tokens):
        problems.append(p)
    return problems


def _endpoint_problems(judge: JudgeRequest, settings: Settings | None, caps: policy.DemoCaps | None) -> list[Problem]:
    if caps:  # the trainer would send requests wherever a visitor points it
        return [policy.host_only("an LLM judge behind a URL", "judge.url")]
    if settings is not None and not settings.is_local:
        # A user of a shared app would point the trainer at hosts only this machine reaches (SSRF), with the host's key.
        return [
            Problem(
                rules.JUDGE,
                "an LLM judge behind a URL is refused in a shared app: the trainer would send the rows, and the host's API key, "
                "to any address a user names, including ones only this machine reaches; use a registered model as the judge",
                "judge.url",
            )
        ]
    url = urlparse(judge.url or "")
    problems = []
    if url.scheme not in ("http", "https") or not url.hostname:
        problems.append(Problem(rules.JUDGE, f"judge URL must be http(s)://host[:port]/path (got {str(judge.url)[:200]!r})", "judge.url"))
    if not judge.api_model:
        problems.append(Problem(rules.JUDGE, "name the model the endpoint should use (api_model)", "judge.api_model"))
    if judge.api_key_name:
        if not API_KEY_NAME.match(judge.api_key_name):
            problems.append(
                Problem(
                    rules.JUDGE,
                    f"API key name {judge.api_key_name[:80]!r} is not a secrets-store name (a letter, then "
                    "letters, digits, '_', '.' or '-')",
                    "judge.api_key_name",
                )
            )
        elif settings is not None and ApiKeys(settings.secrets_dir).value(judge.api_key_name) is None:
            problems.append(
                Problem(
                    rules.JUDGE,
                    f"no API key named '{judge.api_key_name}' in the secrets store or the environment (where only "
                    f"variables ending in {ENV_KEY_SUFFIX} count)",
                    "judge.api_key_name",
                )
            )
    return problems


def rubric_problems(rubric: str) -> list[Problem]:
    if len(rubric) > MAX_RUBRIC_CHARS:
        return [Problem(rules.JUDGE, f"the judge rubric has {len(rubric):,} characters; at most {MAX_RUBRIC_CHARS:,}", "judge.rubric")]
    names, syntax = template_problems(rubric)
    problems = [Problem(rules.JUDGE, f"judge rubric {problem}", "judge.rubric") for problem in syntax]
    unknown = [name for name in names if name not in JUDGE_FIELDS]
    if unknown:
        problems.append(
            Problem(
                rules.JUDGE,
                f"judge rubric uses unknown field(s) {', '.join('{' + n + '}' for n in unknown)}; it may use "
                f"{', '.join('{' + n + '}' for n in JUDGE_FIELDS)}",
                "judge.rubric",
            )
        )
    missing = [name for name in ("answer_a", "answer_b") if name not in names]
    if missing:
        problems.append(
            Problem(rules.JUDGE, f"judge rubric must show both answers: add {', '.join('{' + n + '}' for n in missing)}", "judge.rubric")
        )
    return problems


def judge_spec(tx: Transaction, judge: JudgeRequest | None) -> JudgeSpec | None:
    if judge is None:
        return None
    model = tx.models.get(judge.model_id) if judge.model_id else None
    return JudgeSpec(
        rubric=judge.rubric_text,
        model=model.source if model else None,
        url=judge.url or None,
        api_model=judge.api_model or None,
        api_key_name=judge.api_key_name or None,
        label=model.name if model else f"{judge.api_model} at {judge.url}",
        max_new_tokens=judge.max_new_tokens,
    )
