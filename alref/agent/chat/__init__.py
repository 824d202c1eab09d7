"""`alref chat`: a conversation about one video with a tool-calling agent."""
