"""A tiny verifiers 0.4.x (v1) taskset for hpclaunch's eval tests: no downloads.

The 0.4 counterpart of ``hpclaunch_echo_env``: the stand-in answers
"You said: <prompt>", so a rollout scores 1.0 when the question reached the server.
Run with ``vf-eval hpclaunch-echo-taskset @ NAME.toml`` with this directory on PYTHONPATH.
"""

from __future__ import annotations

import verifiers.v1 as vf

QUESTIONS = ["alpha bravo", "charlie delta", "echo foxtrot", "golf hotel"]


class EchoData(vf.TaskData):
    answer: str = ""


class EchoTask(vf.Task[EchoData]):
    @vf.reward(weight=1.0)
    async def echoed(self, trace: vf.Trace) -> float:
        last = trace.messages[-1] if trace.messages else None
        content = last.get("content") if isinstance(last, dict) else getattr(last, "content", "")
        return 1.0 if f"You said: {self.data.answer}" in str(content) else 0.0


class EchoConfig(vf.TasksetConfig):
    num_tasks: int = len(QUESTIONS)


class EchoTaskset(vf.Taskset[EchoTask, EchoConfig]):
    def load(self) -> list[EchoTask]:
        return [EchoTask(EchoData(prompt=q, answer=q), self.config.task)
                for q in QUESTIONS[: self.config.num_tasks]]


__all__ = ["EchoTaskset"]
