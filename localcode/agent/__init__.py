"""The tool-calling coding agent."""
