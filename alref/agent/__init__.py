"""The LLM side of alref: GPT-PS pivot selection as a LangGraph state machine, the LLM client,
answer schemas and parsing, and the trace."""
