"""The tracks strategy (AgentRVOS, arXiv 2603.23489): SAM 3 tracks every instance of the referent's
concept over the whole video, and the LLM accepts or rejects each candidate track on object-level
evidence; the answer is the union of the accepted tracks."""
