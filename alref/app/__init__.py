"""Interfaces other than the CLI: the graphs LangGraph's server runs (:mod:`alref.app.graphs`)."""
