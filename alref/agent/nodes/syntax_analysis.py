"""Step 2' (text only, in parallel with the first steps): the reference's grammatical subject.
Every clip of a reference asks the same question, which the LLM client answers once (``once=True``:
concurrent identical questions wait for the first answer); if it cannot be had, the whole reference stands for
its subject."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from alref.agent import conversation as conv
from alref.agent.answers import SyntaxAnalysis
from alref.agent.context import AgentContext
from alref.agent.llm import LLMUnavailableError
from alref.agent.parsing import AnswerParseError, parse_answer
from alref.agent.state import ClipState
from alref.prompts import render


def syntax_analysis(state: ClipState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    ctx = runtime.context
    reference = state["reference"]
    if ctx.llm_dead:
        return {"subject": reference, "syntax_reasoning": f"not analysed (LLM unavailable: {ctx.llm_dead})"}
    conversation = conv.start(render("syntax_analysis", reference=reference))
    try:
        reply = conv.ask(
            ctx, conversation, "syntax_analysis", {"ref": state["ref_id"]}, SyntaxAnalysis, once=True
        )
        answer = parse_answer(reply.text, SyntaxAnalysis)
    except (LLMUnavailableError, AnswerParseError) as error:
        why = " ".join(str(error).split())
        return {
            "subject": reference,
            "syntax_reasoning": f"not analysed ({why}); the whole reference is the subject",
        }
    return {"subject": answer.subject.strip() or reference, "syntax_reasoning": answer.reasoning}
