"""A tiny verifiers (0.3.x) environment for hpclaunch's eval tests: no downloads.

The dataset is built in code. hpclaunch's vLLM stand-in answers "You said: <question>",
so a rollout scores 1.0 when the server really received the question. The keyword
arguments ``load_environment`` received are appended as one JSON line to the file
named by ``HPCLAUNCH_EVALENV_RECORD`` (when set), so tests can check what reached the
environment (for example ``use_think``) without reading vf-eval's logs.

Put this directory on PYTHONPATH (or ``pip install -e`` it) and run
``vf-eval hpclaunch-echo-env -m NAME``.
"""

from __future__ import annotations

import json
import os

QUESTIONS = ["alpha bravo", "charlie delta", "echo foxtrot", "golf hotel"]


def load_environment(use_think: bool = True, **kwargs: object):
    import verifiers as vf
    from datasets import Dataset

    record = os.environ.get("HPCLAUNCH_EVALENV_RECORD")
    if record:
        with open(record, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"use_think": use_think, **kwargs}, default=str) + "\n")

    dataset = Dataset.from_dict({
        "question": QUESTIONS,
        "answer": QUESTIONS,
    })
    # The reasoning rule: with use_think the environment expects <think> tags and strips
    # them itself; against a server with --reasoning-parser it must not.
    parser = vf.ThinkParser() if use_think else vf.Parser()

    def echoed(completion, answer, **_: object) -> float:
        text = parser.parse_answer(completion) or ""
        return 1.0 if answer in text else 0.0

    rubric = vf.Rubric(funcs=[echoed], parser=parser)
    return vf.SingleTurnEnv(dataset=dataset, eval_dataset=dataset, parser=parser,
                            rubric=rubric)
